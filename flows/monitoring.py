"""Prefect flow ``drift_flow``: the newest data against the champion's reference window.

1. The champion: the ``trading-policy`` version holding alias ``champion`` is
   downloaded from MLflow; its bundle carries the reference window saved at
   promotion (``reference.parquet``: its features, predictions and decisions
   over the last sessions of its training data). No champion, or one without
   a reference window: the flow records "nothing to compare" and stops.
2. The newest window: the configured source (params.yaml ``ingest``, with
   ``source_overrides`` merged into its options) through the same library
   calls as the ingest, validate and features stages, cut to the newest
   ``window_bars`` sessions plus the history the champion's features and
   decisions need. Nothing is written under data/ (DVC owns it).
3. The checks (:mod:`tradingrl.monitoring`): the champion's decisions replayed
   over the window; Evidently drift of the model's features and of the
   decision columns; the decisions traded after costs (live Sharpe ratio
   against the out-of-sample one recorded at promotion).
4. The decision (params.yaml ``monitoring`` thresholds) is saved under
   ``reports/drift/<UTC stamp>/`` (``drift.html`` and ``prediction_drift.html``,
   Evidently's reports; ``decision.json``, every rule with its value and
   threshold), logged to an MLflow run (experiment ``monitoring.experiment``,
   run name ``drift_check``) and shown as a Prefect markdown artifact.
5. Retraining due: ``trigger="auto"`` starts the training deployment named in
   pipelines.yaml (``training/<name>``) when it exists on the Prefect API
   (``run_deployment(..., timeout=0)``: the run is queued for ``tradingrl
   serve``, the check does not wait), else runs ``training_flow`` as a
   subflow. ``"deployment"`` and ``"subflow"`` force one way; ``"none"``
   records the decision and starts nothing (a dry run).

    python -m flows.monitoring                  # check once, locally
    python -m flows.monitoring --trigger none   # dry run
    tradingrl serve                             # the daily deployment (pipelines.yaml)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.training import training_flow

REPO_ROOT = Path(__file__).resolve().parent.parent
REGISTERED_MODEL = "trading-policy"
CHAMPION = "champion"
TRIGGERS = ("auto", "subflow", "deployment", "none")
TRAINING_ENTRYPOINT = "flows/training.py:training_flow"
TRAINING_FLOW_NAME = "training"  # training_flow's @flow name: deployments are "training/<name>"
_SECTIONS = ("ingest", "validate", "features", "monitoring")
_MONITORING_KEYS = ("experiment", "window_bars", "reference_sessions", "drift_method",
                    "column_threshold", "drift_share_threshold", "prediction_column_threshold",
                    "prediction_drift_threshold", "performance_decay_threshold",
                    "min_matured_bars", "bars_per_year")


def read_params(root: Path) -> dict[str, Any]:
    """The sections of ``root/params.yaml`` the check reads."""
    import yaml

    path = root / "params.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    params = yaml.safe_load(path.read_text()) or {}
    missing = [s for s in _SECTIONS if s not in params]
    if missing:
        raise KeyError(f"{path} has no {missing[0]!r} section")
    absent = [k for k in _MONITORING_KEYS if k not in params["monitoring"]]
    if absent:
        raise KeyError(f"{path}: monitoring lacks {', '.join(absent)}")
    return {s: params[s] for s in _SECTIONS}


def thresholds_from(monitoring: dict[str, Any]) -> Any:
    from tradingrl.monitoring import RetrainThresholds

    return RetrainThresholds(
        drift_share=monitoring["drift_share_threshold"],
        prediction_drift_share=monitoring["prediction_drift_threshold"],
        performance_decay=monitoring["performance_decay_threshold"],
        min_matured_bars=monitoring["min_matured_bars"])


def _new_report_dir(root: Path, now: datetime) -> Path:
    base = root / "reports" / "drift" / now.strftime("%Y%m%dT%H%M%SZ")
    out, k = base, 1
    while out.exists():  # two checks in one second
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    out.mkdir(parents=True)
    return out


# ------------------------------------------------------------------ the champion
@dataclass(eq=False)
class Champion:
    """The champion version, its bundle (downloaded) and what it carries."""

    version: str
    oos_sharpe: float | None
    bundle_dir: Path
    manifest: dict[str, Any]
    reference: pd.DataFrame | None
    policy: Any = None
    env_config: dict[str, Any] | None = None


def _bundle_path(model_dir: Path) -> Path:
    """Where a downloaded trading-policy pyfunc keeps its bundle (the
    ``bundle`` artifact of its MLmodel)."""
    import yaml

    from tradingrl.registry.pyfunc import ARTIFACT_KEY

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    artifacts = mlmodel["flavors"]["python_function"].get("artifacts") or {}
    if ARTIFACT_KEY not in artifacts:
        raise ValueError(f"{model_dir / 'MLmodel'} has no {ARTIFACT_KEY!r} artifact; "
                         f"not a {REGISTERED_MODEL} model")
    return model_dir / artifacts[ARTIFACT_KEY]["path"]


@task(cache_policy=NO_CACHE)
def load_champion(repo_root: str, dest: str) -> Champion | None:
    """The champion of ``trading-policy`` downloaded into ``dest`` and loaded
    (its files and decision code checked); None when no version is champion."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tradingrl.monitoring import read_env_config
    from tradingrl.registry import TradingPolicy, read_manifest
    from tradingrl.registry.bundle import REFERENCE_FILE
    from tradingrl.tracking import tracking_uri

    uri = tracking_uri(Path(repo_root))
    client = MlflowClient(uri)
    # No registered model, or a model whose versions were all refused (no
    # alias champion): nothing to compare. Read from the model's aliases, not
    # from the lookup's error, whose code differs between stores.
    try:
        aliases = client.get_registered_model(REGISTERED_MODEL).aliases
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if CHAMPION not in aliases:
        return None
    version = client.get_model_version(REGISTERED_MODEL, str(aliases[CHAMPION]))
    mlflow.set_tracking_uri(uri)
    model_dir = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{REGISTERED_MODEL}/{version.version}", dst_path=dest))
    bundle = _bundle_path(model_dir)
    # Files checked now; the decision code when the policy is loaded (a bundle
    # without a reference window is reported as such, whatever its code).
    manifest = read_manifest(bundle, check_code=False)
    sharpe = (version.tags or {}).get("oos_sharpe")
    try:
        oos = float(sharpe) if sharpe not in (None, "", "None") else None
    except ValueError:
        raise ValueError(f"{REGISTERED_MODEL} v{version.version}: tag oos_sharpe {sharpe!r} is "
                         "not a number") from None
    if oos is not None and not math.isfinite(oos):  # "nan": evaluation had no Sharpe ratio
        oos = None
    champion = Champion(version=str(version.version), oos_sharpe=oos, bundle_dir=bundle,
                        manifest=manifest, reference=None)
    if "reference" in manifest:
        champion.reference = pd.read_parquet(bundle / REFERENCE_FILE)
        champion.policy = TradingPolicy.load(bundle)
        champion.env_config = read_env_config(bundle)
    get_run_logger().info("champion: %s v%s (out-of-sample Sharpe %s)", REGISTERED_MODEL,
                          champion.version, oos)
    return champion


# ------------------------------------------------------------------ the window
@task(cache_policy=NO_CACHE)
def fetch_window(repo_root: str, ingest: dict[str, Any], validate: dict[str, Any],
                 overrides: dict[str, Any] | None, sessions: int) -> tuple[pd.DataFrame,
                                                                          dict[str, Any]]:
    """The newest ``sessions`` sessions of the configured source, validated
    (the validate stage's contract and expectations); a window that fails
    validation fails the check with the stage's one-line message."""
    from tradingrl.data.errors import ContractError
    from tradingrl.data.sources import load_source
    from tradingrl.data.validation import ValidationThresholds, validate_ohlcv

    kind = ingest["source"]
    options = {**dict(ingest.get(kind) or {}), **dict(overrides or {})}
    if kind == "csv" and "path" in options:  # relative to the repository, as the stage reads it
        options["path"] = str(Path(repo_root) / options["path"])
    raw, report = load_source(kind, options)
    stamps = pd.DatetimeIndex(raw["timestamp"].unique()).sort_values()
    if len(stamps) < sessions:
        raise ValueError(f"the {kind} source gave {len(stamps)} sessions; the check needs "
                         f"{sessions} (window_bars + the champion's history)")
    window = raw[raw["timestamp"] >= stamps[-sessions]].reset_index(drop=True)
    result = validate_ohlcv(window, ValidationThresholds(**validate))
    if not result.passed:
        raise ContractError(f"the newest window failed validation: {result.failure_message()}")
    summary = {"source": kind, "options": {k: v for k, v in options.items() if k != "path"},
               "fetched_sessions": sessions, "rows_in": result.report["rows_in"],
               "rows_valid": result.report["rows_valid"],
               "rows_quarantined": result.report["rows_quarantined"],
               "source_first": report["first"], "source_last": report["last"]}
    get_run_logger().info("window: %d rows of %d symbols (%d quarantined) from %s", len(window),
                          result.report["symbols"], summary["rows_quarantined"], kind)
    return result.valid, summary


@task(cache_policy=NO_CACHE)
def featurise(bars: pd.DataFrame, features: dict[str, Any]) -> pd.DataFrame:
    """The features stage's table for ``bars`` (params.yaml ``features``)."""
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.contract import feature_schema
    from tradingrl.features.labels import LabelSpec

    table, _ = build_feature_table(bars, LabelSpec(**features["label"]),
                                   warmup_bars=features["warmup_bars"])
    feature_schema().validate(table)
    return table


# ------------------------------------------------------------------ the checks
@task(cache_policy=NO_CACHE)
def replay_champion(champion: Champion, bars: pd.DataFrame, table: pd.DataFrame,
                    window_bars: int) -> Any:
    """The champion's decisions at every bar of the newest ``window_bars`` sessions."""
    from tradingrl.monitoring import replay_decisions

    stamps = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    if len(stamps) < window_bars:
        raise ValueError(f"{len(stamps)} sessions have features, the window needs {window_bars}")
    return replay_decisions(champion.policy, champion.env_config, bars, table,
                            start=stamps[-window_bars])


@task(cache_policy=NO_CACHE)
def check_features(champion: Champion, current: pd.DataFrame,
                   monitoring: dict[str, Any]) -> Any:
    from tradingrl.monitoring import feature_drift, model_features

    return feature_drift(champion.reference, current, model_features(champion.manifest),
                         method=monitoring["drift_method"],
                         threshold=monitoring["column_threshold"],
                         drift_share=monitoring["drift_share_threshold"])


@task(cache_policy=NO_CACHE)
def check_predictions(champion: Champion, current: pd.DataFrame,
                      monitoring: dict[str, Any]) -> Any:
    """Drift of the decision columns the reference holds (None: it holds none)."""
    from tradingrl.monitoring import DECISION_COLUMNS, prediction_drift

    columns = [c for c in DECISION_COLUMNS if c in champion.reference.columns]
    if not columns:
        return None
    return prediction_drift(champion.reference, current, columns,
                            method=monitoring["drift_method"],
                            threshold=monitoring["prediction_column_threshold"],
                            drift_share=monitoring["prediction_drift_threshold"])


@task(cache_policy=NO_CACHE)
def check_performance(champion: Champion, replayed: Any, monitoring: dict[str, Any]) -> Any:
    from tradingrl.monitoring import live_performance
    from tradingrl.monitoring.decisions import backtest_env

    return live_performance(replayed.rows, replayed.markets, env=backtest_env(replayed.env),
                            oos_sharpe=champion.oos_sharpe,
                            bars_per_year=int(monitoring["bars_per_year"]))


# ------------------------------------------------------------------ the record
def _tags(record: dict[str, Any]) -> dict[str, str]:
    return {"drift.decision": record["decision"],
            "drift.retrain_due": str(record["retrain_due"]).lower(),
            "drift.fired": ",".join(record["fired"]) or "none",
            "drift.reasons": " | ".join(record["reasons"])[:5000],
            "drift.champion_version": str((record.get("champion") or {}).get("version")),
            "drift.trigger": record["trigger"]["mode"]}


@task(cache_policy=NO_CACHE)
def record_check(repo_root: str, out_dir: str, record: dict[str, Any],
                 reports: dict[str, Any]) -> str:
    """Write the HTML reports and decision.json into ``out_dir`` and log them,
    with the decision as tags and the checks' numbers as metrics, to an MLflow
    run named ``drift_check``; returns the run id (also in decision.json)."""
    import mlflow

    from tradingrl.tracking import provenance_tags, use_experiment

    out = Path(out_dir)
    for name, snapshot in reports.items():
        snapshot.save_html(str(out / name))
    use_experiment(Path(repo_root), record["experiment"])
    tags = {**provenance_tags(Path(repo_root), "reports/drift"), **_tags(record)}
    tags.pop("data_dvc_md5", None)  # the window is fetched, not a DVC output
    tags.pop("data_path", None)
    with mlflow.start_run(run_name="drift_check", tags=tags) as run:
        record["mlflow_run_id"] = run.info.run_id
        metrics = {}
        for key in ("feature_drift", "prediction_drift"):
            if record.get(key):
                metrics[f"{key}.share"] = record[key]["share"]
                metrics[f"{key}.count"] = record[key]["count"]
        for key, value in (record.get("performance") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[f"performance.{key}"] = float(value)
        mlflow.log_metrics(metrics)
        mlflow.log_params({"window_bars": record["window"].get("window_bars"),
                           "trigger": record["trigger"]["mode"],
                           **{f"threshold.{k}": v for k, v in record["thresholds"].items()}})
        (out / "decision.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        mlflow.log_artifacts(str(out), artifact_path="drift")
    return run.info.run_id


def _update_record(repo_root: str, out_dir: str, record: dict[str, Any]) -> None:
    """After a trigger: decision.json and the MLflow run learn what started."""
    from mlflow import MlflowClient

    from tradingrl.tracking import tracking_uri

    path = Path(out_dir) / "decision.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    client = MlflowClient(tracking_uri(Path(repo_root)))
    run_id = record["mlflow_run_id"]
    training = record["trigger"]
    client.set_tag(run_id, "drift.training_action", training["action"])
    if training.get("flow_run_id"):
        client.set_tag(run_id, "drift.training_flow_run_id", str(training["flow_run_id"]))
    client.log_artifact(run_id, str(path), artifact_path="drift")


def summary_markdown(record: dict[str, Any]) -> str:
    """The Prefect artifact: decision, rules, window, where the reports are."""
    lines = ["# Drift check", "", f"**{record['decision']}**"]
    lines += [f"- {reason}" for reason in record["reasons"]]
    if record.get("checks"):
        lines += ["", "| rule | checked | value | threshold | fired |", "|---|---|---|---|---|"]
        for check in record["checks"]:
            value = "n/a" if check["value"] is None else f"{check['value']:.3f}"
            lines.append(f"| {check['name']} | {check['checked']} | {value} | "
                         f"{check['threshold']:.3f} | {check['fired']} |")
    window = record.get("window") or {}
    if window.get("first_decision"):
        lines += ["", (f"Window: {window['first_decision']} .. {window['last_decision']}, "
                       f"{window['sessions']} sessions x {window['symbols']} symbols from "
                       f"{window['source']}.")]
    champion = record.get("champion") or {}
    if champion:
        lines.append(f"Champion: {REGISTERED_MODEL} v{champion['version']} "
                     f"(reference {champion.get('reference_first') or 'none'} .. "
                     f"{champion.get('reference_last') or ''}).")
    trigger = record["trigger"]
    lines += ["", f"Trigger {trigger['mode']}: {trigger['action']}"
                  + (f" ({trigger['deployment']})" if trigger.get("deployment") else "")
                  + (f", flow run `{trigger['flow_run_id']}`" if trigger.get("flow_run_id")
                     else "") + "."]
    lines.append(f"Reports: `{record['report_dir']}`; MLflow run `{record.get('mlflow_run_id')}`.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ retraining
def training_deployment_name(root: Path) -> str | None:
    """``training/<name>`` of the deployment of ``training_flow`` declared in
    ``root/pipelines.yaml`` (None: no such file or no such deployment)."""
    from tradingrl.orchestration import load_pipelines

    path = root / "pipelines.yaml"
    if not path.is_file():
        return None
    for spec in load_pipelines(path, root).deployments:
        if spec.entrypoint == TRAINING_ENTRYPOINT:
            return f"{TRAINING_FLOW_NAME}/{spec.name}"
    return None


def deployment_exists(name: str) -> bool:
    """Whether the Prefect API knows a deployment ``<flow>/<deployment>``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


def start_training(root: Path, trigger: str) -> tuple[dict[str, Any], Any]:
    """Start retraining the way ``trigger`` says; returns what was started
    and, for a subflow, its final state (a failed subflow fails this flow
    once the record is written)."""
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    name = training_deployment_name(root) if trigger in ("auto", "deployment") else None
    exists = name is not None and deployment_exists(name)
    if trigger == "deployment" and not exists:
        raise ValueError(f"trigger 'deployment': no training deployment "
                         f"{name or '(none declared in pipelines.yaml)'} on the Prefect API "
                         "(serve it with `tradingrl serve`)")
    if exists:
        run = run_deployment(name=name, timeout=0, tags=["drift-triggered"])
        logger.info("retraining: started deployment %s, flow run %s", name, run.id)
        return {"mode": trigger, "action": "deployment", "deployment": name,
                "flow_run_id": str(run.id), "state": run.state_name}, None
    logger.info("retraining: running training_flow as a subflow (%s)",
                "trigger subflow" if trigger == "subflow" else f"no deployment {name}")
    state = training_flow(repo_root=str(root), return_state=True)
    return {"mode": trigger, "action": "subflow", "deployment": None,
            "flow_run_id": str(state.state_details.flow_run_id), "state": state.name}, state


# ------------------------------------------------------------------ the flow
def _champion_summary(champion: Champion) -> dict[str, Any]:
    reference = champion.manifest.get("reference") or {}
    return {"version": champion.version, "oos_sharpe": champion.oos_sharpe,
            "reference_first": reference.get("first"), "reference_last": reference.get("last"),
            "reference_sessions": reference.get("sessions"), "reference_rows": reference.get("rows")}


@flow(name="drift", log_prints=True)
def drift_flow(repo_root: str = str(REPO_ROOT), window_bars: int | None = None,
               source_overrides: dict[str, Any] | None = None,
               trigger: str = "auto") -> dict[str, Any]:
    """Check the newest window against the champion and retrain when a rule
    fires (see the module docstring). ``window_bars``: sessions checked
    (default params.yaml ``monitoring.window_bars``); ``source_overrides``:
    options merged into the source's params (e.g. another synthetic seed);
    ``trigger``: auto | subflow | deployment | none. Returns the decision
    record (what decision.json holds)."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    logger = get_run_logger()
    root = Path(repo_root).resolve()
    params = read_params(root)
    monitoring = params["monitoring"]
    window_bars = int(monitoring["window_bars"] if window_bars is None else window_bars)
    if window_bars < 2:
        raise ValueError(f"window_bars must be >= 2, got {window_bars}")
    thresholds = thresholds_from(monitoring)
    now = datetime.now(UTC)
    out_dir = _new_report_dir(root, now)
    record: dict[str, Any] = {
        "checked_at": now.isoformat(timespec="seconds"), "report_dir": str(out_dir),
        "experiment": monitoring["experiment"], "thresholds": asdict(thresholds)
        | {k: monitoring[k] for k in ("drift_method", "column_threshold",
                                      "prediction_column_threshold")},
        "window": {"window_bars": window_bars, "source": params["ingest"]["source"],
                   "overrides": dict(source_overrides or {})},
        "trigger": {"mode": trigger, "action": "none"}, "notes": [],
    }
    download = tempfile.mkdtemp(prefix="tradingrl-champion-")
    try:
        champion = load_champion(str(root), download)
        reports: dict[str, Any] = {}
        if champion is None or champion.reference is None:
            why = ("no champion: nothing to compare" if champion is None else
                   f"champion v{champion.version} carries no reference window (bundled before "
                   "reference windows): nothing to compare")
            record.update(decision="no_champion" if champion is None else "no_reference",
                          retrain_due=False, reasons=[why], fired=[], checks=[],
                          champion=None if champion is None else _champion_summary(champion))
            logger.info(why)
        else:
            from tradingrl.monitoring import CheckResults, decide_retrain, history_bars

            record["champion"] = _champion_summary(champion)
            warmup, own = params["features"]["warmup_bars"], champion.manifest["features"]
            if warmup != own["warmup_bars"]:
                record["notes"].append(f"features.warmup_bars {warmup} differs from the "
                                       f"champion's {own['warmup_bars']}")
            extra = max(0, int(warmup) - int(own["warmup_bars"]))
            sessions = window_bars + history_bars(champion.manifest) + extra
            bars, window = fetch_window(str(root), params["ingest"], params["validate"],
                                        source_overrides, sessions)
            table = featurise(bars, params["features"])
            replayed = replay_champion(champion, bars, table, window_bars)
            current = replayed.rows
            feature = check_features(champion, current, monitoring)
            prediction = check_predictions(champion, current, monitoring)
            performance = check_performance(champion, replayed, monitoring)
            due, checks = decide_retrain(CheckResults(feature, prediction, performance),
                                         thresholds)
            fired = [c.name for c in checks if c.fired]
            record["window"].update(window, first_decision=current["timestamp"].min().isoformat(),
                                    last_decision=current["timestamp"].max().isoformat(),
                                    sessions=int(current["timestamp"].nunique()),
                                    symbols=int(current["symbol"].nunique()))
            record.update(
                decision="retrain" if due else "no_retrain", retrain_due=due,
                reasons=[c.detail for c in checks if c.fired or not due],
                fired=fired, checks=[asdict(c) for c in checks],
                feature_drift=feature.to_dict(),
                prediction_drift=None if prediction is None else prediction.to_dict(),
                performance=performance.to_dict())
            reports["drift.html"] = feature.snapshot
            if prediction is not None:
                reports["prediction_drift.html"] = prediction.snapshot
            current.to_parquet(out_dir / "window.parquet", index=False)
            logger.info("decision: %s (%s)", record["decision"], "; ".join(record["reasons"]))
        record["mlflow_run_id"] = record_check(str(root), str(out_dir), record, reports)

        state = None
        if record["retrain_due"] and trigger != "none":
            record["trigger"], state = start_training(root, trigger)
            _update_record(str(root), str(out_dir), record)
        create_markdown_artifact(key="drift-check", markdown=summary_markdown(record),
                                 description="Drift check: decision, rules, reports")
        if state is not None and state.is_failed():
            state.result()  # raises the training flow's own error
        return record
    finally:
        shutil.rmtree(download, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m flows.monitoring",
                                     description="Check the newest data against the champion.")
    parser.add_argument("--trigger", choices=TRIGGERS, default="auto",
                        help="how to start retraining when due (none: record only)")
    parser.add_argument("--window-bars", type=int, default=None,
                        help="sessions to check (default: params.yaml monitoring.window_bars)")
    args = parser.parse_args(argv)
    return drift_flow(window_bars=args.window_bars, trigger=args.trigger)


if __name__ == "__main__":
    main()
