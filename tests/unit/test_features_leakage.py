"""Time discipline of the feature stage.

For every feature: changing the bars after t leaves every feature value at or
before t unchanged. Checked for random t (hypothesis) on the raw feature
function and on the whole table builder, and across symbols.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradingrl.features.build import build_feature_table
from tradingrl.features.contract import feature_schema
from tradingrl.features.labels import LabelSpec
from tradingrl.features.technical import FEATURE_COLUMNS, MIN_WARMUP_BARS, compute_features

N = 500


def random_bars(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, n)))
    open_ = np.concatenate([[50.0], close[:-1]]) * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.006, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
    volume = np.round(rng.lognormal(12, 0.4, n))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def with_new_future(bars: dict[str, np.ndarray], t: int, seed: int) -> dict[str, np.ndarray]:
    """Same bars up to and including t; an unrelated path after t."""
    # Offset: the base path is seed 11; a future drawn with it would not differ.
    future = random_bars(len(bars["close"]), 100_000 + seed)
    scale = bars["close"][t] / future["close"][t]
    out = {}
    for key, values in bars.items():
        replacement = future[key] * (scale if key != "volume" else 3.0)
        out[key] = np.concatenate([values[: t + 1], replacement[t + 1 :]])
    return out


def features(bars: dict[str, np.ndarray]) -> pd.DataFrame:
    return compute_features(bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"])


BASE = random_bars(N, seed=11)
BASE_FEATURES = features(BASE)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=st.integers(min_value=0, max_value=N - 2), seed=st.integers(min_value=0, max_value=10_000))
def test_no_feature_reads_the_future(t, seed):
    changed = features(with_new_future(BASE, t, seed))
    assert not np.allclose(changed["ret_1"].iloc[t + 1 :], BASE_FEATURES["ret_1"].iloc[t + 1 :])
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(
            changed[name].iloc[: t + 1].to_numpy(),
            BASE_FEATURES[name].iloc[: t + 1].to_numpy(),
            err_msg=f"feature {name} at or before t={t} changed when only bars after t changed",
        )


def test_truncated_history_gives_the_same_features():
    # The live case: computing on bars[:t+1] must equal the full-history values.
    for t in (MIN_WARMUP_BARS, 250, N - 2):
        short = features({k: v[: t + 1] for k, v in BASE.items()})
        pd.testing.assert_frame_equal(short, BASE_FEATURES.iloc[: t + 1])


def test_every_feature_is_defined_after_warmup_and_varies():
    after = BASE_FEATURES.iloc[MIN_WARMUP_BARS:]
    assert np.isfinite(after.to_numpy()).all()
    constant = [name for name in FEATURE_COLUMNS if after[name].nunique() < 2]
    assert constant == []
    assert len(FEATURE_COLUMNS) >= 60
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)


def long_frame(symbol_bars: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    parts = []
    for symbol, bars in symbol_bars.items():
        n = len(bars["close"])
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": pd.date_range("2015-01-02", periods=n, freq="B", tz="UTC"),
                    "symbol": symbol,
                    **bars,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


SPEC = LabelSpec(horizon=5)


def test_table_rows_at_or_before_t_ignore_later_bars_and_other_symbols():
    a, b = random_bars(400, 1), random_bars(400, 2)
    table, _ = build_feature_table(long_frame({"AAA": a, "BBB": b}), SPEC, warmup_bars=120)
    t = 250
    changed, _ = build_feature_table(
        long_frame({"AAA": with_new_future(a, t, 99), "BBB": random_bars(400, 3)}), SPEC, warmup_bars=120
    )
    cut = pd.Timestamp(pd.date_range("2015-01-02", periods=400, freq="B", tz="UTC")[t])
    before = table[(table.symbol == "AAA") & (table.timestamp <= cut)].reset_index(drop=True)
    after = changed[(changed.symbol == "AAA") & (changed.timestamp <= cut)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        before[["timestamp", *FEATURE_COLUMNS]], after[["timestamp", *FEATURE_COLUMNS]]
    )
    # Labels do look ahead (by design, up to `horizon` bars): only those whose
    # end time t1 lies at or before t are guaranteed unchanged.
    settled = before["t1"] <= cut
    pd.testing.assert_series_equal(before.loc[settled, "label"], after.loc[settled, "label"])


def test_table_drops_warmup_per_symbol_and_matches_its_contract():
    bars = long_frame({"AAA": random_bars(300, 4), "BBB": random_bars(260, 5)})
    table, report = build_feature_table(bars, SPEC, warmup_bars=120)
    feature_schema().validate(table)
    first = table.groupby("symbol")["timestamp"].min()
    calendar = pd.date_range("2015-01-02", periods=300, freq="B", tz="UTC")
    assert first.to_dict() == {"AAA": calendar[120], "BBB": calendar[120]}
    assert report["rows_out"] == len(table) == (300 - 120) + (260 - 120)
    assert report["rows_warmup_dropped"] == 240
    assert table.groupby("symbol")["label"].apply(lambda s: s.isna().sum()).tolist() == [5, 5]
    assert list(table.columns) == ["timestamp", "symbol", *FEATURE_COLUMNS, "fwd_return", "label", "t1"]


def test_zero_volume_stretch_drops_rows_and_counts_them():
    bars = random_bars(300, 6)
    bars["volume"][200:230] = 0.0
    table, report = build_feature_table(long_frame({"AAA": bars}), SPEC, warmup_bars=120)
    assert report["rows_nonfinite_dropped"] > 0
    assert report["rows_out"] + report["rows_warmup_dropped"] + report["rows_nonfinite_dropped"] == 300
    assert np.isfinite(table[list(FEATURE_COLUMNS)].to_numpy()).all()


def test_constant_volume_keeps_rows_and_zero_volume_names_the_culprits():
    bars = random_bars(300, 8)
    bars["volume"][:] = 500.0
    table, report = build_feature_table(long_frame({"AAA": bars}), SPEC, warmup_bars=120)
    assert report["rows_out"] == 180 and (table["log_volume_z20"] == 0).all()
    bars["volume"][:] = 0.0
    with pytest.raises(ValueError, match=r"all 180 rows after warm-up have undefined features.*volume_ratio_5_20 \(180\)"):
        build_feature_table(long_frame({"AAA": bars}), SPEC, warmup_bars=120)


def test_too_short_series_say_so():
    with pytest.raises(ValueError, match="at most 120 bars"):
        build_feature_table(long_frame({"AAA": random_bars(100, 9)}), SPEC, warmup_bars=120)


def test_warmup_shorter_than_the_longest_window_is_refused():
    with pytest.raises(ValueError, match="warmup_bars"):
        build_feature_table(long_frame({"AAA": random_bars(300, 7)}), SPEC, warmup_bars=10)


def test_past_only_kst_trix_vortex_equal_ta_once_its_mean_fill_has_left_the_window():
    import ta

    from tradingrl.features.technical import kst, trix, vortex

    h, low, c = (pd.Series(BASE[k]) for k in ("high", "low", "close"))
    ours_kst, ours_sig = kst(c)
    theirs = ta.trend.KSTIndicator(c)
    np.testing.assert_allclose(ours_kst[60:], theirs.kst()[60:], rtol=1e-10)
    np.testing.assert_allclose(ours_sig[60:], theirs.kst_sig()[60:], rtol=1e-10)
    np.testing.assert_allclose(trix(c)[60:], ta.trend.TRIXIndicator(c).trix()[60:], rtol=1e-10)
    plus, minus = vortex(h, low, c)
    theirs_v = ta.trend.VortexIndicator(h, low, c)
    np.testing.assert_allclose(plus[20:], theirs_v.vortex_indicator_pos()[20:], rtol=1e-10)
    np.testing.assert_allclose(minus[20:], theirs_v.vortex_indicator_neg()[20:], rtol=1e-10)
    # ...and ta's own KST is not past-only: its early values move with the future.
    future = with_new_future(BASE, 40, seed=1)
    moved = ta.trend.KSTIndicator(pd.Series(future["close"])).kst()
    assert not np.allclose(moved[:41].dropna(), theirs.kst()[:41].dropna())
