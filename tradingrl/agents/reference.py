"""Reference policies with SB3's ``predict`` interface, to read an agent against.

Both return a single-asset target position (shape (1,), float32) whatever the
observation; they need no training and no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ConstantPolicy:
    """Always the same target position (0 = flat, 1 = fully long, -1 = short)."""

    def __init__(self, target: float) -> None:
        if not -1.0 <= target <= 1.0:
            raise ValueError(f"target must be in [-1, 1], got {target}")
        self.target = float(target)

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return np.array([self.target], dtype=np.float32), None


class RandomPolicy:
    """A uniform target in [-1, 1] each call, from its own seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return self.rng.uniform(-1.0, 1.0, size=1).astype(np.float32), None
