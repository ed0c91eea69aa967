"""Run independent pieces of a stage (walk-forward folds, Optuna workers) in
parallel on the task runner ``pipelines.yaml`` chooses.

The orchestration layer decides how a stage executes, never what it computes:
``flows/training.py`` reads ``pipelines.yaml``'s ``task_runner`` and hands it
to the DVC stages it runs in the environment variable :data:`RUNNER_ENV`
(JSON of :class:`tradingrl.orchestration.TaskRunnerSettings`'s fields). A
stage calls :func:`map_parallel`; without the variable (plain ``dvc repro``)
the pieces run one after another in the stage's process.

Only process-isolated runners parallelise here: ``dask`` (prefect-dask, a
local cluster of single-threaded worker processes, or a scheduler address).
``threads`` runs the pieces serially: the pieces train torch models and SB3
agents, which draw from per-process global random generators, so two of
them in threads of one process would interleave their draws and give
results that depend on timing. Each piece must be a pure function of its
arguments (module-level, picklable), so the parallel results equal the
serial ones (tests/integration/test_training_flow.py checks the evaluation's
metrics).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RUNNER_ENV = "TRADINGRL_TASK_RUNNER"


def runner_from_env() -> Any | None:
    """The :class:`~tradingrl.orchestration.TaskRunnerSettings` in
    :data:`RUNNER_ENV`, or None when it is unset or empty."""
    raw = os.environ.get(RUNNER_ENV, "").strip()
    if not raw:
        return None
    from tradingrl.orchestration import TaskRunnerSettings

    try:
        fields = json.loads(raw)
        return TaskRunnerSettings(**fields)
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{RUNNER_ENV} must be a JSON object of task_runner fields (kind, "
                         f"max_workers, dask_address), got {raw!r}: {error}") from None


def runner_to_env(settings: Any) -> str:
    """The value of :data:`RUNNER_ENV` for ``settings``."""
    return json.dumps({"kind": settings.kind, "max_workers": settings.max_workers,
                       "dask_address": settings.dask_address})


def _call(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    return fn(**kwargs)


def map_parallel(fn: Callable[..., Any], calls: Sequence[Mapping[str, Any]], *,
                 settings: Any | None = None, name: str = "piece") -> list[Any]:
    """``[fn(**kwargs) for kwargs in calls]``, in that order; through a Prefect
    flow on a Dask task runner when ``settings.kind`` is ``dask``, serially
    otherwise (see the module docstring). A failing piece raises its own
    exception."""
    if settings is None or settings.kind != "dask":
        return [fn(**kwargs) for kwargs in calls]
    from prefect import flow, task

    from tradingrl.orchestration import task_runner_from_config

    piece = task(_call, name=name)
    runner = task_runner_from_config(settings)

    @flow(name=f"{name}s", task_runner=runner, log_prints=True)
    def run_all() -> list[Any]:
        futures = [piece.submit(fn, kwargs) for kwargs in calls]
        return [future.result() for future in futures]

    return run_all()
