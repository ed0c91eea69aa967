"""Purged chronological splits of a feature table (numpy and pandas only).

Row masks select window *end* rows; a training row's label interval
[timestamp, t1] must not meet a test span (purge), and an embargo of distinct
timestamps follows each test span. numpy and pandas only: the model's data
module, the walk-forward plan and combinatorial purged CV all cut time here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_NAT = np.iinfo(np.int64).min


def utc_ns(values: Any) -> np.ndarray:
    """Datetimes -> int64 nanoseconds since the epoch (UTC); NaT -> int64 min.
    Naive datetimes are read as UTC."""
    return pd.DatetimeIndex(values).asi8


def _iso(ns: int | None) -> str | None:
    return None if ns is None else pd.Timestamp(int(ns), tz="UTC").isoformat()


def purged_split(
    timestamps: Any,
    t1: Any,
    test_start: Any,
    test_end: Any,
    embargo_bars: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train/test row masks for one test span [test_start, test_end] (inclusive).

    test: rows with test_start <= timestamp <= test_end (labelled or not).
    train: labelled rows (t1 known) outside the test span whose label interval
    [timestamp, t1] does not meet the test span (purge: a row before the span
    with t1 >= test_start is dropped) and that are not embargoed. Embargo: the
    first ``embargo_bars`` distinct timestamps after test_end (over all rows,
    all symbols) are excluded from training, since features and labels right
    after a test span are serially correlated with it. Unlabelled rows are
    never training rows. Returns (train, test, info); info holds the span, the
    embargo end (None when nothing is embargoed) and row counts.

    Masks select window *end* rows. A training window ending after the
    embargo still reads its earlier rows as inputs; with embargo_bars >=
    window - 1 (in bars of the symbol's own calendar) no training input
    overlaps the test span either.
    """
    if embargo_bars < 0:
        raise ValueError(f"embargo_bars must be >= 0, got {embargo_bars}")
    ts, ends = utc_ns(timestamps), utc_ns(t1)
    if ts.shape != ends.shape:
        raise ValueError(f"timestamps ({ts.size}) and t1 ({ends.size}) differ in length")
    if (ts == _NAT).any():
        raise ValueError("timestamps must not be NaT")
    start, stop = pd.Timestamp(test_start).value, pd.Timestamp(test_end).value
    if stop < start:
        raise ValueError(f"test_end {test_end} is before test_start {test_start}")
    labelled = ends != _NAT
    test = (ts >= start) & (ts <= stop)
    later = np.unique(ts[ts > stop])
    embargo_end = None
    embargoed = np.zeros_like(test)
    if embargo_bars and later.size:
        embargo_end = int(later[min(embargo_bars, later.size) - 1])
        embargoed = (ts > stop) & (ts <= embargo_end)
    purged = labelled & ~test & (ts <= stop) & (ends >= start)
    train = labelled & ~test & ~embargoed & ~purged
    info = {
        "test_start": _iso(start),
        "test_end": _iso(stop),
        "embargo_bars": int(embargo_bars),
        "embargo_end": _iso(embargo_end),
        "rows": int(ts.size),
        "rows_train": int(train.sum()),
        "rows_test": int(test.sum()),
        "rows_test_labelled": int((test & labelled).sum()),
        "rows_purged": int(purged.sum()),
        "rows_embargoed": int(embargoed.sum()),
        "rows_unlabelled_outside_test": int((~labelled & ~test & ~embargoed).sum()),
    }
    return train, test, info


def purged_chronological_split(
    timestamps: Any, t1: Any, *, val_fraction: float, embargo_bars: int = 0
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One cut in time across all symbols: validation = the last
    ``val_fraction`` of the distinct timestamps (rounded to a whole number,
    leaving >= 1 on each side, else ValueError), training =
    labelled rows before the cut with t1 < cut (see :func:`purged_split`; with
    the validation span at the end of the data there is nothing to embargo).
    Returns (train, val, info) with info["cut"] the first validation timestamp."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    distinct = np.unique(utc_ns(timestamps))
    n_val = int(np.floor(val_fraction * distinct.size + 0.5))
    if not 1 <= n_val < distinct.size:
        raise ValueError(
            f"val_fraction {val_fraction} of {distinct.size} timestamps leaves "
            f"{n_val} for validation and {distinct.size - n_val} for training"
        )
    cut, last = int(distinct[-n_val]), int(distinct[-1])
    train, val, info = purged_split(
        timestamps, t1, pd.Timestamp(cut, tz="UTC"), pd.Timestamp(last, tz="UTC"), embargo_bars
    )
    info = {"cut": _iso(cut), "val_fraction": float(val_fraction),
            "timestamps": int(distinct.size), "timestamps_val": n_val, **info}
    return train, val, info
