"""Writing a drift check down: its report folder, its files and its MLflow run.

- :func:`new_report_dir`: ``<base>/<UTC stamp>/`` (``-2``, ``-3``, ... when
  two checks share a second);
- :func:`log_check`: the Evidently HTML reports and ``decision.json`` into
  that folder, all of it logged to an MLflow run ``drift_check`` with the
  decision's tags, metrics and params (:class:`DriftDecision`);
- :func:`log_trigger`: after retraining was started, ``decision.json`` and
  the run learn what started.

The repository root arrives as an argument (the MLflow store and the
provenance tags are the checkout's, :mod:`tradingrl.tracking`); mlflow is
imported inside the functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from tradingrl.monitoring.decision import DriftDecision

DECISION_FILE = "decision.json"
RUN_NAME = "drift_check"
ARTIFACT_PATH = "drift"


def new_report_dir(base: str | Path, now: datetime) -> Path:
    """A new folder ``base/<now as %Y%m%dT%H%M%SZ>`` (created)."""
    first = Path(base) / now.strftime("%Y%m%dT%H%M%SZ")
    out, k = first, 1
    while out.exists():  # two checks in one second
        k += 1
        out = first.with_name(f"{first.name}-{k}")
    out.mkdir(parents=True)
    return out


def log_check(repo_root: str | Path, decision: DriftDecision,
              snapshots: Mapping[str, Any] | None = None) -> DriftDecision:
    """Save ``snapshots`` (file name -> Evidently snapshot) and decision.json
    into ``decision.report_dir`` and log the folder, with the decision's tags,
    metrics and params, to an MLflow run ``drift_check`` in
    ``decision.experiment``; returns the decision with its ``mlflow_run_id``
    (also in decision.json)."""
    import mlflow

    from tradingrl.tracking import provenance_tags, use_experiment

    root, out = Path(repo_root), Path(decision.report_dir)
    for name, snapshot in (snapshots or {}).items():
        snapshot.save_html(str(out / name))
    use_experiment(root, decision.experiment)
    tags = {**provenance_tags(root, "reports/drift"), **decision.tags()}
    tags.pop("data_dvc_md5", None)  # the window is fetched, not a DVC output
    tags.pop("data_path", None)
    with mlflow.start_run(run_name=RUN_NAME, tags=tags) as run:
        decision = dataclasses.replace(decision, mlflow_run_id=run.info.run_id)
        mlflow.log_metrics(decision.metrics())
        mlflow.log_params(decision.params())
        (out / DECISION_FILE).write_text(decision.to_json())
        mlflow.log_artifacts(str(out), artifact_path=ARTIFACT_PATH)
    return decision


def log_trigger(repo_root: str | Path, decision: DriftDecision) -> None:
    """Rewrite decision.json (now with what was started) and add it and the
    training tags to the check's MLflow run."""
    from mlflow import MlflowClient

    from tradingrl.tracking import tracking_uri

    if decision.mlflow_run_id is None:
        raise ValueError("the decision has no MLflow run yet (log_check first)")
    path = Path(decision.report_dir) / DECISION_FILE
    path.write_text(decision.to_json())
    client = MlflowClient(tracking_uri(Path(repo_root)))
    for key, value in decision.training_tags().items():
        client.set_tag(decision.mlflow_run_id, key, value)
    client.log_artifact(decision.mlflow_run_id, str(path), artifact_path=ARTIFACT_PATH)
