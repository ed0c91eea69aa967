"""Promotion: register a policy bundle, gate it, move the aliases.

:func:`promote` is the promote stage's registry call (tasks/promote.py), on
a bundle built with its reference window
(:func:`tradingrl.monitoring.reference.build_reference_bundle`):

1. the bundle's manifest read (files checked);
2. registered as a new version of ``trading-policy`` with alias
   ``challenger``, tagged with the walk-forward evaluation it was judged on;
3. the promotion gate (:mod:`tradingrl.registry.gate`) against the
   evaluation, the thresholds and the current champion
   (:func:`~tradingrl.registry.champion.load_champion`);
4. the decision as tags on the version and on the active MLflow run; on a
   pass alias ``champion`` moves to the new version as the last step, so no
   half-tagged version is ever champion. A refusal changes no alias.

mlflow is imported inside the functions; the caller owns the MLflow run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl.registry.champion import CHALLENGER, CHAMPION, POLICY_MODEL
from tradingrl.registry.gate import GateThresholds, decision_record, folds_key, run_gate


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote` did. record: the decision as reports/promotion.json
    holds it; bundle_dir / manifest: the bundle registered and its policy.json."""

    record: dict[str, Any]
    bundle_dir: Path
    manifest: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.record["decision"] == "promoted"


def example_window(bars: pd.DataFrame, manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The model's input example: the last ``min_history_bars`` bars of the
    first symbol (alphabetically), the least a decision needs."""
    first = min(bars["symbol"].unique())
    return (bars[bars["symbol"] == first].sort_values("timestamp")
            .tail(int(manifest["min_history_bars"])).reset_index(drop=True))


def evaluation_tags(evaluation: Mapping[str, Any]) -> dict[str, str]:
    """The version tags of the walk-forward evaluation a policy was judged on
    (reports/metrics.json): its run, out-of-sample Sharpe ratio (annualised,
    after costs) and drawdown (fraction of equity), deflated Sharpe ratio, the
    folds' key and the trial count."""
    overall = evaluation["policy"]["overall"]
    return {"evaluation_run_id": str(evaluation.get("mlflow_run_id")),
            "oos_sharpe": str(overall.get("sharpe")),
            "oos_max_drawdown": str(overall.get("max_drawdown")),
            "dsr": str(evaluation["policy"]["dsr"].get("dsr")),
            "folds_key": folds_key(evaluation),
            "n_trials": str(evaluation["trials"]["n_trials"])}


def promote(bundle_dir: str | Path, bars: pd.DataFrame, *, evaluation: Mapping[str, Any],
            thresholds: GateThresholds, tags: Mapping[str, str], decided_by: str,
            name: str = POLICY_MODEL) -> Promotion:
    """Steps 1-4 of the module docstring, inside the active MLflow run (its
    store holds the registry; a RuntimeError without one).

    bundle_dir: the bundle (with its reference window); bars: validated OHLCV
    the input example is cut from (:func:`example_window`); evaluation:
    reports/metrics.json, the walk-forward evaluation the policy is judged on;
    tags: provenance tags for the version (git commit, data hash); decided_by:
    who decides (a user name).
    """
    import mlflow
    from mlflow import MlflowClient

    from tradingrl.registry.bundle import read_manifest
    from tradingrl.registry.champion import load_champion
    from tradingrl.registry.pyfunc import log_trading_policy

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("promote() registers into the active MLflow run; start one first")
    run_id = run.info.run_id
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    client = MlflowClient()  # the active run's store (log_trading_policy registers there)
    champion = load_champion(mlflow.get_tracking_uri(), name=name)
    version = log_trading_policy(bundle, example_window(bars, manifest), name=name, tags={
        **tags, "run_id": run_id, **evaluation_tags(evaluation)})
    client.set_registered_model_alias(name, CHALLENGER, version)
    previous = None if champion is None else champion.gate_record()
    passed, checks = run_gate(evaluation, thresholds, previous)
    record = decision_record(
        passed, checks, model=name, version=version, previous_champion=previous,
        decided_by=decided_by, decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
        thresholds=asdict(thresholds), mlflow_run_id=run_id)
    summary = {"gate.decision": record["decision"],
               "gate.reasons": " | ".join(record["reasons"])[:5000],  # MLflow's tag limit
               "gate.decided_by": record["decided_by"], "gate.decided_at": record["decided_at"]}
    for key, value in summary.items():
        client.set_model_version_tag(name, version, key, value)
    mlflow.set_tags({**summary, "gate.version": version})
    mlflow.log_metrics({f"gate.{c.name}": float(c.passed) for c in checks})
    if passed:  # last: only a fully tagged version becomes champion
        client.set_registered_model_alias(name, CHAMPION, version)
    record["champion"] = version if passed else (previous or {}).get("version")
    return Promotion(record=record, bundle_dir=bundle, manifest=manifest)
