"""Sharpe ratios of combinatorial purged CV backtest paths.

The splits, groups and paths themselves are time arithmetic in
:mod:`tradingrl.splits.cpcv`; this module scores the returns a model earned
on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tradingrl.evaluation.sharpe import finite_1d, per_period_sharpe


def path_sharpes(
    split_returns: Sequence[Mapping[int, Any]],
    paths: Any,
    *,
    bars_per_year: float = 252,
    risk_free_per_bar: float = 0.0,
) -> dict[str, Any]:
    """Sharpe ratio of each CPCV backtest path and their spread.

    split_returns: per split (in split order), a mapping test group ->
        per-bar log returns of that split's model over the group's bars.
    paths: from :func:`cpcv_paths`.

    A path's returns are its groups' returns in group (time) order; switching
    models at a group boundary is taken as free. Sharpe ratios are of simple
    returns ``expm1(log r)``, ddof=1, annualised by sqrt(bars_per_year); NaN
    for a path with zero variance (then the spread is NaN too).

    Returns {"sharpe" (n_paths,), "sharpe_per_period" (n_paths,),
    "total_return" (n_paths,), "mean", "std" (ddof=1; NaN with one path),
    "min", "max" of the annualised Sharpe ratios, "n_paths", "n_bars"}.
    """
    grid = np.asarray(paths)
    if grid.ndim != 2 or grid.shape[0] < 1 or not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(f"paths must be a 2-d integer array (n_paths, n_groups), got {grid.shape}")
    if not (math.isfinite(bars_per_year) and bars_per_year > 0):
        raise ValueError(f"bars_per_year must be > 0, got {bars_per_year}")
    n_paths, n_groups = grid.shape
    if grid.min() < 0 or grid.max() >= len(split_returns):
        raise ValueError(f"paths refer to split {grid.max()}, only {len(split_returns)} given")
    lengths: dict[int, int] = {}
    series = []
    for p in range(n_paths):
        parts = []
        for g in range(n_groups):
            s = int(grid[p, g])
            if g not in split_returns[s]:
                raise ValueError(f"split {s} has no returns for group {g} (path {p})")
            part = finite_1d(split_returns[s][g], f"split {s} group {g} returns")
            if lengths.setdefault(g, part.size) != part.size:
                raise ValueError(
                    f"group {g} has {part.size} bars in split {s} but {lengths[g]} in another"
                )
            parts.append(part)
        series.append(np.concatenate(parts))
    per_period = np.array([per_period_sharpe(np.expm1(x), risk_free_per_bar) for x in series])
    sharpe = per_period * math.sqrt(bars_per_year)
    return {
        "sharpe": sharpe,
        "sharpe_per_period": per_period,
        "total_return": np.array([math.expm1(float(x.sum())) for x in series]),
        "mean": float(np.mean(sharpe)),
        "std": float(np.std(sharpe, ddof=1)) if n_paths > 1 else math.nan,
        "min": float(np.min(sharpe)),
        "max": float(np.max(sharpe)),
        "n_paths": int(n_paths),
        "n_bars": int(series[0].size),
    }
