"""Tests of the deterministic synthetic market generator."""

from __future__ import annotations

import re
import resource
import time

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.columns import OHLCV_COLUMNS, SYMBOL_PATTERN
from tradingrl.data.synthetic import (
    REGIMES,
    SyntheticMarketConfig,
    generate_market,
    generate_market_with_regimes,
    synthetic_symbols,
    trading_sessions,
)

SMALL = SyntheticMarketConfig(n_symbols=5, n_bars=300, seed=3)
STATS = SyntheticMarketConfig(n_symbols=9, n_bars=2520, seed=7)  # statistical checks


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return generate_market(SMALL)


@pytest.fixture(scope="module")
def stats_market() -> tuple[pd.DataFrame, pd.Series]:
    return generate_market_with_regimes(STATS)


def _wide(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.pivot(index="timestamp", columns="symbol", values=column)


def _log_returns(frame: pd.DataFrame) -> pd.DataFrame:
    return np.log(_wide(frame, "close")).diff().iloc[1:]


def test_same_config_is_bit_identical(small: pd.DataFrame) -> None:
    again = generate_market(SyntheticMarketConfig(n_symbols=5, n_bars=300, seed=3))
    pd.testing.assert_frame_equal(small, again, check_exact=True)


def test_different_seeds_differ(small: pd.DataFrame) -> None:
    other = generate_market(SyntheticMarketConfig(n_symbols=5, n_bars=300, seed=4))
    assert other["timestamp"].equals(small["timestamp"])
    assert not np.allclose(other["close"].to_numpy(), small["close"].to_numpy())
    assert (other["close"].to_numpy() != small["close"].to_numpy()).mean() > 0.99


def test_symbol_paths_do_not_depend_on_n_symbols(small: pd.DataFrame) -> None:
    fewer = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=300, seed=3))
    head = small[small["symbol"].isin(fewer["symbol"].unique())].reset_index(drop=True)
    pd.testing.assert_frame_equal(head, fewer, check_exact=False, rtol=1e-12)


def test_schema_dtypes_sort_and_keys(small: pd.DataFrame) -> None:
    assert tuple(small.columns) == OHLCV_COLUMNS
    assert str(small["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert small["symbol"].dtype == object
    assert all(isinstance(s, str) for s in small["symbol"])
    for column in ("open", "high", "low", "close", "volume"):
        assert small[column].dtype == np.float64
    assert isinstance(small.index, pd.RangeIndex) and small.index.start == 0
    assert len(small) == SMALL.n_symbols * SMALL.n_bars
    assert not small.duplicated(["symbol", "timestamp"]).any()
    ordered = small.sort_values(["symbol", "timestamp"], kind="mergesort")
    assert ordered.index.equals(small.index)
    assert sorted(small["symbol"].unique()) == synthetic_symbols(SMALL.n_symbols)
    assert small.groupby("symbol").size().eq(SMALL.n_bars).all()
    assert not small.isna().any().any()


def test_rows_for_other_shapes() -> None:
    one = generate_market(SyntheticMarketConfig(n_symbols=1, n_bars=2, seed=0))
    assert len(one) == 2 and list(one["symbol"]) == ["SYN000", "SYN000"]
    frame = generate_market(SyntheticMarketConfig(n_symbols=13, n_bars=40, seed=1))
    assert len(frame) == 13 * 40


def test_symbols_are_stable_and_valid() -> None:
    names = synthetic_symbols(1200)
    assert names[:3] == ["SYN000", "SYN001", "SYN002"]
    assert synthetic_symbols(8) == names[:8]
    assert len(set(names)) == 1200
    assert all(re.match(SYMBOL_PATTERN, name) for name in names)


def test_ohlc_coherent_and_positive_on_every_row(stats_market) -> None:
    frame, _ = stats_market
    o, h, low, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert np.isfinite(np.stack([o, h, low, c, v])).all()
    assert (low > 0).all()
    assert (h >= np.maximum(o, c)).all()
    assert (low <= np.minimum(o, c)).all()
    assert (h >= low).all()
    assert (h > low).mean() > 0.999  # real ranges, not degenerate bars
    assert (v >= 1).all() and (v == np.round(v)).all()


def test_open_is_previous_close_times_a_gap(stats_market) -> None:
    frame, _ = stats_market
    close = _wide(frame, "close")
    gap = np.log(_wide(frame, "open") / close.shift(1)).iloc[1:]
    returns = _log_returns(frame)
    share = float((gap.var() / returns.var()).mean())
    assert 0.1 < share < 0.45  # overnight variance share of close-to-close
    assert (gap.abs() > 0).to_numpy().all()


def test_calendar_is_nyse_like() -> None:
    frame = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=3400, seed=1))
    ts = pd.DatetimeIndex(frame["timestamp"].unique())
    assert len(ts) == 3400 and ts.is_monotonic_increasing
    assert (ts.hour == 21).all() and (ts.minute == 0).all()
    assert ts[0] == pd.Timestamp("2010-01-04 21:00", tz="UTC")
    assert ts.dayofweek.max() <= 4
    for month, day in ((1, 1), (7, 4), (12, 25)):
        assert not ((ts.month == month) & (ts.day == day)).any()
    assert ts[-1].year == 2023
    per_year = pd.Series(ts.year).value_counts()
    assert per_year.loc[2011:2020].between(250, 253).all()
    dates = set(ts.date)
    for holiday in ("2010-01-18", "2010-04-02", "2010-07-05", "2010-11-25", "2010-12-24",
                    "2012-01-02", "2022-06-20", "2021-12-24"):
        assert pd.Timestamp(holiday).date() not in dates
    for session in ("2010-12-31", "2010-10-11", "2010-11-11", "2021-12-31"):
        assert pd.Timestamp(session).date() in dates  # Columbus/Veterans/observed NYD open
    # All symbols share the calendar.
    by_symbol = frame.groupby("symbol")["timestamp"].apply(tuple)
    assert by_symbol.nunique() == 1


def test_start_on_a_holiday_moves_to_next_session() -> None:
    assert trading_sessions("2011-12-31", 2).strftime("%Y-%m-%d").tolist() == [
        "2012-01-03", "2012-01-04"]


def test_average_pairwise_correlation_is_positive_and_sectoral(stats_market) -> None:
    frame, _ = stats_market
    corr = _log_returns(frame).corr().to_numpy()
    upper = np.triu_indices(corr.shape[0], 1)
    sector = np.arange(corr.shape[0]) % STATS.n_sectors
    same = (sector[:, None] == sector[None, :])[upper]
    assert 0.2 < corr[upper].mean() < 0.6
    assert corr[upper][same].mean() > corr[upper][~same].mean() + 0.05


def test_volatile_regime_has_higher_vol_and_correlation(stats_market) -> None:
    frame, regimes = stats_market
    returns = _log_returns(frame)
    regime = regimes.iloc[1:].to_numpy()
    assert set(regime) == set(REGIMES)
    vol = {k: float(returns[regime == k].std().mean() * np.sqrt(252)) for k in REGIMES}
    assert vol["volatile"] > 1.6 * max(vol["trending"], vol["mean_reverting"])
    assert 0.1 < vol["mean_reverting"] < vol["trending"] < 0.5
    upper = np.triu_indices(STATS.n_symbols, 1)
    corr = {k: returns[regime == k].corr().to_numpy()[upper].mean() for k in REGIMES}
    assert corr["volatile"] > max(corr["trending"], corr["mean_reverting"])
    volume = np.log(_wide(frame, "volume").iloc[1:].to_numpy())
    assert volume[regime == "volatile"].mean() > volume[regime != "volatile"].mean() + 0.2


def test_regimes_persist_for_weeks() -> None:
    _, regimes = generate_market_with_regimes(SyntheticMarketConfig(n_symbols=1, n_bars=10_000))
    codes = regimes.cat.codes.to_numpy()
    runs = np.diff(np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True]))
    assert 15 < runs.mean() < 80
    shares = regimes.value_counts(normalize=True)
    assert (shares > 0.04).all()


def test_trending_autocorrelation_exceeds_mean_reverting(stats_market) -> None:
    frame, regimes = stats_market
    returns = _log_returns(frame).to_numpy()
    regime = regimes.iloc[1:].to_numpy()

    def lag1(name: str) -> float:
        idx = np.flatnonzero((regime[1:] == name) & (regime[:-1] == name)) + 1
        return float(np.mean([np.corrcoef(returns[idx, j], returns[idx - 1, j])[0, 1]
                              for j in range(returns.shape[1])]))

    trending, reverting = lag1("trending"), lag1("mean_reverting")
    assert trending > 0.04
    assert reverting < -0.03
    assert trending - reverting > 0.1


def test_stylised_facts(stats_market) -> None:
    frame, _ = stats_market
    returns = _log_returns(frame).to_numpy()
    centred = returns - returns.mean(axis=0)
    kurtosis = (centred**4).mean(axis=0) / (centred**2).mean(axis=0) ** 2 - 3.0
    assert kurtosis.mean() > 3.0  # fat tails
    absolute = np.abs(returns)
    clustering = np.mean([np.corrcoef(absolute[5:, j], absolute[:-5, j])[0, 1]
                          for j in range(returns.shape[1])])
    assert clustering > 0.05  # volatility clustering at lag 5
    volume = np.log(_wide(frame, "volume").iloc[1:].to_numpy())
    assert np.mean([np.corrcoef(volume[:, j], absolute[:, j])[0, 1]
                    for j in range(returns.shape[1])]) > 0.2
    assert np.mean([np.corrcoef(volume[1:, j], volume[:-1, j])[0, 1]
                    for j in range(returns.shape[1])]) > 0.3
    base = np.exp(volume.mean(axis=0))
    assert base.max() / base.min() > 3.0  # lognormal dispersion of volume levels


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="n_symbols"):
        SyntheticMarketConfig(n_symbols=0)
    with pytest.raises(ValueError, match="tail_df"):
        SyntheticMarketConfig(tail_df=2.0)


@pytest.mark.slow
def test_scale_137_symbols_by_10000_bars() -> None:
    config = SyntheticMarketConfig(n_symbols=137, n_bars=10_000)
    started = time.perf_counter()
    frame = generate_market(config)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"137 x 10,000 = {len(frame):,} rows in {elapsed:.2f} s, process peak RSS {peak_mb:.0f} MB")
    assert len(frame) == 1_370_000
    assert elapsed < 20.0
    assert (frame["high"] >= frame["low"]).all() and (frame["low"] > 0).all()
