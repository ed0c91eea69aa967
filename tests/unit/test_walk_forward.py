"""Walk-forward folds: blocks tile the data after the initial span, training
never reaches a test block, rolling windows and embargo hold, labels that end
inside a test block are purged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradingrl.splits.walk_forward import Fold, purge_labels, walk_forward_folds


def sessions(n: int, symbols: int = 2) -> pd.Series:
    days = pd.bdate_range("2020-01-01", periods=n, tz="UTC") + pd.Timedelta(hours=21)
    return pd.Series(np.tile(days, symbols))


def test_expanding_folds_tile_the_rest_and_train_on_everything_before():
    ts = sessions(100)
    folds = walk_forward_folds(ts, initial_fraction=0.4, n_folds=3)
    days = pd.DatetimeIndex(ts.unique())
    assert [f.n_test_timestamps for f in folds] == [20, 20, 20]
    assert folds[0].test_start == days[40] and folds[-1].test_end == days[99]
    for k, fold in enumerate(folds):
        assert fold.train_start == days[0]
        assert fold.train_end == days[40 + 20 * k - 1]  # the session right before the block
        assert fold.n_train_timestamps == 40 + 20 * k
        if k:
            assert fold.test_start == folds[k - 1].test_end + pd.offsets.BDay(1)
    masks = [f.test_mask(ts) for f in folds]
    assert sum(m.sum() for m in masks) == 2 * 60  # every later bar of both symbols, once
    assert not (masks[0] & masks[1]).any()
    assert not (folds[1].train_mask(ts) & masks[1]).any()


def test_rolling_folds_and_embargo():
    ts = sessions(100, symbols=1)
    days = pd.DatetimeIndex(ts)
    folds = walk_forward_folds(ts, initial_fraction=0.5, n_folds=2, mode="rolling",
                               train_timestamps=30, embargo_timestamps=3)
    assert folds[0].train_start == days[50 - 3 - 30] and folds[0].train_end == days[46]
    assert folds[1].train_start == days[75 - 3 - 30] and folds[1].train_end == days[71]
    assert all(f.n_train_timestamps == 30 for f in folds)
    assert folds[1].test_start == days[75]


@pytest.mark.parametrize("kwargs", [
    {"initial_fraction": 0.0, "n_folds": 2},
    {"initial_fraction": 1.0, "n_folds": 2},
    {"initial_fraction": 0.5, "n_folds": 0},
    {"initial_fraction": 0.5, "n_folds": 60},
    {"initial_fraction": 0.5, "n_folds": 2, "mode": "rolling"},
    {"initial_fraction": 0.5, "n_folds": 2, "mode": "sideways"},
])
def test_bad_plans_are_refused(kwargs):
    with pytest.raises(ValueError):
        walk_forward_folds(sessions(100, 1), **kwargs)


def test_fold_round_trips_through_json_dict():
    fold = walk_forward_folds(sessions(50, 1), initial_fraction=0.4, n_folds=2)[1]
    assert Fold.from_dict(fold.to_dict()) == fold


def test_purge_removes_labels_that_end_in_the_test_block_only():
    ts = pd.Series(pd.date_range("2021-01-01", periods=6, freq="D", tz="UTC"))
    frame = pd.DataFrame({
        "timestamp": ts,
        "label": pd.array([1, -1, 0, 1, pd.NA, pd.NA], dtype="Int8"),
        "t1": [ts[2], ts[3], ts[4], ts[5], pd.NaT, pd.NaT],
        "fwd_return": [0.1, -0.1, 0.0, 0.2, np.nan, np.nan],
    })
    purged, n = purge_labels(frame, ts[4])
    assert n == 2  # rows 2 and 3 end at or after the 5th day
    assert purged["label"].isna().tolist() == [False, False, True, True, True, True]
    assert purged["t1"].isna().tolist() == [False, False, True, True, True, True]
    assert np.isnan(purged["fwd_return"].to_numpy()[2:4]).all()
    assert frame["label"].notna().sum() == 4  # the input is not modified
