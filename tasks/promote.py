"""Stage promote: reports/metrics.json + models -> a `trading-policy` version and the gate's decision.

1. Bundle the whole decision (feature code path, scaler, CNN+LSTM, agent,
   risk layer) into models/trading_policy and register it as a new version of
   the MLflow model ``trading-policy`` with alias ``challenger``. The bundle
   carries its reference window (``reference.parquet``): the bundle's own
   decisions over the last ``monitoring.reference_sessions`` sessions of
   data/features, what the drift check (flows/monitoring.py) compares new
   data with once the version is champion.
2. Run the promotion gate (:mod:`tradingrl.registry.gate`) on the walk-forward
   evaluation against the thresholds in params and the current champion.
3. Pass: alias ``champion`` moves to the new version, as the last step (after
   every tag is written), so no half-registered version is ever champion.
   Fail: the champion stays; the challenger carries the reasons as tags.

Every decision is written to reports/promotion.json and as tags on the
version and on the stage's MLflow run (who, when, the metrics compared);
reports/promotion.html is the evaluation report with the decision in it.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tasks._common import REPO_ROOT, load_params, run_stage, write_json

REGISTERED_MODEL = "trading-policy"


def champion_record(client: Any, name: str) -> dict[str, Any] | None:
    """{"version", "sharpe", "folds_key"} of the version holding alias
    ``champion``, from its tags; None when no version holds it."""
    from mlflow.exceptions import MlflowException

    from tradingrl.registry.gate import CHAMPION

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if "not found" in str(error).lower() or "does not exist" in str(error).lower():
            return None
        raise
    tags = version.tags or {}
    sharpe = tags.get("oos_sharpe")
    return {"version": version.version,
            "sharpe": float(sharpe) if sharpe not in (None, "", "None") else None,
            "folds_key": tags.get("folds_key")}


def reference_table(bundle: Path, bars: pd.DataFrame, features: pd.DataFrame,
                    sessions: int) -> pd.DataFrame:
    """The bundle's decisions (features, predictions, targets) over the last
    ``sessions`` sessions of ``features``, replayed with the bundle itself."""
    from tradingrl.monitoring.decisions import read_env_config, reference_window
    from tradingrl.registry import TradingPolicy

    return reference_window(TradingPolicy.load(bundle), read_env_config(bundle), bars, features,
                            sessions=sessions)


def main(params: dict[str, Any] | None = None, features_params: dict[str, Any] | None = None,
         repo_root: Path = REPO_ROOT,
         monitoring_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults)."""
    import mlflow
    from mlflow import MlflowClient

    from tradingrl.registry import build_policy_bundle, log_trading_policy
    from tradingrl.registry.gate import (
        CHALLENGER,
        CHAMPION,
        GateThresholds,
        decision_record,
        run_gate,
    )
    from tradingrl.registry.gate import folds_key as compute_folds_key
    from tradingrl.tracking import provenance_tags, tracking_uri, use_experiment

    params = params if params is not None else load_params("promote")
    features_params = features_params if features_params is not None else load_params("features")
    monitoring_params = (monitoring_params if monitoring_params is not None
                         else load_params("monitoring"))
    reports = repo_root / "reports"
    evaluation = json.loads((reports / "metrics.json").read_text())
    thresholds = GateThresholds(**params["gate"])

    pieces = (repo_root / "models" / "cnn_lstm", repo_root / "models" / "agent", features_params,
              repo_root / "models" / "trading_policy")
    bundle = build_policy_bundle(*pieces, overwrite=True)
    bars = pd.read_parquet(repo_root / "data" / "validated" / "ohlcv.parquet")
    # The reference window is the bundle's own decisions, so it is replayed
    # with the bundle just built and then added to it.
    reference = reference_table(bundle, bars,
                                pd.read_parquet(repo_root / "data" / "features" / "features.parquet"),
                                int(monitoring_params["reference_sessions"]))
    bundle = build_policy_bundle(*pieces, overwrite=True, reference=reference)
    manifest = json.loads((bundle / "policy.json").read_text())
    first = min(bars["symbol"].unique())
    example = (bars[bars["symbol"] == first].sort_values("timestamp")
               .tail(int(manifest["min_history_bars"])).reset_index(drop=True))

    use_experiment(repo_root, params["experiment"])
    client = MlflowClient(tracking_uri(repo_root))
    tags = provenance_tags(repo_root, "data/predictions")
    overall = evaluation["policy"]["overall"]
    folds_key = compute_folds_key(evaluation)
    with mlflow.start_run(run_name="promote", tags=tags) as run:
        champion = champion_record(client, REGISTERED_MODEL)
        version = log_trading_policy(bundle, example, name=REGISTERED_MODEL, tags={
            **tags, "run_id": run.info.run_id, "evaluation_run_id":
            str(evaluation.get("mlflow_run_id")), "oos_sharpe": str(overall.get("sharpe")),
            "oos_max_drawdown": str(overall.get("max_drawdown")),
            "dsr": str(evaluation["policy"]["dsr"].get("dsr")), "folds_key": folds_key,
            "n_trials": str(evaluation["trials"]["n_trials"])})
        client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, version)
        passed, checks = run_gate(evaluation, thresholds, champion)
        record = decision_record(
            passed, checks, model=REGISTERED_MODEL, version=version,
            previous_champion=champion, decided_by=getpass.getuser(),
            decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
            thresholds=params["gate"], mlflow_run_id=run.info.run_id)
        summary = {"gate.decision": record["decision"],
                   "gate.reasons": " | ".join(record["reasons"])[:5000],
                   "gate.decided_by": record["decided_by"], "gate.decided_at": record["decided_at"]}
        for key, value in summary.items():
            client.set_model_version_tag(REGISTERED_MODEL, version, key, value)
        mlflow.set_tags({**summary, "gate.version": version})
        mlflow.log_metrics({f"gate.{c.name}": float(c.passed) for c in checks})
        if passed:  # last: only a fully tagged version becomes champion
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
        record["champion"] = version if passed else (champion or {}).get("version")
        write_json(reports / "promotion.json", record)
        mlflow.log_artifact(str(reports / "promotion.json"))
        # The evaluation report again, now with the decision and its reasons.
        from tradingrl.evaluation.report import write_evaluation_report

        curves = pd.read_parquet(reports / "evaluation" / "curves.parquet")
        config = evaluation.get("config", {})
        write_evaluation_report({**evaluation, "promotion": record}, curves,
                                reports / "promotion.html",
                                rolling_window=int(config.get("rolling_sharpe_window", 63)),
                                bars_per_year=int(config.get("bars_per_year", 252)))
        mlflow.log_artifact(str(reports / "promotion.html"))

    print(f"promote: {REGISTERED_MODEL} v{version} {record['decision']}"
          + ("" if passed else f" ({'; '.join(record['reasons'])})"))
    window = manifest["reference"]
    print(f"promote: reference window {window['sessions']} sessions x {window['symbols']} symbols "
          f"({window['first'][:10]} .. {window['last'][:10]})")
    return record


if __name__ == "__main__":
    run_stage(main)
