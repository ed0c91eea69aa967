"""Stage promote: reports/metrics.json + models -> a `trading-policy` version and the gate's decision.

The bundle is :func:`tradingrl.monitoring.reference.build_reference_bundle`:
the whole decision in models/trading_policy with its reference window (the
last ``monitoring.reference_sessions`` sessions of data/features). The rest
is :func:`tradingrl.registry.promotion.promote`: register it as a new
``trading-policy`` version with alias ``challenger``, run the promotion gate on the walk-forward evaluation against params ``promote.gate`` and the
current champion, and on a pass move alias ``champion`` to it (last, after
every tag is written). A refusal changes no alias; the challenger carries the
reasons as tags.

Before anything is built, the evaluation's provenance is checked: reports/
metrics.json must have been produced from the inputs models/cnn_lstm and
models/agent were trained on, and from the data this stage reads
(:func:`tradingrl.registry.provenance.check_provenance`); a mismatch ends
the stage with one line naming the file, and nothing is registered. The
``beats_champion`` check compares the challenger's out-of-fold book
(reports/evaluation/curves.parquet) with the current champion replayed on
the same bars after its training end, with the challenger's costs and risk
settings (:func:`tradingrl.monitoring.reference.champion_comparison`).

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

from tradingrl import headline
from tradingrl.params import load_params
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
# The DVC outputs this stage reads, logged as the run's MLflow datasets.
DATA_INPUTS = ["data/validated", "data/features", "data/predictions"]


def main(params: dict[str, Any] | None = None, features_params: dict[str, Any] | None = None,
         repo_root: Path = REPO_ROOT,
         monitoring_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the stage; returns the decision record (arguments exist for tests,
    DVC uses the defaults: the sections of ``repo_root/params.yaml``)."""
    import mlflow

    from tradingrl.evaluation.report import write_evaluation_report
    from tradingrl.monitoring.reference import build_reference_bundle, champion_comparison
    from tradingrl.registry.bundle import REFERENCE_FILE
    from tradingrl.registry.consistency import ConsistencyThresholds, prediction_consistency
    from tradingrl.registry.gate import NOT_COMPARABLE, GateThresholds
    from tradingrl.registry.promotion import promote
    from tradingrl.registry.provenance import FEATURES_FILE, VALIDATED_FILE, check_provenance
    from tradingrl.tracking import (
        log_data_inputs,
        log_to_parent,
        provenance_tags,
        stage_run,
        use_experiment,
    )

    path = repo_root / "params.yaml"
    params = params if params is not None else load_params("promote", path)
    features_params = features_params if features_params is not None else load_params("features",
                                                                                       path)
    monitoring_params = (monitoring_params if monitoring_params is not None
                         else load_params("monitoring", path))
    reports = repo_root / "reports"
    evaluation = json.loads((reports / "metrics.json").read_text())
    thresholds = GateThresholds.from_params(params)
    data_files = {name: repo_root / name for name in (VALIDATED_FILE, FEATURES_FILE)}
    agent_dir = repo_root / "models" / "agent"
    # First, before anything is built: the evaluation judged these pieces' inputs.
    check_provenance(evaluation, repo_root / "models" / "cnn_lstm", agent_dir, data_files,
                     names={"config": "models/cnn_lstm/config.json",
                            "env_config": "models/agent/env_config.json"})

    bars = pd.read_parquet(data_files[VALIDATED_FILE])
    features = pd.read_parquet(data_files[FEATURES_FILE])
    bundle = build_reference_bundle(
        repo_root / "models" / "cnn_lstm", agent_dir, features_params,
        repo_root / "models" / "trading_policy", bars=bars, features=features,
        sessions=int(monitoring_params["reference_sessions"]))
    # The served trend model against the walk-forward's own predictions on the
    # reference window's bars: the agent was trained and judged on the latter.
    consistency = prediction_consistency(
        pd.read_parquet(bundle / REFERENCE_FILE),
        pd.read_parquet(repo_root / "data" / "predictions" / "oof.parquet"), features,
        ConsistencyThresholds.from_params(params))
    curves = pd.read_parquet(reports / "evaluation" / "curves.parquet")
    config = evaluation.get("config", {})

    def compare(champion: Any) -> Any:
        return champion_comparison(
            champion.bundle_dir, champion.version,
            challenger_env_config=json.loads((agent_dir / "env_config.json").read_text()),
            curves=curves, bars=bars, features=features, symbols=list(config["symbols"]),
            min_bars=thresholds.min_comparable_bars,
            bars_per_year=int(config.get("bars_per_year", 252)))

    experiment_id = use_experiment(repo_root, params["experiment"])
    tags = provenance_tags(repo_root, "data/predictions")
    with stage_run(repo_root, experiment_id, "promote", tags):
        log_data_inputs(repo_root, DATA_INPUTS, "evaluation")
        result = promote(bundle, bars, evaluation=evaluation, thresholds=thresholds, tags=tags,
                         decided_by=getpass.getuser(), data_files=data_files, compare=compare,
                         consistency=consistency)
        record = result.record
        write_json(reports / "promotion.json", record)
        log_to_parent(headline.write(repo_root, "promote", record), "promote")
        mlflow.log_artifact(str(reports / "promotion.json"))
        # The report marks a check that compared nothing "n/a", not "passed".
        shown = {**record, "checks": [{**c, "passed": None} if c["status"] == NOT_COMPARABLE
                                      else c for c in record["checks"]]}
        write_evaluation_report({**evaluation, "promotion": shown}, curves,
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
