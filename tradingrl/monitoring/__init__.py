"""Monitoring the champion: its decisions on new data, drift, live performance.

- :mod:`tradingrl.monitoring.decisions`: the champion's decisions over a span
  of bars (features, predictions, risk-checked targets), and the reference
  window a bundle carries from training;
- :mod:`tradingrl.monitoring.drift`: Evidently drift checks of features and
  predictions, the live performance check, and the retraining rules.

Pure library: everything arrives as arguments; the Prefect flow
``flows/monitoring.py: drift_flow`` reads params.yaml, the source and the
registry, and acts on the decision. Evidently is imported only when a check
runs.
"""

from __future__ import annotations

from tradingrl.monitoring.decisions import (
    DECISION_COLUMNS,
    ReplayedDecisions,
    history_bars,
    model_features,
    read_env_config,
    reference_window,
    replay_decisions,
)
from tradingrl.monitoring.drift import (
    RULES,
    CheckResults,
    ColumnDrift,
    DriftResult,
    PerformanceResult,
    RetrainThresholds,
    RuleCheck,
    decide_retrain,
    feature_drift,
    live_performance,
    prediction_drift,
)

__all__ = [
    "DECISION_COLUMNS",
    "RULES",
    "CheckResults",
    "ColumnDrift",
    "DriftResult",
    "PerformanceResult",
    "ReplayedDecisions",
    "RetrainThresholds",
    "RuleCheck",
    "decide_retrain",
    "feature_drift",
    "history_bars",
    "live_performance",
    "model_features",
    "prediction_drift",
    "read_env_config",
    "reference_window",
    "replay_decisions",
]
