"""Run independent pieces of a stage (walk-forward folds, agent seeds, Optuna
workers) in parallel processes.

The orchestration layer decides how a stage executes, never what it computes:
``flows/training.py`` reads ``pipelines.yaml``'s ``task_runner`` and hands it
to the DVC stages it runs in the environment variable :data:`RUNNER_ENV`
(JSON of :class:`tradingrl.orchestration.TaskRunnerSettings`'s fields). A
stage calls :func:`map_parallel`. Without the variable (plain ``dvc repro``)
the runner is :data:`DEFAULT_RUNNER`: ``processes``, one worker process per
CPU core (at most one per piece), so a 2-core machine trains two folds at once.

Only process-isolated runners parallelise: ``processes`` (a local pool of
spawned worker processes, the standard library's ``ProcessPoolExecutor``)
and ``dask`` (prefect-dask, a local cluster of single-threaded worker
processes, or a scheduler address). ``threads`` runs the pieces serially:
the pieces train torch models and SB3 agents, which draw from per-process
global random generators, so two of them in threads of one process would
interleave their draws and give results that depend on timing. Each piece
must be a pure function of its arguments (sent with cloudpickle) that sets
its own torch thread count, so the parallel results equal the serial ones
to the last digit (tests/unit/test_parallel.py; tests/integration/test_training_flow.py
checks the evaluation's metrics).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RUNNER_ENV = "TRADINGRL_TASK_RUNNER"
# The runner of a stage run without RUNNER_ENV (kind, max_workers: None = one per core).
DEFAULT_RUNNER = {"kind": "processes", "max_workers": None, "dask_address": None}
# Seconds a stage waits for the ephemeral Prefect API server it starts (Prefect's default: 20).
EPHEMERAL_STARTUP_TIMEOUT_S = 120
EPHEMERAL_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def runner_from_env() -> Any:
    """The :class:`~tradingrl.orchestration.TaskRunnerSettings` in
    :data:`RUNNER_ENV`, or :data:`DEFAULT_RUNNER`'s when it is unset or empty."""
    from tradingrl.orchestration import TaskRunnerSettings

    raw = os.environ.get(RUNNER_ENV, "").strip()
    if not raw:
        return TaskRunnerSettings(**DEFAULT_RUNNER)

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


def _call_pickled(payload: bytes) -> Any:
    import cloudpickle

    fn, kwargs = cloudpickle.loads(payload)
    return fn(**kwargs)


def worker_count(settings: Any | None, n_pieces: int) -> int:
    """How many pieces ``settings`` runs at once: 1 for none or ``threads``;
    ``max_workers`` (None: the CPU cores) for ``processes`` and ``dask``, at
    most ``n_pieces``."""
    if settings is None or settings.kind not in ("processes", "dask") or n_pieces < 2:
        return 1
    wanted = settings.max_workers or os.cpu_count() or 1
    return max(1, min(int(wanted), n_pieces))


def map_parallel(fn: Callable[..., Any], calls: Sequence[Mapping[str, Any]], *,
                 settings: Any | None = None, name: str = "piece") -> list[Any]:
    """``[fn(**kwargs) for kwargs in calls]``, in that order: in a pool of
    spawned processes for ``processes``, through a Prefect flow on a Dask task
    runner for ``dask``, serially otherwise or when only one worker would run
    (:func:`worker_count`; see the module docstring). A failing piece raises
    its own exception."""
    workers = worker_count(settings, len(calls))
    if workers == 1:
        return [fn(**kwargs) for kwargs in calls]
    if settings.kind == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import cloudpickle

        # spawn, not fork: a forked child would inherit the parent's torch
        # threads and locks, and the random state of whatever ran before.
        # cloudpickle (as Dask uses): the env kwargs hold the risk layer's
        # hook, a closure that plain pickle refuses.
        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_call_pickled, cloudpickle.dumps((fn, kwargs)))
                       for kwargs in calls]
            return [future.result() for future in futures]
    from prefect import flow, task
    from prefect.settings import (
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    from tradingrl.orchestration import task_runner_from_config

    piece = task(_call, name=name)
    runner = task_runner_from_config(settings)

    @flow(name=f"{name}s", task_runner=runner, log_prints=True)
    def run_all() -> list[Any]:
        futures = [piece.submit(fn, kwargs) for kwargs in calls]
        return [future.result() for future in futures]

    # A stage run by the training flow without a Prefect server starts an
    # ephemeral one; Prefect waits 20 s for it, which a busy 2-core machine
    # can exceed (a test saw the stage fail so). A setting of the user's wins.
    wait = ({} if EPHEMERAL_TIMEOUT_ENV in os.environ
            else {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: EPHEMERAL_STARTUP_TIMEOUT_S})
    with temporary_settings(updates=wait):
        return run_all()
