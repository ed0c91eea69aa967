"""MLflow tracking configuration and run provenance, in one place.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set (e.g. a real ``mlflow server``
over HTTP), else ``sqlite:///<absolute repo root>/mlflow.db`` with artifacts in
``<repo root>/mlartifacts``. Absolute, because ``dvc exp run --temp`` runs the
stages in another folder. Provenance tags: the git commit of the code and the
DVC hash of the stage's input data (from dvc.lock).

Everything here takes the repository root as an argument; mlflow and yaml
are imported inside the functions.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def workspace_root(repo_root: Path) -> Path:
    """The user's checkout. ``dvc exp run --temp`` runs the stages in a copy
    under ``<checkout>/.dvc/tmp/exps/``; runs there must still land in the
    checkout's store, not in a folder DVC deletes afterwards."""
    path = Path(repo_root).resolve()
    parts = path.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return path


def tracking_uri(repo_root: Path) -> str:
    """The MLflow tracking URI for a checkout at ``repo_root``."""
    from_env = os.environ.get(TRACKING_URI_ENV)
    if from_env:
        return from_env
    return f"sqlite:///{workspace_root(repo_root) / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Artifacts of new experiments: ``mlartifacts/`` beside a SQLite store
    (never MLflow's default ``./mlruns`` of whatever the working folder is);
    None for a server, which decides itself."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()


# MLflow 3's UI opens an experiment by its kind; without this tag it guesses,
# and an experiment without traces can open on the GenAI overview.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def use_experiment(repo_root: Path, name: str) -> str:
    """Point mlflow at this checkout's store and experiment ``name`` (created
    with a local artifact root when missing); return the experiment id. The
    experiment is marked as model training (:data:`EXPERIMENT_KIND`) unless
    someone already set its kind."""
    import mlflow

    uri = tracking_uri(repo_root)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_root(uri),
                                                 tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    else:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            mlflow.MlflowClient().set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG,
                                                     EXPERIMENT_KIND)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit(repo_root: Path) -> str | None:
    """HEAD's commit hash (with ``-dirty`` when tracked files changed), or None
    outside a git checkout."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", *args], cwd=repo_root, capture_output=True, text=True, check=False
        )

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def dvc_output_hash(repo_root: Path, path: str) -> str | None:
    """The md5 DVC recorded in dvc.lock for output ``path`` (e.g.
    ``data/features``), or None when dvc.lock does not list it."""
    import yaml

    lock = Path(repo_root) / "dvc.lock"
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path") == path:
                return out.get("md5")
    return None


def provenance_tags(repo_root: Path, data_path: str) -> dict[str, str]:
    """Tags every run and model version carries: code commit and data hash."""
    return {
        "git_commit": git_commit(repo_root) or "unknown",
        "data_path": data_path,
        "data_dvc_md5": dvc_output_hash(repo_root, data_path) or "untracked",
    }


def log_data_inputs(repo_root: Path, paths: list[str] | tuple[str, ...], context: str) -> list[str]:
    """Log each DVC output in ``paths`` (e.g. ``data/features``) as an input
    dataset of the active run, named by its path, its digest the md5 DVC
    recorded for it in dvc.lock: the runs table's Dataset column then says
    which data version each run read. A path dvc.lock does not list (a run
    outside DVC) is not logged, since no digest would name its version; the
    run's ``data_dvc_md5`` tag says "untracked" then. Returns the paths logged."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    root = workspace_root(repo_root)
    logged = []
    for path in paths:
        digest = dvc_output_hash(repo_root, path)
        if digest is None:
            continue
        with warnings.catch_warnings():  # MLflow registers its local source class twice
            warnings.filterwarnings("ignore", message="The specified dataset source can be")
            source = resolve_dataset_source((root / path).as_uri())
        mlflow.log_input(MetaDataset(source, name=path, digest=digest), context=context)
        logged.append(path)
    return logged


# One parent run per pipeline execution, the stage runs nested under it.
PIPELINE_KEY_ENV = "TRADINGRL_PIPELINE_KEY"  # set by the training flow for its stages
PIPELINE_KEY_TAG = "tradingrl.pipeline_key"
PIPELINE_TAG = "tradingrl.pipeline"           # "dvc" or "flow": what ran the stages
STAGE_TAG = "tradingrl.stage"
PARENT_TAG = "mlflow.parentRunId"             # what the UI nests runs by
DATA_VERSION_PATH = "data/raw"                # the market data a pipeline ran on


def data_version(repo_root: Path) -> str:
    """The first 8 characters of the DVC hash of the ingested data (dvc.lock's
    ``data/raw``), the version run names carry; "untracked" outside DVC."""
    digest = dvc_output_hash(repo_root, DATA_VERSION_PATH)
    return "untracked" if digest is None else digest[:8]


def _dvc_ancestor() -> Any | None:
    """The ``dvc`` process that runs this stage (its parent, or the shell's
    parent), or None when no dvc process started it (a stage run by hand)."""
    import psutil

    for ancestor in psutil.Process().parents()[:3]:
        try:
            command = ancestor.cmdline()
        except psutil.Error:
            continue
        names = [Path(part).name for part in command]
        if "dvc" in names or ("-m" in command and "dvc" in command):
            return ancestor
    return None


def pipeline_key() -> tuple[str, str] | None:
    """``(key, kind)`` of the pipeline execution this process belongs to: the
    training flow's :data:`PIPELINE_KEY_ENV` ("flow"), else the dvc process
    running it, by host, pid and start time ("dvc": one ``dvc repro`` or
    ``dvc exp run``); None for a stage run outside both."""
    import socket

    from_env = os.environ.get(PIPELINE_KEY_ENV)
    if from_env:
        return from_env, "flow"
    dvc = _dvc_ancestor()
    if dvc is None:
        return None
    return f"dvc:{socket.gethostname()}:{dvc.pid}:{dvc.create_time():.3f}", "dvc"


def pipeline_parent(repo_root: Path, experiment_id: str) -> str | None:
    """The run id of this pipeline execution's parent run in ``experiment_id``
    (created by its first stage with a run, named after the data version), or
    None outside a pipeline (:func:`pipeline_key`)."""
    import mlflow

    found = pipeline_key()
    if found is None:
        return None
    key, kind = found
    client = mlflow.MlflowClient()
    runs = client.search_runs([experiment_id], f"tags.`{PIPELINE_KEY_TAG}` = '{key}'",
                              max_results=1)
    if runs:
        return runs[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"pipeline @ data {data_version(repo_root)}",
                            tags={PIPELINE_KEY_TAG: key, PIPELINE_TAG: kind,
                                  "git_commit": git_commit(repo_root) or "unknown",
                                  "data_version": data_version(repo_root)})
    return run.info.run_id


@contextmanager
def stage_run(repo_root: Path, experiment_id: str, stage: str,
              tags: dict[str, str]) -> Iterator[Any]:
    """``mlflow.start_run`` for stage ``stage``: named ``<stage> @ data
    <version>``, tagged with the stage, nested under the pipeline's parent run
    (:func:`pipeline_parent`) when there is one. The parent's status and end
    time follow its latest stage (FINISHED, or FAILED when the stage raised),
    so it never stays "running" after the pipeline stopped."""
    import mlflow

    parent = pipeline_parent(repo_root, experiment_id)
    version = data_version(repo_root)
    run_tags = {**tags, STAGE_TAG: stage, "data_version": version,
                **({} if parent is None else {PARENT_TAG: parent})}
    status = "FAILED"
    try:
        with mlflow.start_run(run_name=f"{stage} @ data {version}", tags=run_tags) as run:
            yield run
        status = "FINISHED"
    finally:
        if parent is not None:
            mlflow.MlflowClient().set_terminated(parent, status)


def log_to_parent(values: dict[str, Any], prefix: str) -> str | None:
    """The active stage run's headline ``values`` on its pipeline's parent run:
    numbers as metrics, anything else as tags, each name ``<prefix>.<key>``
    (``evaluate.sharpe``, ``promote.decision``), so the runs table compares
    two pipeline executions row by row. Returns the parent's id (None without
    one: nothing logged)."""
    import mlflow

    run = mlflow.active_run()
    parent = None if run is None else run.data.tags.get(PARENT_TAG)
    if parent is None:
        return None
    client = mlflow.MlflowClient()
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            client.log_metric(parent, f"{prefix}.{key}", float(value))
        else:
            client.set_tag(parent, f"{prefix}.{key}", str(value))
    return parent


def pinned_requirements(distributions: tuple[str, ...] | list[str]) -> list[str]:
    """pip requirements pinning the installed version of each distribution,
    for ``mlflow.<flavor>.log_model(pip_requirements=...)``. Given, MLflow
    does not infer them: inferring loads the model in a subprocess (~20 s on
    2 cores per logged model) and still missed stable-baselines3 for the
    agent. The models' own classes come from the tradingrl package, which a
    loader needs as well (it is not on PyPI)."""
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in distributions]
