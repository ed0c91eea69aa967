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
from pathlib import Path

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


def use_experiment(repo_root: Path, name: str) -> str:
    """Point mlflow at this checkout's store and experiment ``name`` (created
    with a local artifact root when missing); return the experiment id."""
    import mlflow

    uri = tracking_uri(repo_root)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_root(uri))
    else:
        experiment_id = experiment.experiment_id
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


def pinned_requirements(distributions: tuple[str, ...] | list[str]) -> list[str]:
    """pip requirements pinning the installed version of each distribution,
    for ``mlflow.<flavor>.log_model(pip_requirements=...)``. Given, MLflow
    does not infer them: inferring loads the model in a subprocess (~20 s on
    2 cores per logged model) and still missed stable-baselines3 for the
    agent. The models' own classes come from the tradingrl package, which a
    loader needs as well (it is not on PyPI)."""
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in distributions]
