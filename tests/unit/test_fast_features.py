"""``fast_features.feature_matrix`` against the ta/pandas reference ``compute_features``.

For random, synthetic and degenerate markets: identical NaN masks per column, values
within ``rtol=1e-9, atol=1e-12`` per column (no column needs a looser tolerance: on
these markets the largest differences were ~3e-15 relative, in the log-based columns,
and every other column was bit-identical), past-only rows, and agreement after the
float32 cast that the feature table stores. The pandas window helpers are also checked
on their own against pandas, bit for bit, on series with NaN and inf.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ta")

from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features import fast_features as ff
from tradingrl.features.fast_features import feature_matrix
from tradingrl.features.technical import FEATURE_COLUMNS, compute_features

RTOL = 1e-9
ATOL = 1e-12
Bars = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # o, h, l, c, v


# --------------------------------------------------------------------------- markets
def _gbm(n: int, seed: int) -> Bars:
    """Geometric random walk bars with consistent OHLC (low <= open, close <= high)."""
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    o = c * np.exp(rng.normal(0.0, 0.003, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
    v = rng.lognormal(10.0, 1.0, n)
    return o, h, lo, c, v


def _degenerate(n: int, seed: int) -> Bars:
    """Flat bars (high == low == open == close) in stretches, some with a repeated
    volume, zero-volume stretches, and a flat zero-volume start."""
    rng = np.random.default_rng(seed)
    o, h, lo, c, v = _gbm(n, seed)
    for _ in range(6):
        s = int(rng.integers(0, n))
        e = min(n, s + int(rng.integers(3, 80)))
        o[s:e] = h[s:e] = lo[s:e] = c[s:e] = c[s]
        if rng.random() < 0.5:
            v[s:e] = v[s]
    for _ in range(5):
        s = int(rng.integers(0, n))
        v[s : min(n, s + int(rng.integers(3, 80)))] = 0.0
    k = min(90, n - 1)
    o[:k] = h[:k] = lo[:k] = c[:k] = c[k]
    v[: 2 * k // 3] = 0.0
    return o, h, lo, c, v


def _ticked(n: int, seed: int, tick: float) -> Bars:
    """Prices ~100 ticks high rounded to ``tick`` (many flat bars, ties and zero
    moves) and volumes rounded to thousands."""
    o, h, lo, c, v = _gbm(n, seed)
    o, h, lo, c = (np.maximum(np.round(x), 1.0) * tick for x in (o, h, lo, c))
    h = np.maximum(h, np.maximum(o, c))
    lo = np.minimum(lo, np.minimum(o, c))
    return o, h, lo, c, np.round(v, -3)


def _synthetic() -> list[tuple[str, Bars]]:
    market = generate_market(SyntheticMarketConfig())
    return [
        (str(sym), tuple(g[k].to_numpy() for k in ("open", "high", "low", "close", "volume")))
        for sym, g in market.groupby("symbol", sort=True)
    ]


MARKETS: dict[str, Bars] = {
    **{f"gbm-n{n}-seed{s}": _gbm(n, s) for n in (181, 500, 3000) for s in (0, 1, 2)},
    **{f"degenerate-seed{s}": _degenerate(800, 10 + s) for s in range(4)},
    "tick-0.01": _ticked(1000, 20, 0.01),
    "tick-1e-4": _ticked(1000, 21, 1e-4),
    "tick-1e-8": _ticked(1000, 22, 1e-8),
    "short-n1": _gbm(1, 30),
    "short-n30": _gbm(30, 31),
    "short-n70": _degenerate(70, 32),
}


@pytest.fixture(scope="module")
def synthetic() -> list[tuple[str, Bars]]:
    return _synthetic()


def _reference(bars: Bars) -> np.ndarray:
    return compute_features(*bars).to_numpy()


def _assert_matches(fast: np.ndarray, ref: np.ndarray, tag: str) -> None:
    n = ref.shape[0]
    assert fast.shape == ref.shape == (n, len(FEATURE_COLUMNS)), tag
    assert fast.dtype == np.float64 and fast.flags.c_contiguous
    for j, name in enumerate(FEATURE_COLUMNS):
        a, b = fast[:, j], ref[:, j]
        mask_a, mask_b = np.isnan(a), np.isnan(b)
        bad = np.flatnonzero(mask_a != mask_b)
        assert bad.size == 0, (
            f"{tag}: {name}: NaN mask differs at bars {bad[:10]} of {n} "
            f"(fast {a[bad[:3]]}, reference {b[bad[:3]]})"
        )
        assert not np.isinf(a).any(), f"{tag}: {name}: inf in the fast matrix"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"{tag}: {name}")


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("tag", list(MARKETS))
def test_matches_reference(tag: str) -> None:
    bars = MARKETS[tag]
    _assert_matches(feature_matrix(*bars), _reference(bars), tag)


def test_matches_reference_on_synthetic_market(synthetic) -> None:
    for sym, bars in synthetic:
        _assert_matches(feature_matrix(*bars), _reference(bars), f"synthetic {sym}")


def test_extreme_degenerate_markets() -> None:
    n = 300
    price = np.full(n, 5.0)
    cases = {
        "constant": (price, price, price, price, np.full(n, 1000.0)),
        "constant-no-volume": (price, price, price, price, np.zeros(n)),
    }
    o, h, lo, c, v = _gbm(3000, 40)
    v[500:2900] = 0.0  # EMAs of volume decay through the denormals
    cases["long-zero-volume"] = (o, h, lo, c, v)
    up = 10.0 * 1.001 ** np.arange(n)  # RSI 100, no down moves
    cases["monotone-up"] = (up, up * 1.0005, up * 0.9995, up, np.full(n, 5.0))
    alt = np.where(np.arange(n) % 2 == 0, 10.0, 10.5)
    prev = np.concatenate([[10.0], alt[:-1]])
    cases["alternating"] = (prev, np.maximum(prev, alt), np.minimum(prev, alt), alt, np.ones(n))
    o, h, lo, c, _ = _gbm(600, 41)
    near = 1e6 + np.random.default_rng(41).integers(0, 2, 600)  # volume 1e6 or 1e6 + 1
    cases["near-constant-volume"] = (o, h, lo, c, near.astype(float))
    for tag, bars in cases.items():
        _assert_matches(feature_matrix(*bars), _reference(bars), tag)


def test_float32_cast_matches_reference(synthetic) -> None:
    """The feature table stores float32: the cast cells agree (>= 99.9% of finite ones)."""
    for tag, bars in [*synthetic[:3], ("degenerate", MARKETS["degenerate-seed0"])]:
        fast = feature_matrix(*bars).astype(np.float32)
        ref = _reference(bars).astype(np.float32)
        assert np.array_equal(np.isnan(fast), np.isnan(ref)), tag
        finite = np.isfinite(ref)
        share = np.mean(fast[finite] == ref[finite])
        assert share >= 0.999, f"{tag}: only {share:.5f} of finite float32 cells are equal"


# --------------------------------------------------------------------------- past-only
@pytest.mark.parametrize("seed", [0, 1])
def test_past_only(seed: int) -> None:
    """Changing the bars after t leaves rows <= t bit-identical (NaNs included)."""
    n = 400
    base = _degenerate(n, 50 + seed) if seed else _gbm(n, 50)
    fast = feature_matrix(*base)
    future = _gbm(n, 60 + seed)
    for t in (0, 1, 25, 99, 180, 398):
        scale = base[3][t] / future[3][t]
        changed = tuple(
            np.concatenate([b[: t + 1], f[t + 1 :] * (scale if k < 4 else 3.0)])
            for k, (b, f) in enumerate(zip(base, future, strict=True))
        )
        other = feature_matrix(*changed)
        np.testing.assert_array_equal(other[: t + 1], fast[: t + 1], err_msg=f"t={t}")
        assert not np.array_equal(other[t + 1 :], fast[t + 1 :], equal_nan=True)


def test_prefix_equals_full_history_rows() -> None:
    """A prefix of the bars gives the same rows as the full history (nothing read ahead)."""
    bars = _gbm(500, 70)
    full = feature_matrix(*bars)
    for t in (181, 300):
        part = feature_matrix(*(x[:t] for x in bars))
        np.testing.assert_array_equal(part, full[:t])


# --------------------------------------------------------------------------- wrapper
def test_wrapper_inputs() -> None:
    o, h, lo, c, v = _gbm(200, 80)
    expected = feature_matrix(o, h, lo, c, v)
    # lists, float32 and strided views are converted with ascontiguousarray(float64)
    np.testing.assert_array_equal(
        feature_matrix(list(o), list(h), list(lo), list(c), list(v)), expected
    )
    wide = np.stack([o, h, lo, c, v], axis=1)  # columns are strided views
    np.testing.assert_array_equal(feature_matrix(*wide.T), expected)
    assert feature_matrix(*(np.empty(0),) * 5).shape == (0, len(FEATURE_COLUMNS))
    with pytest.raises(ValueError, match="lengths differ"):
        feature_matrix(o, h, lo, c, v[:-1])
    with pytest.raises(ValueError, match="1-D"):
        feature_matrix(o[:, None], h, lo, c, v)


def test_kernel_columns_are_feature_columns() -> None:
    assert ff._KERNEL_COLUMNS == FEATURE_COLUMNS
    assert ff._REORDER is None


# --------------------------------------------------------------------------- pandas helpers
def _noisy_series(n: int, seed: int) -> np.ndarray:
    """Random values with NaN runs (leading and inside), inf, repeats and signs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    x[:7] = np.nan
    x[50:53] = np.nan
    x[120] = np.inf
    x[121] = -np.inf
    x[200:240] = 3.25  # a run of equal values
    x[300:330] = np.abs(x[300:330])  # all positive
    x[400:430] = -np.abs(x[400:430])  # all negative
    x[600:700] = 1e6 + x[600:700] * 1e-6  # near-constant, large offset
    return x


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("w", "minp"), [(1, 1), (3, 3), (14, 14), (20, 0), (52, 0), (20, 5)])
def test_rolling_helpers_equal_pandas(seed: int, w: int, minp: int) -> None:
    x = _noisy_series(1000, seed)
    r = pd.Series(x).rolling(w, min_periods=minp)
    np.testing.assert_array_equal(ff._roll_sum(x, w, minp), r.sum().to_numpy())
    np.testing.assert_array_equal(ff._roll_mean(x, w, minp), r.mean().to_numpy())
    np.testing.assert_array_equal(ff._roll_std(x, w, minp, 1), r.std().to_numpy())
    np.testing.assert_array_equal(ff._roll_std(x, w, minp, 0), r.std(ddof=0).to_numpy())
    np.testing.assert_array_equal(ff._roll_max(x, w, minp), r.max().to_numpy())
    np.testing.assert_array_equal(ff._roll_min(x, w, minp), r.min().to_numpy())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("span", [3, 9, 26])
def test_ewm_helpers_equal_pandas(seed: int, span: int) -> None:
    x = _noisy_series(1000, seed)
    s = pd.Series(x)
    for minp in (0, 1, span):
        expected = s.ewm(span=span, min_periods=minp, adjust=False).mean().to_numpy()
        np.testing.assert_array_equal(ff._ema(x, span, minp), expected, err_msg=f"minp={minp}")
    expected = s.ewm(alpha=1 / span, min_periods=span, adjust=False).mean().to_numpy()
    np.testing.assert_array_equal(ff._wilder(x, span, span), expected)
