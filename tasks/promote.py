"""Stage promote: reports/metrics.json + models -> a `trading-policy` version and the gate's decision.

The bundle is :func:`tradingrl.monitoring.reference.build_reference_bundle`:
the whole decision in models/trading_policy with its reference window (the
last ``monitoring.reference_sessions`` sessions of data/features). The rest
is :func:`tradingrl.registry.promotion.promote`: register it as a new
``trading-policy`` version with alias ``challenger``, run the promotion gate on the walk-forward evaluation against params ``promote.gate`` and the
current champion, and on a pass move alias ``champion`` to it (last, after
every tag is written). A refusal changes no alias; the challenger carries the
reasons as tags.

This stage writes the decision to reports/promotion.json and
reports/promotion.html (the evaluation report with the decision in it), both
logged to the stage's MLflow run ``promote``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl.params import load_params
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(params: dict[str, Any] | None = None, features_params: dict[str, Any] | None = None,
         repo_root: Path = REPO_ROOT,
         monitoring_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the stage; returns the decision record (arguments exist for tests,
    DVC uses the defaults: the sections of ``repo_root/params.yaml``)."""
    import mlflow

    from tradingrl.evaluation.report import write_evaluation_report
    from tradingrl.monitoring.reference import build_reference_bundle
    from tradingrl.registry.gate import GateThresholds
    from tradingrl.registry.promotion import promote
    from tradingrl.tracking import provenance_tags, use_experiment

    path = repo_root / "params.yaml"
    params = params if params is not None else load_params("promote", path)
    features_params = features_params if features_params is not None else load_params("features",
                                                                                       path)
    monitoring_params = (monitoring_params if monitoring_params is not None
                         else load_params("monitoring", path))
    reports = repo_root / "reports"
    evaluation = json.loads((reports / "metrics.json").read_text())

    bars = pd.read_parquet(repo_root / "data" / "validated" / "ohlcv.parquet")
    bundle = build_reference_bundle(
        repo_root / "models" / "cnn_lstm", repo_root / "models" / "agent", features_params,
        repo_root / "models" / "trading_policy", bars=bars,
        features=pd.read_parquet(repo_root / "data" / "features" / "features.parquet"),
        sessions=int(monitoring_params["reference_sessions"]))

    use_experiment(repo_root, params["experiment"])
    tags = provenance_tags(repo_root, "data/predictions")
    with mlflow.start_run(run_name="promote", tags=tags):
        result = promote(bundle, bars, evaluation=evaluation,
                         thresholds=GateThresholds.from_params(params), tags=tags,
                         decided_by=getpass.getuser())
        record = result.record
        write_json(reports / "promotion.json", record)
        mlflow.log_artifact(str(reports / "promotion.json"))
        config = evaluation.get("config", {})
        write_evaluation_report({**evaluation, "promotion": record},
                                pd.read_parquet(reports / "evaluation" / "curves.parquet"),
                                reports / "promotion.html",
                                rolling_window=int(config.get("rolling_sharpe_window", 63)),
                                bars_per_year=int(config.get("bars_per_year", 252)))
        mlflow.log_artifact(str(reports / "promotion.html"))

    print(f"promote: {record['model']} v{record['version']} {record['decision']}"
          + ("" if result.passed else f" ({'; '.join(record['reasons'])})"))
    window = result.manifest["reference"]
    print(f"promote: reference window {window['sessions']} sessions x {window['symbols']} symbols "
          f"({window['first'][:10]} .. {window['last'][:10]})")
    return record


if __name__ == "__main__":
    run_stage(main)
