"""Monitoring the champion: its decisions on new data, drift, live performance.

- :mod:`tradingrl.monitoring.decisions`: the champion's decisions over a span
  of bars (features, predictions, risk-checked targets), and the reference
  window a bundle carries from training;
- :mod:`tradingrl.monitoring.drift`: Evidently drift checks of features and
  predictions, the live performance check, and the retraining rules;
- :mod:`tradingrl.monitoring.window`: the newest window of the source,
  fetched, validated and featurised as the stages do it;
- :mod:`tradingrl.monitoring.decision`: the check's settings, the checks
  together and the decision as a :class:`DriftDecision` (JSON, MLflow tags
  and metrics, markdown);
- :mod:`tradingrl.monitoring.record`: the decision's report folder and MLflow
  run; :mod:`tradingrl.monitoring.retrain`: starting retraining (Prefect).

Everything arrives as arguments; the Prefect flow
``flows/monitoring.py: drift_flow`` only wraps these calls in tasks.
Evidently, mlflow and prefect are imported only when a function needs them.
"""

from __future__ import annotations

from tradingrl.monitoring.decision import (
    DECISIONS,
    TRIGGERS,
    DriftDecision,
    DriftSettings,
    champion_summary,
    decide_drift,
    no_comparison,
    run_checks,
)
from tradingrl.monitoring.decisions import (
    DECISION_COLUMNS,
    ChampionBundle,
    ReplayedDecisions,
    history_bars,
    load_bundle,
    model_features,
    read_env_config,
    reference_window,
    replay_decisions,
    replay_newest,
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
from tradingrl.monitoring.window import Window, fetch_window, sessions_needed

__all__ = [
    "DECISIONS",
    "DECISION_COLUMNS",
    "RULES",
    "TRIGGERS",
    "ChampionBundle",
    "CheckResults",
    "ColumnDrift",
    "DriftDecision",
    "DriftResult",
    "DriftSettings",
    "PerformanceResult",
    "ReplayedDecisions",
    "RetrainThresholds",
    "RuleCheck",
    "Window",
    "champion_summary",
    "decide_drift",
    "decide_retrain",
    "feature_drift",
    "fetch_window",
    "history_bars",
    "live_performance",
    "load_bundle",
    "model_features",
    "no_comparison",
    "prediction_drift",
    "read_env_config",
    "reference_window",
    "replay_decisions",
    "replay_newest",
    "run_checks",
    "sessions_needed",
]
