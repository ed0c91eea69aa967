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
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any


def mlflow_logger(run_id: str, *, prefix: str = "", tracking_uri: str | None = None) -> Any:
    """An SB3 ``Logger`` that logs numeric records to MLflow run ``run_id``."""
    import mlflow
    from mlflow.entities import Metric
    from stable_baselines3.common.logger import KVWriter, Logger

    client = mlflow.MlflowClient(tracking_uri)

    class MlflowWriter(KVWriter):
        def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
                  step: int = 0) -> None:
            import time

            now = int(time.time() * 1000)
            metrics = [
                Metric(key=f"{prefix}{key}", value=float(value), timestamp=now, step=int(step))
                for key, value in sorted(key_values.items())
                if "mlflow" not in (key_excluded.get(key) or ())
                and isinstance(value, Real) and not isinstance(value, bool)
                and math.isfinite(float(value))
            ]
            if metrics:
                client.log_batch(run_id, metrics=metrics)

        def close(self) -> None:
            pass

    return Logger(folder=None, output_formats=[MlflowWriter()])


TRADE_QUANTILES: tuple[int, ...] = (5, 25, 50, 75, 95)


def trading_stats_callback(every: int = 1000) -> Any:
    """An SB3 callback recording the module docstring's ``trade/`` values
    every ``every`` calls (steps of all envs together) from the training
    envs' infos (``traded_shares``, ``fill_price``, ``cost``, ``equity``,
    ``position``) and actions."""
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
                self._turnover.append(abs(float(info["traded_shares"]) * float(
                    info["fill_price"])) / float(equity))
                self._cost.append(float(info["cost"]) / float(equity))
                self._position.append(abs(float(info["position"])))
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
