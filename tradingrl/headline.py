"""The DVC metrics: a few headline numbers per stage, in ``metrics/<stage>.json``.

``dvc metrics show`` prints one row per metrics file and one column per key
of all of them together, so the detail reports (several hundred keys:
every symbol's counts, every baseline's every statistic) would make a table
nobody can read in a terminal. Each stage therefore writes its detail report
(``reports/*.json``, which the HTML reports, the gate and the code read) and,
from it, the flat headline here. Keys with the same meaning share a name
across files (``log_loss`` of the served model and of the out-of-fold
predictions), so they share a column. All files together hold at most
:data:`MAX_COLUMNS` keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_COLUMNS = 20

# The classification metrics of the CNN+LSTM shown for both the served model
# (its own validation span) and the out-of-fold predictions.
_MODEL_KEYS = {"log_loss": "log_loss", "balanced_accuracy": "bal_acc", "rank_ic": "rank_ic",
               "ece": "ece"}


def validate(report: Mapping[str, Any]) -> dict[str, Any]:
    """Rows in, kept and quarantined (reports/validation.json)."""
    return {"rows_in": report["rows_in"], "rows_valid": report["rows_valid"],
            "rows_quarantined": report["rows_quarantined"]}


def features(report: Mapping[str, Any]) -> dict[str, Any]:
    """Rows of the feature table and its feature count (reports/features.json)."""
    return {"rows_out": report["rows_out"], "features": report["n_features"]}


def _model(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {short: metrics[key] for key, short in _MODEL_KEYS.items()}


def train_model(report: Mapping[str, Any]) -> dict[str, Any]:
    """The served CNN+LSTM on its own validation span (reports/model_metrics.json)."""
    return _model(report["metrics"]["cnn_lstm"])


def predict_oof(report: Mapping[str, Any]) -> dict[str, Any]:
    """The out-of-fold predictions, every block (reports/oof_metrics.json)."""
    return _model(report["metrics"])


def train_agent(report: Mapping[str, Any]) -> dict[str, Any]:
    """The seeds' mean best validation reward (reports/agent_metrics.json)."""
    return {"val_reward": report["val_mean_reward"]["mean"]}


def evaluate(record: Mapping[str, Any]) -> dict[str, Any]:
    """The walk-forward's out-of-sample policy against its best baseline
    (reports/metrics.json)."""
    overall = record["policy"]["overall"]
    best = record["best_baseline"]
    return {
        "sharpe": overall["sharpe"],
        "baseline": best,
        "baseline_sharpe": None if best is None else
        record["baselines"][best]["overall"]["sharpe"],
        "dsr": record["policy"]["dsr"]["dsr"],
        "max_dd": overall["max_drawdown"],
        "turnover": overall["turnover"],
        "cost_drag": overall["cost_drag"],
    }


def promote(record: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's decision and the version it judged (reports/promotion.json)."""
    return {"decision": record["decision"], "version": record["version"]}


STAGES = {"validate": validate, "features": features, "train_model": train_model,
          "predict_oof": predict_oof, "train_agent": train_agent, "evaluate": evaluate,
          "promote": promote}


def write(repo_root: Path, stage: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``metrics/<stage>.json`` (the stage's headline of ``report``) and
    return it."""
    from tradingrl.stage import write_json

    headline = STAGES[stage](report)
    write_json(Path(repo_root) / "metrics" / f"{stage}.json", headline)
    return headline
