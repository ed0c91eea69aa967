"""Prefect flow ``drift_flow``: the newest data against the champion's reference window.

Each task wraps one library call: the champion
(:func:`tradingrl.registry.champion.load_champion`, its bundle and reference
window); the newest window of the configured source through the ingest,
validate and features stages' calls, nothing written under data/
(:func:`tradingrl.monitoring.window.fetch_window`); its decisions replayed
and checked (:func:`tradingrl.monitoring.decision.run_checks`); the
decision (:func:`~tradingrl.monitoring.decision.decide_drift`, params.yaml
``monitoring``) written to ``reports/drift/<UTC stamp>/`` and an MLflow run
``drift_check`` (:func:`tradingrl.monitoring.record.log_check`). No champion,
or one without a reference window: "nothing to compare". Retraining due:
:func:`tradingrl.monitoring.retrain.start_training` (``trigger`` auto: the
training deployment of pipelines.yaml when the Prefect API knows it, else
``training_flow`` as a subflow; deployment / subflow force one; none: a dry run).

    python -m flows.monitoring                  # check once, locally
    python -m flows.monitoring --trigger none   # dry run
    tradingrl serve                             # the daily deployment (pipelines.yaml)
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.training import training_flow
from tradingrl.monitoring.decision import TRIGGERS
from tradingrl.monitoring.retrain import training_deployment_name

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("ingest", "validate", "features", "monitoring")


@task(cache_policy=NO_CACHE)
def load_champion(repo_root: str, dest: str) -> tuple[Any, Any] | None:
    """(champion, its ChampionBundle) downloaded into ``dest``; None without a champion."""
    from tradingrl.monitoring.decisions import load_bundle
    from tradingrl.registry import champion as registry
    from tradingrl.tracking import tracking_uri

    champion = registry.load_champion(tracking_uri(Path(repo_root)), download_to=dest)
    if champion is None:
        return None
    get_run_logger().info("champion: %s v%s (out-of-sample Sharpe %s)", champion.model,
                          champion.version, champion.oos_sharpe)
    return champion, load_bundle(champion.bundle_dir)


@task(cache_policy=NO_CACHE)
def newest_window(repo_root: str, params: dict[str, Any], overrides: dict[str, Any] | None,
                  sessions: int) -> Any:
    from tradingrl.monitoring.window import fetch_window

    window = fetch_window(params["ingest"], params["validate"], params["features"],
                          sessions=sessions, overrides=overrides, base_dir=repo_root)
    get_run_logger().info("window: %d rows of %d symbols (%d quarantined) from %s",
                          window.summary["rows_in"], window.symbols,
                          window.summary["rows_quarantined"], window.summary["source"])
    return window


@task(cache_policy=NO_CACHE)
def replay_champion(bundle: Any, window: Any, window_bars: int) -> Any:
    from tradingrl.monitoring.decisions import replay_newest

    return replay_newest(bundle.policy, bundle.env_config, window.bars, window.features,
                         sessions=window_bars)


@task(cache_policy=NO_CACHE)
def check_window(bundle: Any, replayed: Any, oos_sharpe: float | None, settings: Any) -> Any:
    from tradingrl.monitoring.decision import run_checks

    return run_checks(bundle.reference, bundle.manifest, replayed, oos_sharpe, settings)


@task(cache_policy=NO_CACHE)
def record_check(repo_root: str, decision: Any, snapshots: dict[str, Any]) -> Any:
    from tradingrl.monitoring.record import log_check

    return log_check(repo_root, decision, snapshots)


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
    from tradingrl.monitoring.decision import (
        DriftSettings,
        champion_summary,
        decide_drift,
        no_comparison,
    )
    from tradingrl.monitoring.record import log_trigger, new_report_dir
    from tradingrl.monitoring.retrain import start_training
    from tradingrl.monitoring.window import sessions_needed
    from tradingrl.params import load_params

    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    logger = get_run_logger()
    root = Path(repo_root).resolve()
    params = {section: load_params(section, root / "params.yaml") for section in SECTIONS}
    settings = DriftSettings.from_params(params["monitoring"], window_bars)
    now = datetime.now(UTC)
    context = {"checked_at": now.isoformat(timespec="seconds"), "trigger": trigger,
               "report_dir": str(new_report_dir(root / "reports" / "drift", now))}
    window = {"source": params["ingest"]["source"], "overrides": dict(source_overrides or {})}
    download = tempfile.mkdtemp(prefix="tradingrl-champion-")
    try:
        found = load_champion(str(root), download)
        snapshots: dict[str, Any] = {}
        if found is None or found[1].reference is None:
            summary = None if found is None else champion_summary(
                found[0].version, found[0].oos_sharpe, found[1].manifest)
            decision = no_comparison(settings, champion=summary, window=window, **context)
        else:
            champion, bundle = found
            sessions, notes = sessions_needed(bundle.manifest, params["features"]["warmup_bars"],
                                              settings.window_bars)
            fetched = newest_window(str(root), params, source_overrides, sessions)
            replayed = replay_champion(bundle, fetched, settings.window_bars)
            results = check_window(bundle, replayed, champion.oos_sharpe, settings)
            decision = decide_drift(
                results, settings, rows=replayed.rows, window={**window, **fetched.summary},
                champion=champion_summary(champion.version, champion.oos_sharpe, bundle.manifest),
                notes=tuple(notes), **context)
            snapshots = results.snapshots()
            replayed.rows.to_parquet(Path(decision.report_dir) / "window.parquet", index=False)
        logger.info("decision: %s (%s)", decision.decision, "; ".join(decision.reasons))
        decision = record_check(str(root), decision, snapshots)

        state = None
        if decision.retrain_due and trigger != "none":
            started, state = start_training(
                trigger, None if trigger == "subflow" else training_deployment_name(root),
                lambda: training_flow(repo_root=str(root), return_state=True))
            logger.info("retraining: %s %s, flow run %s", started["action"],
                        started["deployment"] or "training_flow", started["flow_run_id"])
            decision = dataclasses.replace(decision, trigger=started)
            log_trigger(root, decision)
        create_markdown_artifact(key="drift-check", markdown=decision.summary_markdown(),
                                 description="Drift check: decision, rules, reports")
        if state is not None and state.is_failed():
            state.result()  # raises the training flow's own error
        return decision.to_dict()
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
