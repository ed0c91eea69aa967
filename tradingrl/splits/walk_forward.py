"""Walk-forward folds: chronological test blocks, each preceded by its training span.

The distinct timestamps of a table (all symbols together) are cut into an
initial span and ``n_folds`` contiguous test blocks of (nearly) equal length.
Fold k tests block k and trains on the timestamps before it: all of them
("expanding") or the last ``train_timestamps`` of them ("rolling"). Training
never uses bars after a test span, so only purging is needed: a training row
whose label interval [t, t1] reaches into the test span is dropped (see
:func:`purge_labels`). An optional ``embargo_timestamps`` gap is left between
the end of training and the start of the test span on top of the purge.

The same folds serve three purposes: the out-of-fold CNN+LSTM predictions
(block k predicted by a model trained on fold k's training span only), the
agent's training span (the predicted blocks before its test block) and the
walk-forward evaluation (every block traded by models that never saw it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

MODES = ("expanding", "rolling")


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold; every bound is an inclusive UTC timestamp.

    index: fold number, 0 = earliest test block.
    train_start / train_end: the training span (before purging).
    test_start / test_end: the test block.
    n_train_timestamps / n_test_timestamps: distinct timestamps in each.
    """

    index: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    n_train_timestamps: int
    n_test_timestamps: int

    def train_mask(self, timestamps: Any) -> np.ndarray:
        ts = _as_utc(timestamps)
        return np.asarray((ts >= self.train_start) & (ts <= self.train_end))

    def test_mask(self, timestamps: Any) -> np.ndarray:
        ts = _as_utc(timestamps)
        return np.asarray((ts >= self.test_start) & (ts <= self.test_end))

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Fold:
        stamps = {k: pd.Timestamp(payload[k]) for k in
                  ("train_start", "train_end", "test_start", "test_end")}
        return cls(index=int(payload["index"]),
                   n_train_timestamps=int(payload["n_train_timestamps"]),
                   n_test_timestamps=int(payload["n_test_timestamps"]), **stamps)


def _as_utc(timestamps: Any) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(timestamps)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def walk_forward_folds(
    timestamps: Any,
    *,
    initial_fraction: float,
    n_folds: int,
    mode: Literal["expanding", "rolling"] = "expanding",
    train_timestamps: int | None = None,
    embargo_timestamps: int = 0,
) -> list[Fold]:
    """Folds over the distinct values of ``timestamps`` (see the module docstring).

    initial_fraction: share of distinct timestamps before the first test block
        (the first fold's training span), in (0, 1).
    n_folds: number of test blocks that split the rest, >= 1.
    mode / train_timestamps: "rolling" trains on the last ``train_timestamps``
        distinct timestamps before the test block (minus the embargo).
    embargo_timestamps: distinct timestamps left out between training and test.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.0 < initial_fraction < 1.0:
        raise ValueError(f"initial_fraction must be in (0, 1), got {initial_fraction}")
    if n_folds < 1 or embargo_timestamps < 0:
        raise ValueError("n_folds must be >= 1 and embargo_timestamps >= 0")
    if mode == "rolling" and (train_timestamps is None or train_timestamps < 1):
        raise ValueError("rolling folds need train_timestamps >= 1")
    distinct = _as_utc(pd.unique(_as_utc(timestamps))).sort_values()
    n = len(distinct)
    first_test = int(np.floor(initial_fraction * n + 0.5))
    if first_test - embargo_timestamps < 1 or n - first_test < n_folds:
        raise ValueError(
            f"{n} distinct timestamps cannot hold a training span of {first_test} "
            f"(embargo {embargo_timestamps}) and {n_folds} test block(s)")
    blocks = np.array_split(np.arange(first_test, n), n_folds)
    folds = []
    for k, block in enumerate(blocks):
        train_stop = int(block[0]) - embargo_timestamps  # exclusive
        train_begin = 0 if mode == "expanding" else max(0, train_stop - int(train_timestamps))
        folds.append(Fold(
            index=k,
            train_start=distinct[train_begin], train_end=distinct[train_stop - 1],
            test_start=distinct[int(block[0])], test_end=distinct[int(block[-1])],
            n_train_timestamps=train_stop - train_begin, n_test_timestamps=len(block)))
    return folds


def folds_from_params(timestamps: Any, params: Mapping[str, Any]) -> list[Fold]:
    """:func:`walk_forward_folds` with the keyword arguments of params.yaml's
    ``walk_forward`` section (``train_timestamps`` and ``embargo_timestamps``
    optional)."""
    return walk_forward_folds(
        timestamps,
        initial_fraction=params["initial_fraction"],
        n_folds=params["n_folds"],
        mode=params["mode"],
        train_timestamps=params.get("train_timestamps"),
        embargo_timestamps=params.get("embargo_timestamps", 0),
    )


def purge_labels(frame: pd.DataFrame, before: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """A copy of a feature table whose labels that end at or after ``before``
    are removed (label NA, t1 NaT, fwd_return NaN): such a label was not known
    before ``before``, so a model trained for a span starting there must not
    learn from it. Returns (frame, number of labels removed)."""
    t1 = frame["t1"]
    late = (t1.notna() & (t1 >= pd.Timestamp(before))).to_numpy()
    out = frame.copy()
    if late.any():
        out.loc[late, "label"] = pd.NA
        out.loc[late, "t1"] = pd.NaT
        out.loc[late, "fwd_return"] = np.nan
    return out, int(late.sum())
