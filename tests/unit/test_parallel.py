"""tradingrl.parallel: how many workers a runner gives, and the ``processes``
runner returns what the pieces return, in order, and raises a piece's own error."""

from __future__ import annotations

import os

import pytest

from tradingrl.orchestration import TaskRunnerSettings
from tradingrl.parallel import (
    DEFAULT_RUNNER,
    RUNNER_ENV,
    map_parallel,
    runner_from_env,
    worker_count,
)


def draw(seed: int, n: int) -> list[float]:
    """A piece that uses the process's global generators, as training does."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    return [float(x) for x in torch.rand(n)] + [float(np.random.rand()), float(os.getpid())]


def fail(seed: int) -> int:
    if seed == 1:
        raise ValueError(f"piece {seed} failed")
    return seed


def test_worker_count_follows_the_runner() -> None:
    cores = os.cpu_count() or 1
    assert worker_count(None, 5) == 1
    assert worker_count(TaskRunnerSettings(kind="threads", max_workers=4), 5) == 1
    assert worker_count(TaskRunnerSettings(kind="processes", max_workers=3), 5) == 3
    assert worker_count(TaskRunnerSettings(kind="processes", max_workers=3), 2) == 2
    assert worker_count(TaskRunnerSettings(kind="processes"), 1) == 1
    assert worker_count(TaskRunnerSettings(kind="processes"), 64) == min(cores, 64)
    assert worker_count(TaskRunnerSettings(kind="dask", max_workers=2), 5) == 2


def test_without_the_variable_the_stage_runs_on_worker_processes(monkeypatch) -> None:
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    assert runner_from_env() == TaskRunnerSettings(**DEFAULT_RUNNER)
    assert runner_from_env().kind == "processes"
    monkeypatch.setenv(RUNNER_ENV, '{"kind": "threads"}')
    assert runner_from_env() == TaskRunnerSettings(kind="threads")
    monkeypatch.setenv(RUNNER_ENV, "{not json")
    with pytest.raises(ValueError, match=f"^{RUNNER_ENV} must be a JSON object"):
        runner_from_env()


def test_processes_return_the_serial_results_in_order() -> None:
    calls = [{"seed": s, "n": 3} for s in (5, 1, 4, 2)]
    serial = map_parallel(draw, calls, settings=None)
    parallel = map_parallel(draw, calls,
                            settings=TaskRunnerSettings(kind="processes", max_workers=2))
    assert [r[:-1] for r in parallel] == [r[:-1] for r in serial]  # bit for bit, in order
    assert {r[-1] for r in serial} == {float(os.getpid())}
    assert float(os.getpid()) not in {r[-1] for r in parallel}  # other processes ran them
    assert serial[0] != serial[1]


def test_a_failing_piece_raises_its_own_error() -> None:
    with pytest.raises(ValueError, match="^piece 1 failed$"):
        map_parallel(fail, [{"seed": 0}, {"seed": 1}],
                     settings=TaskRunnerSettings(kind="processes", max_workers=2))
