"""SB3's training log (episode rewards, losses, entropy...) written to MLflow.

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
