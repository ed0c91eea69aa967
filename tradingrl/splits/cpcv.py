"""Combinatorial purged cross-validation (CPCV, Lopez de Prado 2018, ch. 12).

The distinct timestamps (over all rows, all symbols) are cut, in time order,
into ``n_groups`` contiguous groups of (nearly) equal size (sizes differ by at
most one timestamp; earlier groups take the extra ones). Each split tests
``n_test_groups`` of them: there are C(N, k) splits, in
``itertools.combinations(range(N), k)`` order, and each group is tested in
C(N-1, k-1) of them.

Training rows of a split are the rows that :func:`tradingrl.splits.purged.purged_split`
keeps for EVERY test group of the split: labelled rows outside every test
group, whose label interval [timestamp, t1] meets no test group (purge), and
not among the ``embargo_bars`` distinct timestamps after any test group
(embargo). Training rows may lie after a test group: CPCV is for comparing
models on many out-of-sample paths, not a walk-forward backtest.

Backtest paths: the k test groups of the C(N, k) splits give k C(N, k) group
forecasts, N per path, so phi = k/N C(N, k) = C(N-1, k-1) paths; path p takes
group g from the p-th split (in split order) that tests g. Each path covers
every group exactly once, in time order.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.splits.purged import purged_split


def _check_groups(n_groups: int, n_test_groups: int) -> tuple[int, int]:
    for name, value in (("n_groups", n_groups), ("n_test_groups", n_test_groups)):
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"{name} must be an integer, got {value}")
    if n_groups < 2 or not 1 <= n_test_groups < n_groups:
        raise ValueError(
            f"need n_groups >= 2 and 1 <= n_test_groups < n_groups, got "
            f"n_groups={n_groups}, n_test_groups={n_test_groups}"
        )
    return int(n_groups), int(n_test_groups)


def cpcv_test_groups(n_groups: int, n_test_groups: int) -> list[tuple[int, ...]]:
    """The test groups of each split, in split order (C(N, k) tuples)."""
    n, k = _check_groups(n_groups, n_test_groups)
    return list(combinations(range(n), k))


def _utc_ns(timestamps: Any) -> np.ndarray:
    ns = pd.DatetimeIndex(timestamps).asi8
    if (ns == np.iinfo(np.int64).min).any():
        raise ValueError("timestamps must not be NaT")
    return ns


def timestamp_groups(timestamps: Any, n_groups: int) -> np.ndarray:
    """Group index (int64, 0..n_groups-1) of each row: its timestamp's
    contiguous block among the sorted distinct timestamps (see the module
    docstring). Rows with the same timestamp share a group."""
    ns = _utc_ns(timestamps)
    distinct = np.unique(ns)
    if isinstance(n_groups, bool) or int(n_groups) != n_groups or n_groups < 2:
        raise ValueError(f"n_groups must be an integer >= 2, got {n_groups}")
    if distinct.size < n_groups:
        raise ValueError(f"{distinct.size} distinct timestamps cannot make {n_groups} groups")
    group_of_distinct = np.concatenate(
        [np.full(part.size, g, dtype=np.int64)
         for g, part in enumerate(np.array_split(distinct, int(n_groups)))]
    )
    return group_of_distinct[np.searchsorted(distinct, ns)]


def combinatorial_purged_splits(
    timestamps: Any,
    t1: Any,
    *,
    n_groups: int,
    n_test_groups: int,
    embargo_bars: int,
) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """CPCV splits as (train mask, test mask, info), one per split in
    :func:`cpcv_test_groups` order.

    timestamps: (rows,) bar times (all symbols; naive times are read as UTC).
    t1: (rows,) end of each row's label interval; NaT = unlabelled (never
        trained on).
    n_groups, n_test_groups: N and k.
    embargo_bars: distinct timestamps after each test group kept out of
        training.

    test: rows whose timestamp is in one of the split's test groups.
    train: see the module docstring. info: "split", "test_groups", per test
    group its "test_spans" [start, end] and "embargo_ends" (ISO UTC, None when
    nothing follows), "rows", "rows_train", "rows_test",
    "rows_test_labelled", "rows_purged_or_embargoed" (labelled rows outside
    the test groups not trained on).

    Each group's purge and embargo come from one
    :func:`tradingrl.splits.purged.purged_split` call (N calls in all).
    """
    splits_of_groups = cpcv_test_groups(n_groups, n_test_groups)
    if isinstance(embargo_bars, bool) or int(embargo_bars) != embargo_bars or embargo_bars < 0:
        raise ValueError(f"embargo_bars must be an integer >= 0, got {embargo_bars}")
    ns = _utc_ns(timestamps)
    groups = timestamp_groups(timestamps, n_groups)

    per_group: list[tuple[np.ndarray, np.ndarray, dict[str, Any]]] = []
    for g in range(int(n_groups)):
        in_group = ns[groups == g]
        start = pd.Timestamp(int(in_group.min()), tz="UTC")
        end = pd.Timestamp(int(in_group.max()), tz="UTC")
        per_group.append(purged_split(timestamps, t1, start, end, int(embargo_bars)))
    labelled = ~pd.isna(pd.DatetimeIndex(t1))

    out = []
    for s, test_groups in enumerate(splits_of_groups):
        train = np.logical_and.reduce([per_group[g][0] for g in test_groups])
        test = np.isin(groups, test_groups)
        info = {
            "split": s,
            "test_groups": list(test_groups),
            "test_spans": [[per_group[g][2]["test_start"], per_group[g][2]["test_end"]]
                           for g in test_groups],
            "embargo_ends": [per_group[g][2]["embargo_end"] for g in test_groups],
            "embargo_bars": int(embargo_bars),
            "rows": int(ns.size),
            "rows_train": int(train.sum()),
            "rows_test": int(test.sum()),
            "rows_test_labelled": int((test & labelled).sum()),
            "rows_purged_or_embargoed": int((labelled & ~test & ~train).sum()),
        }
        out.append((train, test, info))
    return out


def cpcv_paths(n_groups: int, n_test_groups: int) -> np.ndarray:
    """(C(N-1, k-1), N) int64: entry [p, g] is the index of the split whose
    forecast of group g belongs to path p (the p-th split testing g)."""
    n, k = _check_groups(n_groups, n_test_groups)
    splits = cpcv_test_groups(n, k)
    n_paths = math.comb(n - 1, k - 1)
    paths = np.empty((n_paths, n), dtype=np.int64)
    for g in range(n):
        testing_g = [s for s, test_groups in enumerate(splits) if g in test_groups]
        paths[:, g] = testing_g  # exactly n_paths of them
    return paths
