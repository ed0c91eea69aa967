"""SB3's training log (episode rewards, losses, entropy...) written to MLflow.

:func:`trading_stats_callback` adds what a trading agent's learning curve
needs besides its reward: per window of ``every`` training steps the
turnover and costs per step (fractions of equity), the mean absolute
position, and the distribution of the raw actions (mean, std, the 5th, 25th,
50th, 75th and 95th percentiles: an action histogram over time), recorded
under ``trade/`` in the model's logger, so they reach MLflow with the rest.

:func:`mlflow_logger` builds an SB3 ``Logger`` whose only output is an MLflow
run: every value SB3 records (``rollout/ep_rew_mean``, ``train/loss``,
``train/entropy_loss``...) becomes a metric of that run at the current step,
under ``prefix`` (e.g. ``seed0/``) so several seeds can share one run. It
writes through an explicit run id, so no MLflow run needs to be active while
SB3 trains.

Agents trained in worker processes (:mod:`tradingrl.parallel`) do not write
to the tracking store themselves (two processes writing one SQLite file at
once would lock each other out): :func:`file_logger` appends the same records
to a JSON-lines file in the seed's folder, and :func:`log_curve_file` posts
that file to the MLflow run afterwards, step by step, the records of a
resumed run's repeated steps counted once (the later wins).
"""

from __future__ import annotations

import json
import math
from numbers import Real
from pathlib import Path
from typing import Any


def _numeric(key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
             output: str) -> dict[str, float]:
    """The finite numeric records SB3 did not exclude from ``output``."""
    return {key: float(value) for key, value in sorted(key_values.items())
            if output not in (key_excluded.get(key) or ())
            and isinstance(value, Real) and not isinstance(value, bool)
            and math.isfinite(float(value))}


def mlflow_logger(run_id: str, *, prefix: str = "", tracking_uri: str | None = None) -> Any:
    """An SB3 ``Logger`` that logs numeric records to MLflow run ``run_id``."""
    import mlflow
    from stable_baselines3.common.logger import KVWriter, Logger

    client = mlflow.MlflowClient(tracking_uri)

    class MlflowWriter(KVWriter):
        def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
                  step: int = 0) -> None:
            _log_batch(client, run_id, prefix,
                       [(int(step), _numeric(key_values, key_excluded, "mlflow"))])

        def close(self) -> None:
            pass

    return Logger(folder=None, output_formats=[MlflowWriter()])


def file_logger(path: str | Path) -> Any:
    """An SB3 ``Logger`` appending each dump's numeric records to the JSON
    lines file ``path`` (``{"step": ..., "values": {...}}``), for
    :func:`log_curve_file`. The file is opened per write, so the logger
    pickles to a worker process."""
    from stable_baselines3.common.logger import KVWriter, Logger

    target = Path(path)

    class JsonLinesWriter(KVWriter):
        def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
                  step: int = 0) -> None:
            values = _numeric(key_values, key_excluded, "json")
            if values:
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"step": int(step), "values": values}) + "\n")

        def close(self) -> None:
            pass

    return Logger(folder=None, output_formats=[JsonLinesWriter()])


def log_curve_file(path: str | Path, run_id: str, *, prefix: str = "",
                   tracking_uri: str | None = None) -> int:
    """Post :func:`file_logger`'s file to MLflow run ``run_id`` under
    ``prefix``; a step written twice (a resumed run repeats the steps after
    its checkpoint) keeps its last record. Returns the number of steps
    posted (0 for a missing file)."""
    import mlflow

    steps = read_curve_file(path)
    _log_batch(mlflow.MlflowClient(tracking_uri), run_id, prefix, steps)
    return len(steps)


def read_curve_file(path: str | Path) -> list[tuple[int, dict[str, float]]]:
    """:func:`file_logger`'s file as ``(step, values)`` pairs in step order, a
    step written twice (a resumed run) merged with the later record winning;
    empty for a missing file."""
    source = Path(path)
    if not source.is_file():
        return []
    by_step: dict[int, dict[str, float]] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            by_step.setdefault(int(record["step"]), {}).update(record["values"])
    return sorted(by_step.items())


# The learning curves ``dvc plots show`` draws (dvc.yaml's top-level plots):
# file name -> the SB3 / trading_stats_callback key it holds.
CURVE_PLOTS = {"validation_reward.csv": "eval/mean_reward",
               "training_reward.csv": "rollout/ep_rew_mean",
               "turnover_per_step.csv": "trade/turnover_per_step"}
# Across seeds, not one column per seed: dvc.yaml must name a plot's columns,
# and the seed list is a parameter (each seed's own curve is in MLflow).
CURVE_COLUMNS = ("seeds_mean", "seeds_min", "seeds_max")


def write_curve_plots(files_by_seed: dict[int, str | Path], directory: str | Path) -> list[Path]:
    """For ``dvc plots``: one CSV per :data:`CURVE_PLOTS` key, a row per env
    step at which any seed recorded it, with the mean, minimum and maximum
    over the seeds that recorded it there (a seed that stopped early counts
    only up to its stop). Returns the files written."""
    import pandas as pd

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    read = {seed: read_curve_file(path) for seed, path in sorted(files_by_seed.items())}
    written = []
    for name, key in CURVE_PLOTS.items():
        per_seed = pd.DataFrame({seed: pd.Series({step: values[key] for step, values in steps
                                                  if key in values}, dtype=float)
                                 for seed, steps in read.items()}).sort_index()
        frame = pd.DataFrame({"seeds_mean": per_seed.mean(axis=1),
                              "seeds_min": per_seed.min(axis=1),
                              "seeds_max": per_seed.max(axis=1)}, columns=list(CURVE_COLUMNS))
        frame = frame.rename_axis("step").reset_index()
        frame.to_csv(out / name, index=False, float_format="%.6g")
        written.append(out / name)
    return written


def _log_batch(client: Any, run_id: str, prefix: str,
               steps: list[tuple[int, dict[str, float]]]) -> None:
    """Log ``(step, values)`` pairs as metrics, at most 1,000 per call (MLflow's limit)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key=f"{prefix}{key}", value=value, timestamp=now, step=step)
               for step, values in steps for key, value in values.items()]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])


TRADE_QUANTILES: tuple[int, ...] = (5, 25, 50, 75, 95)


def trading_stats_callback(every: int = 1000) -> Any:
    """An SB3 callback recording the module docstring's ``trade/`` values
    every ``every`` calls (steps of all envs together) from the training
    envs' infos (``traded_shares``, ``fill_price``, ``cost``, ``equity``,
    ``position``, or a portfolio env's ``weights``: turnover and exposure are
    summed over its symbols) and actions."""
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")

    class TradingStats(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self._turnover: list[float] = []
            self._cost: list[float] = []
            self._position: list[float] = []
            self._actions: list[np.ndarray] = []

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                equity = info.get("equity")
                if not equity or "traded_shares" not in info:
                    continue
                # Single-asset infos hold numbers, portfolio infos arrays
                # per symbol (and weights, not a position): sums over symbols.
                traded = np.abs(np.asarray(info["traded_shares"], dtype=np.float64))
                self._turnover.append(float(np.sum(traded * info["fill_price"])) / float(equity))
                self._cost.append(float(info["cost"]) / float(equity))
                held = info["position"] if "position" in info else info["weights"]
                self._position.append(float(np.sum(np.abs(held))))
            actions = self.locals.get("actions")
            if actions is not None:
                self._actions.append(np.asarray(actions, dtype=np.float64).reshape(-1))
            if self.n_calls % every == 0 and self._turnover:
                self._record()
            return True

        def _record(self) -> None:
            record = self.logger.record
            record("trade/turnover_per_step", float(np.mean(self._turnover)))
            record("trade/cost_per_step", float(np.mean(self._cost)))
            record("trade/mean_abs_position", float(np.mean(self._position)))
            if self._actions:
                actions = np.concatenate(self._actions)
                record("trade/action_mean", float(actions.mean()))
                record("trade/action_std", float(actions.std()))
                for q, v in zip(TRADE_QUANTILES, np.percentile(actions, TRADE_QUANTILES),
                                strict=True):
                    record(f"trade/action_p{q:02d}", float(v))
            self._turnover, self._cost, self._position, self._actions = [], [], [], []

    return TradingStats()
