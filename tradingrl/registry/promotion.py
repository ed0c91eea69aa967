"""Promotion: register a policy bundle, gate it, move the aliases.

:func:`promote` is the promote stage's registry call (tasks/promote.py), on
a bundle built with its reference window
(:func:`tradingrl.monitoring.reference.build_reference_bundle`):

1. the bundle's manifest read (files checked) and its provenance checked:
   the evaluation must have been produced from the inputs the bundled
   pieces were trained on (:func:`~tradingrl.registry.provenance.check_provenance`;
   a mismatch raises :class:`~tradingrl.registry.provenance.ProvenanceError`
   before anything is registered);
2. the current champion (:func:`~tradingrl.registry.champion.load_champion`,
   its bundle downloaded) compared with the challenger like for like by the
   caller's ``compare`` (tasks/promote.py passes
   :func:`tradingrl.monitoring.reference.champion_comparison`: the replay
   lives in monitoring), also before anything is registered;
3. registered as a new version of ``trading-policy`` with alias
   ``challenger``, tagged with the walk-forward evaluation it was judged on;
4. the promotion gate (:mod:`tradingrl.registry.gate`) against the
   evaluation, the thresholds and the comparison with the champion;
5. the decision as tags on the version and on the active MLflow run; on a
   pass alias ``champion`` moves to the new version as the last step, so no
   half-tagged version is ever champion. A refusal changes no alias.

mlflow is imported inside the functions; the caller owns the MLflow run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl.registry.champion import CHALLENGER, CHAMPION, POLICY_MODEL
from tradingrl.registry.comparison import ChampionComparison
from tradingrl.registry.gate import (
    NOT_COMPARABLE,
    GateThresholds,
    decision_record,
    folds_key,
    run_gate,
)


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
    first symbol (alphabetically), the least a decision needs; of every
    symbol of a portfolio bundle (it decides for all of them at once)."""
    symbols = manifest.get("input", {}).get("symbols") or [min(bars["symbol"].unique())]
    rows = bars[bars["symbol"].isin(symbols)].sort_values(["symbol", "timestamp"])
    return (rows.groupby("symbol", sort=False).tail(int(manifest["min_history_bars"]))
            .reset_index(drop=True))


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


# The registered model's tag naming the version the gate last made champion:
# a champion alias on another version was moved by a person (the UI, the API).
GATE_CHAMPION_TAG = "gate.champion"


def champion_setter(client: Any, name: str, version: str) -> dict[str, Any]:
    """Who made ``version`` the champion, as far as the store can say:
    ``{"set_by": "gate"}`` when the gate promoted it last, else ``{"set_by":
    "hand", "gate_champion": <the version the gate last promoted, or None>,
    "set_by_detail": ...}``. MLflow keeps no history of an alias (neither who
    moved it nor when), so a hand-set champion is known only as not the gate's."""
    gate_champion = client.get_registered_model(name).tags.get(GATE_CHAMPION_TAG)
    if gate_champion == str(version):
        return {"set_by": "gate"}
    return {"set_by": "hand", "gate_champion": gate_champion,
            "set_by_detail": f"the gate last made v{gate_champion} champion; the alias was moved "
                             f"to v{version} outside it (the MLflow store records neither who "
                             "moves an alias nor when)"}


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def run_link(client: Any, run_id: str | None) -> str:
    """A markdown link to run ``run_id`` in the MLflow UI (a route of the UI's
    own page, so it works on any host); ``-`` without a run, and the id with
    "not in this store" for a run the store does not hold."""
    from mlflow.exceptions import MlflowException

    if not run_id or run_id == "None":
        return "-"
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return f"{run_id} (not in this store)"
    return f"[{run_id[:8]}](#/experiments/{experiment_id}/runs/{run_id})"


def version_description(record: Mapping[str, Any], evaluation: Mapping[str, Any],
                        client: Any) -> str:
    """The model version's description in the MLflow UI (markdown): the gate's
    decision, who decided and when, each check with its value and threshold,
    the out-of-sample headline and links to the evaluation run (whose
    artifacts hold evaluation.html) and the promote run (promotion.html)."""
    overall = evaluation["policy"]["overall"]
    best = evaluation.get("best_baseline")
    best_sharpe = None if best is None else evaluation["baselines"][best]["overall"]["sharpe"]
    dsr = evaluation["policy"]["dsr"]
    lines = [
        f"**Gate: {record['decision']}**, by {record['decided_by']} at {record['decided_at']}.",
        "",
        "| check | status | value | threshold |",
        "|---|---|---|---|",
        *(f"| {c['name']} | {c['status']} | {_figure(c['value'])} | {_figure(c['threshold'])} |"
          for c in record["checks"]),
        "",
        (f"Out of sample (walk-forward, after costs): Sharpe {_figure(overall.get('sharpe'))} "
        f"against the best baseline {best} {_figure(best_sharpe)}; deflated Sharpe ratio "
        f"{_figure(dsr.get('dsr'))} over {_figure(dsr.get('n_trials'))} trials; maximum "
        f"drawdown {_figure(overall.get('max_drawdown'))}; turnover "
        f"{_figure(overall.get('turnover'))}."),
        "",
        (f"Evaluation run: {run_link(client, evaluation.get('mlflow_run_id'))} "
        "(evaluation.html among its artifacts). Promote run: "
        f"{run_link(client, record.get('mlflow_run_id'))} (promotion.html)."),
    ]
    if record["decision"] != "promoted":
        lines += ["", "Reasons: " + "; ".join(record["reasons"])]
    return "\n".join(lines)


def promote(bundle_dir: str | Path, bars: pd.DataFrame, *, evaluation: Mapping[str, Any],
            thresholds: GateThresholds, tags: Mapping[str, str], decided_by: str,
            data_files: Mapping[str, str | Path],
            compare: Callable[[Any], ChampionComparison] | None = None,
            consistency: Mapping[str, Any] | None = None,
            name: str = POLICY_MODEL) -> Promotion:
    """Steps 1-5 of the module docstring, inside the active MLflow run (its
    store holds the registry; a RuntimeError without one).

    bundle_dir: the bundle (with its reference window); bars: validated OHLCV
    the input example is cut from (:func:`example_window`); evaluation:
    reports/metrics.json, the walk-forward evaluation the policy is judged on;
    tags: provenance tags for the version (git commit, data hash); decided_by:
    who decides (a user name); data_files: ``{name: path}`` of the data files
    the caller read (names as
    :data:`~tradingrl.registry.provenance.EVALUATION_FILES`), checked against
    the evaluation's record; compare: the champion (a
    :class:`~tradingrl.registry.champion.Champion` with its bundle
    downloaded) -> its :class:`~tradingrl.registry.comparison.ChampionComparison`
    with the challenger; required when there is a champion (a ValueError);
    consistency: the served trend model against the walk-forward's
    predictions (:func:`~tradingrl.registry.consistency.prediction_consistency`;
    the promote stage always passes it, None leaves that check out).
    """
    import mlflow
    from mlflow import MlflowClient

    from tradingrl.registry.bundle import AGENT_DIR, TREND_DIR, read_manifest
    from tradingrl.registry.champion import load_champion
    from tradingrl.registry.provenance import check_provenance
    from tradingrl.registry.pyfunc import log_trading_policy

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("promote() registers into the active MLflow run; start one first")
    run_id = run.info.run_id
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    check_provenance(evaluation, bundle / TREND_DIR, bundle / AGENT_DIR, data_files)
    client = MlflowClient()  # the active run's store (log_trading_policy registers there)
    with tempfile.TemporaryDirectory(prefix="champion-") as scratch:
        champion = load_champion(mlflow.get_tracking_uri(), name=name,
                                 download_to=None if compare is None else scratch)
        if champion is not None and compare is None:
            raise ValueError(f"{name} has a champion (v{champion.version}): promote() needs "
                             "compare= to compare the challenger with it like for like")
        comparison = None if champion is None else compare(champion)
    version = log_trading_policy(bundle, example_window(bars, manifest), name=name, tags={
        **tags, "run_id": run_id, **evaluation_tags(evaluation)})
    client.set_registered_model_alias(name, CHALLENGER, version)
    previous = None if champion is None else {
        **champion.gate_record(), **champion_setter(client, name, champion.version)}
    passed, checks = run_gate(evaluation, thresholds, comparison, consistency)
    record = decision_record(
        passed, checks, model=name, version=version, previous_champion=previous,
        champion_comparison=None if comparison is None else comparison.record(),
        consistency=None if consistency is None else dict(consistency),
        decided_by=decided_by, decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
        thresholds=asdict(thresholds), mlflow_run_id=run_id)
    by_name = {c.name: c for c in checks}
    summary = {"gate.decision": record["decision"],
               "gate.reasons": " | ".join(record["reasons"])[:5000],  # MLflow's tag limit
               "gate.beats_champion": by_name["beats_champion"].status,
               "gate.decided_by": record["decided_by"], "gate.decided_at": record["decided_at"]}
    for key, value in summary.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version,
                                description=version_description(record, evaluation, client))
    mlflow.set_tags({**summary, "gate.version": version})
    # A check that compared nothing is no metric: 1.0 would read "beat the champion".
    mlflow.log_metrics({f"gate.{c.name}": float(c.passed) for c in checks
                        if c.status != NOT_COMPARABLE})
    if passed:  # last: only a fully tagged version becomes champion
        client.set_registered_model_tag(name, GATE_CHAMPION_TAG, version)
        client.set_registered_model_alias(name, CHAMPION, version)
    record["champion"] = version if passed else (previous or {}).get("version")
    return Promotion(record=record, bundle_dir=bundle, manifest=manifest)
