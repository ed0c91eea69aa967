"""Combinatorial purged cross-validation: groups, purge and embargo against
every test group, backtest paths and their Sharpe ratios."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from tradingrl.evaluation import path_sharpes, sharpe_ratio
from tradingrl.splits.cpcv import (
    combinatorial_purged_splits,
    cpcv_paths,
    cpcv_test_groups,
    timestamp_groups,
)

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2024-01-01", tz="UTC")
HORIZON = 3


def two_symbol_table(n_days: int = 60) -> pd.DataFrame:
    """Two symbols over the same calendar; B misses days 20 and 41; labels end
    HORIZON rows later within the symbol; the last HORIZON rows are unlabelled."""
    stamps = pd.date_range(START, periods=n_days, freq="D")
    parts = []
    for symbol, drop in (("A", []), ("B", [d for d in (20, 41) if d < n_days])):
        ts = stamps.delete(drop)
        t1 = pd.Series(ts).shift(-HORIZON)
        parts.append(pd.DataFrame({"timestamp": ts, "symbol": symbol, "t1": t1.to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def brute_force_train(table: pd.DataFrame, groups: np.ndarray, test_groups, embargo: int):
    """Training rows written out row by row: labelled, outside every test group,
    label interval meeting no test group, not in any embargo."""
    ts = pd.DatetimeIndex(table["timestamp"]).asi8
    t1 = pd.DatetimeIndex(table["t1"]).asi8
    labelled = table["t1"].notna().to_numpy()
    distinct = np.unique(ts)
    spans, embargoed = [], set()
    for g in test_groups:
        in_g = np.unique(ts[groups == g])
        spans.append((in_g[0], in_g[-1]))
        embargoed.update(distinct[distinct > in_g[-1]][:embargo].tolist())
    train = []
    for i in range(len(ts)):
        ok = labelled[i] and groups[i] not in test_groups and ts[i] not in embargoed
        ok = ok and all(not (ts[i] <= end and t1[i] >= start) for start, end in spans)
        train.append(ok)
    return np.array(train)


def test_split_and_path_counts():
    assert len(cpcv_test_groups(6, 2)) == 15
    paths = cpcv_paths(6, 2)
    assert paths.shape == (5, 6)  # phi = 2/6 * C(6, 2) = 5
    assert cpcv_paths(8, 3).shape == (21, 8)  # 3/8 * 56 = C(7, 2)
    assert cpcv_paths(5, 1).shape == (1, 5)  # k = 1: one path, split g tests group g
    assert cpcv_paths(5, 1).tolist() == [[0, 1, 2, 3, 4]]
    with pytest.raises(ValueError):
        cpcv_test_groups(6, 6)
    with pytest.raises(ValueError):
        cpcv_test_groups(1, 1)


def test_paths_cover_each_group_once_from_splits_that_test_it():
    n, k = 6, 2
    splits = cpcv_test_groups(n, k)
    paths = cpcv_paths(n, k)
    used = set()
    for p, row in enumerate(paths):
        for g, s in enumerate(row):
            assert g in splits[s]  # the split really tested group g
            used.add((int(s), g))
    # every (split, test group) forecast is used by exactly one path
    assert len(used) == paths.size == sum(len(t) for t in splits)
    assert sorted(used) == sorted((s, g) for s, t in enumerate(splits) for g in t)
    # hand-checked: N=3, k=2 -> splits (0,1), (0,2), (1,2); two paths
    assert cpcv_paths(3, 2).tolist() == [[0, 0, 1], [1, 2, 2]]


def test_groups_are_contiguous_blocks_of_distinct_timestamps():
    table = two_symbol_table(60)
    groups = timestamp_groups(table["timestamp"], 6)
    by_time = pd.Series(groups).groupby(table["timestamp"].to_numpy()).agg(["min", "max"])
    assert (by_time["min"] == by_time["max"]).all()  # one group per timestamp
    assert by_time["min"].is_monotonic_increasing
    assert by_time["min"].value_counts().sort_index().tolist() == [10] * 6
    uneven = timestamp_groups(pd.date_range(START, periods=8, freq="D"), 3)
    assert uneven.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="cannot make"):
        timestamp_groups(pd.date_range(START, periods=4, freq="D"), 5)


def test_every_group_tested_the_right_number_of_times_and_masks_by_brute_force():
    table = two_symbol_table(60)
    groups = timestamp_groups(table["timestamp"], 6)
    embargo = 2
    splits = combinatorial_purged_splits(
        table["timestamp"], table["t1"], n_groups=6, n_test_groups=2, embargo_bars=embargo)
    assert len(splits) == 15
    tested = np.zeros(6, dtype=int)
    for s, (train, test, info) in enumerate(splits):
        test_groups = info["test_groups"]
        assert info["split"] == s and tuple(test_groups) == cpcv_test_groups(6, 2)[s]
        tested[test_groups] += 1
        np.testing.assert_array_equal(test, np.isin(groups, test_groups))
        expected = brute_force_train(table, groups, test_groups, embargo)
        np.testing.assert_array_equal(train, expected)
        assert info["rows_train"] == expected.sum() and info["rows_test"] == test.sum()
        labelled = table["t1"].notna().to_numpy()
        assert info["rows_purged_or_embargoed"] == (labelled & ~test & ~train).sum()
    assert tested.tolist() == [5] * 6  # C(5, 1) splits test each group


def test_no_training_label_meets_a_test_group_and_embargo_follows_each():
    table = two_symbol_table(60)
    ts, t1 = table["timestamp"], table["t1"]
    groups = timestamp_groups(ts, 6)
    for train, _test, info in combinatorial_purged_splits(
            ts, t1, n_groups=6, n_test_groups=2, embargo_bars=3):
        for start, end in info["test_spans"]:
            start, end = pd.Timestamp(start), pd.Timestamp(end)
            meets = (ts <= end) & (t1 >= start)
            assert not (train & meets.to_numpy()).any()
        # the 3 distinct days after each test group (days are consecutive here)
        for g, (_, end) in zip(info["test_groups"], info["test_spans"], strict=True):
            end = pd.Timestamp(end)
            embargoed = ((ts > end) & (ts <= end + 3 * DAY)).to_numpy()
            assert not (train & embargoed).any(), g
            if g < 5:
                assert info["embargo_ends"][info["test_groups"].index(g)] == (
                    end + 3 * DAY).isoformat()
        # a row right after the embargo, far from other test groups, is trained on
        tested = set(info["test_groups"])
        if tested == {0, 3}:
            day = ts.min() + 10 * DAY + 3 * DAY  # group 0 ends on day 9
            row = (ts == day).to_numpy() & (groups == 1)
            assert train[row].all()


def test_adjacent_test_groups_and_last_group():
    table = two_symbol_table(60)
    train, test, info = combinatorial_purged_splits(
        table["timestamp"], table["t1"], n_groups=6, n_test_groups=2, embargo_bars=2)[-1]
    assert info["test_groups"] == [4, 5]
    assert info["embargo_ends"][-1] is None  # nothing after the last group
    # training ends HORIZON days before group 4 starts (day 40): t1 < day 40
    last_train = table["timestamp"][train].max()
    assert last_train == START + 36 * DAY
    assert test.sum() == (table["timestamp"] >= START + 40 * DAY).sum()


def test_split_arguments_are_checked():
    table = two_symbol_table(20)
    with pytest.raises(ValueError, match="embargo_bars"):
        combinatorial_purged_splits(table["timestamp"], table["t1"], n_groups=4,
                                    n_test_groups=2, embargo_bars=-1)
    with pytest.raises(ValueError, match="n_test_groups"):
        combinatorial_purged_splits(table["timestamp"], table["t1"], n_groups=4,
                                    n_test_groups=4, embargo_bars=0)
    with pytest.raises(ValueError, match="NaT"):
        combinatorial_purged_splits(pd.Series([START, pd.NaT, START + DAY]),
                                    pd.Series([START] * 3), n_groups=2,
                                    n_test_groups=1, embargo_bars=0)
    with pytest.raises(ValueError, match="differ in length"):
        combinatorial_purged_splits(table["timestamp"], table["t1"][:-1], n_groups=4,
                                    n_test_groups=2, embargo_bars=0)


# ---------------------------------------------------------------- path Sharpes
def test_path_sharpes_by_hand_for_three_groups():
    # N=3, k=2: paths [[0, 0, 1], [1, 2, 2]]
    paths = cpcv_paths(3, 2)
    simple = {
        (0, 0): [0.01, 0.02], (0, 1): [-0.01, 0.00],
        (1, 0): [0.03, -0.02], (1, 2): [0.02, 0.01],
        (2, 1): [0.00, 0.04], (2, 2): [-0.03, 0.01],
    }
    split_returns = [{g: np.log1p(v) for (s, g), v in simple.items() if s == split}
                     for split in range(3)]
    out = path_sharpes(split_returns, paths, bars_per_year=252)
    path0 = [0.01, 0.02, -0.01, 0.00, 0.02, 0.01]
    path1 = [0.03, -0.02, 0.00, 0.04, -0.03, 0.01]
    expected = [sharpe_ratio(path0, bars_per_year=252), sharpe_ratio(path1, bars_per_year=252)]
    np.testing.assert_allclose(out["sharpe"], expected, rtol=1e-12)
    np.testing.assert_allclose(out["sharpe_per_period"], np.array(expected) / math.sqrt(252),
                               rtol=1e-12)
    np.testing.assert_allclose(out["total_return"], [np.prod(1 + np.array(p)) - 1
                                                     for p in (path0, path1)], rtol=1e-12)
    assert out["mean"] == pytest.approx(np.mean(expected))
    assert out["std"] == pytest.approx(abs(expected[0] - expected[1]) / math.sqrt(2))
    assert (out["min"], out["max"]) == (min(expected), max(expected))
    assert out["n_paths"] == 2 and out["n_bars"] == 6


def test_identical_forecasts_give_identical_paths():
    n, k = 6, 2
    rng = np.random.default_rng(4)
    per_group = [rng.normal(0.0005, 0.01, 7) for _ in range(n)]
    split_returns = [{g: per_group[g] for g in test} for test in cpcv_test_groups(n, k)]
    out = path_sharpes(split_returns, cpcv_paths(n, k), bars_per_year=252)
    whole = sharpe_ratio(np.expm1(np.concatenate(per_group)), bars_per_year=252)
    np.testing.assert_allclose(out["sharpe"], [whole] * 5, rtol=1e-12)
    assert out["std"] == pytest.approx(0.0, abs=1e-12) and out["n_bars"] == 42


def test_path_sharpes_refuses_inconsistent_input():
    paths = cpcv_paths(3, 2)
    good = [{0: [0.01, 0.02], 1: [0.0, 0.01]}, {0: [0.02, 0.0], 2: [0.01, -0.01]},
            {1: [0.01, 0.03], 2: [0.0, 0.02]}]
    with pytest.raises(ValueError, match="no returns for group 1"):
        path_sharpes([good[0], good[1], {2: [0.0, 0.02]}], paths)
    with pytest.raises(ValueError, match="group 0 has 3 bars"):
        path_sharpes([good[0], {0: [0.02, 0.0, 0.01], 2: [0.01, -0.01]}, good[2]], paths)
    with pytest.raises(ValueError, match="non-finite"):
        path_sharpes([good[0], good[1], {1: [np.nan, 0.03], 2: [0.0, 0.02]}], paths)
    with pytest.raises(ValueError, match="refer to split"):
        path_sharpes(good[:2], paths)
    flat = [{g: [0.0, 0.0] for g in test} for test in combinations(range(3), 2)]
    assert np.isnan(path_sharpes(flat, paths)["sharpe"]).all()  # zero variance: undefined
