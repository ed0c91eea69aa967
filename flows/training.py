"""Prefect flow ``training_flow``: the DVC pipeline, one task per stage.

The stages and their order come from the repository's ``dvc.yaml`` through
DVC's own graph (:func:`pipeline_stages`), never from a second list here.
Each task runs ONE stage with ``dvc repro --single-item <stage>``, so DVC's
lock file decides whether it reruns (a stage whose dependencies and params
are unchanged is skipped, and the task says so). Tasks run one after another
in DAG order; a task retries with backoff (a transient failure: a locked
file, a killed worker) and a stage that still fails fails the flow with the
stage's own error line. At the end a markdown artifact holds the evaluation's
headline metrics, the promotion decision with its reasons, and the MLflow
runs.

    python -m flows.training            # run once, locally (ephemeral Prefect API)
    tradingrl serve                     # the scheduled deployment (pipelines.yaml)

A killed run (say in ``train_model`` or ``train_agent``) leaves those stages'
checkpoints in their persistent folders; running the flow again skips the
stages that finished (DVC's lock) and resumes the killed one from its
checkpoints.

``pipelines.yaml``'s ``task_runner`` reaches the stages in the environment
(:mod:`tradingrl.parallel`): with ``dask``, ``evaluate`` runs its folds and
``train_model`` its Optuna workers on the cluster, with the same results as
a serial run; the stages themselves still run one after another.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.tasks import exponential_backoff

REPO_ROOT = Path(__file__).resolve().parent.parent

# DVC's words for a stage it ran and one it skipped (DVC 3).
_RAN = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)
_SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping", re.MULTILINE)
# A Python exception line ("ValueError: ...") or a one-line "error: ..." message.
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)|error|ERROR): .+")


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero; the message is the stage's own error line."""


@dataclass(frozen=True)
class StageResult:
    stage: str
    status: str  # "ran" | "skipped"
    seconds: float


def pipeline_stages(repo_root: Path = REPO_ROOT) -> list[str]:
    """The stages of ``repo_root/dvc.yaml`` in an order DVC can run them: a
    topological order of DVC's stage graph, ties broken by the order of
    dvc.yaml (so the list reads like the file)."""
    import networkx as nx
    import yaml
    from dvc.repo import Repo

    declared = list(yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"])
    position = {name: i for i, name in enumerate(declared)}
    with Repo(str(repo_root)) as repo:
        graph = repo.index.graph  # edges run from a stage to the stages it depends on
        dvc_yaml = (repo_root / "dvc.yaml").resolve()
        names = {stage: stage.name for stage in graph.nodes}
        unknown = sorted(stage.addressing for stage in graph.nodes
                         if Path(stage.path).resolve() != dvc_yaml or stage.name not in position)
        if unknown:
            raise ValueError(f"DVC stages outside {repo_root / 'dvc.yaml'}: {unknown} "
                             "(the flow runs the pipeline of that file only)")
        order = nx.lexicographical_topological_sort(graph.reverse(copy=False),
                                                    key=lambda stage: position[names[stage]])
        return [names[stage] for stage in order]


def _stage_error(name: str, output: str) -> str:
    """The stage's own error line from ``dvc repro`` output: the last
    exception or error line before DVC's summary, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    own = [line for line in lines
           if _ERROR_LINE.match(line) and not line.startswith("ERROR: failed to reproduce")]
    if own:
        return own[-1]
    return lines[-1] if lines else f"dvc repro of {name} printed nothing"


def _dvc_env(task_runner: str | None, pipeline_key: str | None = None) -> dict[str, str]:
    """The environment for dvc: this interpreter's bin folder first on PATH,
    so a stage's ``python -m tasks.X`` runs in the same virtualenv; the task
    runner for the stages' parallel parts (:mod:`tradingrl.parallel`); the
    flow run's pipeline key, so every stage's MLflow run nests under one
    parent run (:func:`tradingrl.tracking.stage_run`); and this flow's
    Prefect API, so a stage that runs a Prefect flow of its own (folds on
    Dask) reports to the same server instead of starting one."""
    from prefect.settings import PREFECT_API_URL

    from tradingrl.parallel import RUNNER_ENV
    from tradingrl.tracking import PIPELINE_KEY_ENV

    env = dict(os.environ)
    env.pop(PIPELINE_KEY_ENV, None)
    if pipeline_key is not None:
        env[PIPELINE_KEY_ENV] = pipeline_key
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop(RUNNER_ENV, None)
    if task_runner is not None:
        env[RUNNER_ENV] = task_runner
    api = PREFECT_API_URL.value()
    if api:
        env["PREFECT_API_URL"] = api
    return env


def task_runner_setting(repo_root: Path) -> str | None:
    """``pipelines.yaml``'s task runner (validated) as the stages read it, or
    None without a pipelines.yaml (the stages then run their parts serially)."""
    path = repo_root / "pipelines.yaml"
    if not path.is_file():
        return None
    from tradingrl.orchestration import load_pipelines
    from tradingrl.parallel import runner_to_env

    return runner_to_env(load_pipelines(path, repo_root=repo_root).task_runner)


@task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10),
      task_run_name="{stage}")
def run_stage(stage: str, repo_root: str, force: bool = False,
              task_runner: str | None = None, pipeline_key: str | None = None) -> StageResult:
    """``dvc repro --single-item <stage>`` in ``repo_root``: DVC reruns the
    stage only if its dependencies, params or outputs changed (``force``:
    always). ``pipeline_key``: the MLflow parent run's key (:func:`_dvc_env`).
    Raises :class:`StageFailed` with the stage's error line."""
    logger = get_run_logger()
    command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
    if force:
        command.append("--force")
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=repo_root, env=_dvc_env(task_runner, pipeline_key),
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        logger.error("stage %s failed (exit %d) after %.1f s; last lines:\n%s",
                     stage, proc.returncode, seconds, tail)
        raise StageFailed(f"stage {stage} failed: {_stage_error(stage, output)}")
    if _SKIPPED.search(output) and not _RAN.search(output):
        status = "skipped"
    elif _RAN.search(output):
        status = "ran"
    else:  # neither line: a DVC version that words it differently
        raise StageFailed(f"stage {stage}: could not tell from dvc's output whether it ran: "
                          f"{output.strip()[-300:]!r}")
    logger.info("stage %s %s in %.1f s", stage, status, seconds)
    if status == "ran":
        logger.info("%s printed:\n%s", stage, "\n".join(proc.stdout.splitlines()[-20:]))
    return StageResult(stage, status, seconds)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def _run_link(repo_root: Path, run_id: str | None) -> str:
    """A link to an MLflow run when the tracking URI is a server, else the id
    and how to open it."""
    if not run_id:
        return "n/a"
    from mlflow.tracking import MlflowClient

    from tradingrl.tracking import tracking_uri

    uri = tracking_uri(repo_root)
    if uri.startswith(("http://", "https://")):
        experiment = MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
        return f"[{run_id}]({uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id})"
    return f"`{run_id}` (open with `tradingrl ui`)"


def summary_markdown(repo_root: Path, results: list[StageResult],
                     parent_run_id: str | None = None) -> str:
    """The end-of-flow report: stages, headline metrics, promotion decision,
    and the MLflow parent run the stages' runs are nested under."""
    lines = ["# Training flow", "", "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {r.stage} | {r.status} | {r.seconds:.1f} |" for r in results]
    if parent_run_id is not None:
        lines += ["", f"MLflow parent run of these stages: {_run_link(repo_root, parent_run_id)}."]
    metrics = _read_json(repo_root / "reports" / "metrics.json")
    if metrics is not None:
        lines += ["", "## Out-of-sample, after costs", "",
                  "| strategy | Sharpe | total return | max drawdown |", "|---|---|---|---|"]
        rows = [("policy", metrics["policy"]["overall"])]
        rows += [(name, body["overall"]) for name, body in metrics["baselines"].items()]
        for name, overall in rows:
            lines.append(f"| {name} | {_fmt(overall.get('sharpe'))} | "
                         f"{_fmt(overall.get('total_return'))} | "
                         f"{_fmt(overall.get('max_drawdown'))} |")
        dsr = metrics["policy"].get("dsr", {})
        lines += ["", (f"Deflated Sharpe ratio {_fmt(dsr.get('dsr'))} over "
                      f"{dsr.get('n_trials', 'n/a')} trials; evaluation run "
                      f"{_run_link(repo_root, metrics.get('mlflow_run_id'))}.")]
    promotion = _read_json(repo_root / "reports" / "promotion.json")
    if promotion is not None:
        lines += ["", "## Promotion", "",
                  (f"**{promotion['decision']}**: {promotion['model']} version "
                  f"{promotion['version']} (champion now: {promotion.get('champion') or 'none'}); "
                  f"promotion run {_run_link(repo_root, promotion.get('mlflow_run_id'))}.")]
        lines += [f"- {reason}" for reason in promotion.get("reasons", [])]
    return "\n".join(lines) + "\n"


@flow(name="training", log_prints=True)
def training_flow(repo_root: str = str(REPO_ROOT), force: bool = False,
                  retries: int = 2) -> list[dict[str, Any]]:
    """Run every stage of dvc.yaml in DAG order, each through DVC (see the
    module docstring). ``force``: rerun every stage; ``retries``: attempts
    after a stage's first failure. Returns one record per stage."""
    from prefect.runtime import flow_run

    root = Path(repo_root).resolve()
    stages = pipeline_stages(root)
    task_runner = task_runner_setting(root)
    key = f"flow:{flow_run.get_id()}"
    get_run_logger().info("pipeline %s: %s (task runner %s)", root, " -> ".join(stages),
                          task_runner or "none: serial")
    runner = run_stage.with_options(retries=retries)
    progress = create_progress_artifact(0.0, key="training-progress",
                                        description="Stages finished, percent")
    results = []
    for stage in stages:
        results.append(runner(stage, str(root), force=force, task_runner=task_runner,
                              pipeline_key=key))
        update_progress_artifact(progress, 100.0 * len(results) / len(stages),
                                 description=f"{len(results)} of {len(stages)} stages: {stage} "
                                             f"{results[-1].status}")
    parent = parent_run(root, key)
    create_markdown_artifact(key="training-summary",
                             markdown=summary_markdown(root, results, parent),
                             description="Stages, out-of-sample metrics, promotion decision")
    create_table_artifact(key="training-stages", table=[asdict(r) for r in results],
                          description="Each stage: ran or skipped (DVC's lock), seconds")
    promotion = _read_json(root / "reports" / "promotion.json")
    if promotion is not None:
        create_table_artifact(key="gate-checks", table=[
            {"check": c["name"], "status": c["status"], "value": c["value"],
             "threshold": c["threshold"]} for c in promotion["checks"]],
            description=f"The promotion gate on {promotion['model']} v{promotion['version']}: "
                        f"{promotion['decision']}")
    return [asdict(r) for r in results]


def parent_run(repo_root: Path, key: str) -> str | None:
    """The MLflow parent run of the pipeline execution ``key`` (the stages'
    runs are nested under it), or None when no stage made an MLflow run (every
    stage was skipped)."""
    from mlflow.tracking import MlflowClient

    from tradingrl.tracking import PIPELINE_KEY_TAG, tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri(repo_root))
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`{PIPELINE_KEY_TAG}` = '{key}'",
                              max_results=1) if experiments else []
    return runs[0].info.run_id if runs else None


if __name__ == "__main__":
    training_flow()
