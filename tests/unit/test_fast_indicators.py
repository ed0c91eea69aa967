"""Parity of ``tradingrl.features.fast_indicators`` with ``ta`` 0.11, and past-only checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

ta = pytest.importorskip("ta")

from tradingrl.features import fast_indicators as fi

RTOL = ATOL = 1e-9


def _ohlcv(seed: int, n: int, flat: bool = False, tick: bool = False):
    """Geometric random walk OHLCV.

    ``tick`` rounds prices to 0.1 and volumes to 10k, which produces ties (equal highs,
    equal typical prices, equal volumes). ``flat`` adds three stretches where all four
    prices and the volume stay constant.
    """
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    o = c * np.exp(rng.normal(0.0, 0.003, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
    v = rng.lognormal(10.0, 1.0, n)
    if tick:
        h, lo, c = np.round(h, 1), np.round(lo, 1), np.round(c, 1)
        v = np.round(v, -4)
    if flat and n:
        length = max(5, min(60, n // 3))
        for s in rng.integers(0, n, 3):
            e = min(n, s + length)
            h[s:e] = lo[s:e] = c[s:e] = c[s]
            v[s:e] = v[s]
    return h, lo, c, v


# (seed, n, flat, tick): short series, flat stretches, ties, longer series
CASES = [
    (0, 30, False, False),
    (1, 30, True, True),
    (2, 45, False, True),
    (3, 300, True, False),
    (4, 300, False, True),
    (5, 1500, False, False),
    (6, 1500, True, True),
]
CASE_IDS = [f"seed{s}-n{n}{'-flat' if f else ''}{'-tick' if t else ''}" for s, n, f, t in CASES]


def _s(x: np.ndarray) -> pd.Series:
    return pd.Series(x)  # RangeIndex


def _or_nan(fn, n: int) -> np.ndarray:
    """ta's output, or all-NaN where ta raises because the series is too short."""
    try:
        return np.asarray(fn(), dtype=np.float64)
    except (IndexError, ValueError):
        return np.full(n, np.nan)


def _placeholder_to_nan(ref: np.ndarray, upto: int) -> np.ndarray:
    """ta writes 0.0 during warm-up where fast_indicators writes NaN (documented)."""
    ref = ref.copy()
    head = ref[:upto]
    assert np.all((head == 0.0) | np.isnan(head)), "ta warm-up is no longer a 0.0 placeholder"
    ref[:upto] = np.nan
    return ref


# --------------------------------------------------------------------------- references
def _ref_psar(h, lo, c, v, **kw):
    t = ta.trend.PSARIndicator(_s(h), _s(lo), _s(c), fillna=False, **kw)
    return [t.psar(), t.psar_up(), t.psar_down(), t.psar_up_indicator(), t.psar_down_indicator()]


def _ref_adx(h, lo, c, v, window=14):
    n = c.size
    try:
        t = ta.trend.ADXIndicator(_s(h), _s(lo), _s(c), window=window, fillna=False)
    except (IndexError, ValueError):
        return [np.full(n, np.nan)] * 3
    return [
        _placeholder_to_nan(_or_nan(t.adx, n), 2 * window - 1),
        _placeholder_to_nan(_or_nan(t.adx_pos, n), window + 1),
        _placeholder_to_nan(_or_nan(t.adx_neg, n), window + 1),
    ]


def _ref_atr(h, lo, c, v, window=14):
    def fn():
        return ta.volatility.AverageTrueRange(
            _s(h), _s(lo), _s(c), window=window, fillna=False
        ).average_true_range()

    return [_placeholder_to_nan(_or_nan(fn, c.size), window - 1)]


def _ref_kama(h, lo, c, v, **kw):
    return [ta.momentum.KAMAIndicator(_s(c), fillna=False, **kw).kama()]


def _ref_aroon(h, lo, c, v, **kw):
    t = ta.trend.AroonIndicator(_s(h), _s(lo), fillna=False, **kw)
    return [t.aroon_up(), t.aroon_down(), t.aroon_indicator()]


def _ref_cci(h, lo, c, v, **kw):
    return [ta.trend.CCIIndicator(_s(h), _s(lo), _s(c), fillna=False, **kw).cci()]


def _ref_ulcer(h, lo, c, v, **kw):
    return [ta.volatility.UlcerIndex(_s(c), fillna=False, **kw).ulcer_index()]


def _ref_nvi(h, lo, c, v):
    t = ta.volume.NegativeVolumeIndexIndicator(_s(c), _s(v), fillna=False)
    return [t.negative_volume_index()]


def _ref_wma(h, lo, c, v, **kw):
    return [ta.trend.WMAIndicator(_s(c), fillna=False, **kw).wma()]


def _ref_mfi(h, lo, c, v, **kw):
    t = ta.volume.MFIIndicator(_s(h), _s(lo), _s(c), _s(v), fillna=False, **kw)
    return [t.money_flow_index()]


def _tup(x):
    return tuple(x) if isinstance(x, tuple) else (x,)


# name -> (ours(h, l, c, v, **kw) -> tuple of arrays, ta reference, non-default kwargs)
INDICATORS = {
    "psar": (
        lambda h, lo, c, v, **kw: _tup(fi.psar(h, lo, c, **kw)),
        _ref_psar,
        {"step": 0.01, "max_step": 0.1},
    ),
    "adx": (lambda h, lo, c, v, **kw: _tup(fi.adx(h, lo, c, **kw)), _ref_adx, {"window": 5}),
    "average_true_range": (
        lambda h, lo, c, v, **kw: _tup(fi.average_true_range(h, lo, c, **kw)),
        _ref_atr,
        {"window": 7},
    ),
    "kama": (
        lambda h, lo, c, v, **kw: _tup(fi.kama(c, **kw)),
        _ref_kama,
        {"window": 5, "pow1": 3, "pow2": 20},
    ),
    "aroon": (lambda h, lo, c, v, **kw: _tup(fi.aroon(h, lo, **kw)), _ref_aroon, {"window": 7}),
    "cci": (
        lambda h, lo, c, v, **kw: _tup(fi.cci(h, lo, c, **kw)),
        _ref_cci,
        {"window": 10, "constant": 0.02},
    ),
    "ulcer_index": (
        lambda h, lo, c, v, **kw: _tup(fi.ulcer_index(c, **kw)),
        _ref_ulcer,
        {"window": 5},
    ),
    "negative_volume_index": (
        lambda h, lo, c, v: _tup(fi.negative_volume_index(c, v)),
        _ref_nvi,
        None,
    ),
    "wma": (lambda h, lo, c, v, **kw: _tup(fi.wma(c, **kw)), _ref_wma, {"window": 20}),
    "money_flow_index": (
        lambda h, lo, c, v, **kw: _tup(fi.money_flow_index(h, lo, c, v, **kw)),
        _ref_mfi,
        {"window": 5},
    ),
}


def _assert_matches_ta(name: str, data, kwargs: dict) -> None:
    ours_fn, ref_fn, _ = INDICATORS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ta's PSAR emits pandas FutureWarnings
        refs = ref_fn(*data, **kwargs)
    ours = ours_fn(*data, **kwargs)
    assert len(ours) == len(refs)
    for k, (a, r) in enumerate(zip(ours, refs)):
        r = np.asarray(r, dtype=np.float64)
        assert a.dtype == np.float64 and a.shape == r.shape, (name, k)
        np.testing.assert_allclose(
            a, r, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=f"{name} output {k}"
        )


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", list(INDICATORS))
def test_matches_ta_default_params(name, case):
    _assert_matches_ta(name, _ohlcv(*case), {})


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6]], ids=["short", "mid", "long"])
@pytest.mark.parametrize("name", [k for k, v in INDICATORS.items() if v[2]])
def test_matches_ta_other_params(name, case):
    _assert_matches_ta(name, _ohlcv(*case), INDICATORS[name][2])


def test_flat_stretches_exercise_degenerate_paths():
    """The flat case must hit 0/0 (CCI, MFI -> NaN) and ties, otherwise parity proves less."""
    h, lo, c, v = _ohlcv(*CASES[6])
    cci = fi.cci(h, lo, c)
    mfi = fi.money_flow_index(h, lo, c, v)
    assert np.isnan(cci[19:]).any() and np.isfinite(cci[19:]).any()
    assert np.isnan(mfi[13:]).any() and np.isfinite(mfi[13:]).any()
    ar = fi.aroon(h, lo)
    assert (ar.aroon_up[25:] == 0.0).any()  # tie -> oldest bar of the span, as np.argmax
    ui = fi.ulcer_index(c)
    assert (ui[13:] == 0.0).any()


def test_warmup_nan_positions():
    h, lo, c, _ = _ohlcv(7, 200)
    a = fi.adx(h, lo, c, window=14)
    assert np.isnan(a.adx[:27]).all() and np.isfinite(a.adx[27:]).all()
    assert np.isnan(a.adx_pos[:15]).all() and np.isfinite(a.adx_pos[15:]).all()
    atr = fi.average_true_range(h, lo, c, window=14)
    assert np.isnan(atr[:13]).all() and np.isfinite(atr[13:]).all()
    k = fi.kama(c, window=10)
    assert np.isnan(k[:9]).all() and k[9] == c[9]
    ar = fi.aroon(h, lo, window=25)
    assert np.isnan(ar.aroon_up[:25]).all() and np.isfinite(ar.aroon_up[25:]).all()
    p = fi.psar(h, lo, c)
    assert p.psar[0] == c[0] and p.psar[1] == c[1]
    assert np.isnan(p.psar_up[:2]).all() and np.isnan(p.psar_down[:2]).all()
    # exactly one of psar_up / psar_down is set from bar 2 on
    assert (np.isnan(p.psar_up[2:]) != np.isnan(p.psar_down[2:])).all()


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_series(n):
    h, lo, c, v = _ohlcv(8, n)
    assert np.isnan(fi.adx(h, lo, c).adx).all() and fi.adx(h, lo, c).adx.shape == (n,)
    assert np.isnan(fi.average_true_range(h, lo, c)).all()
    assert np.isnan(fi.kama(c)).all() and np.isnan(fi.cci(h, lo, c)).all()
    assert np.isnan(fi.aroon(h, lo).aroon_down).all() and np.isnan(fi.wma(c)).all()
    assert np.isnan(fi.ulcer_index(c)).all()
    assert np.isnan(fi.money_flow_index(h, lo, c, v)).all()
    nvi = fi.negative_volume_index(c, v)
    assert nvi.shape == (n,) and (n == 0 or nvi[0] == 1000.0)
    np.testing.assert_array_equal(fi.psar(h, lo, c).psar[:2], c[:2])  # bars 0, 1 = close


# --------------------------------------------------------------------------- leakage
@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("name", list(INDICATORS))
def test_past_only(name, seed):
    """Output at bar k computed on x[:k+1] equals the output at bar k computed on all of x."""
    ours_fn = INDICATORS[name][0]
    data = _ohlcv(seed, 400, flat=seed == 12, tick=seed == 12)
    full = ours_fn(*data)
    for k in [0, 1, 2, 5, 13, 14, 15, 20, 25, 26, 27, 28, 29, 50, 137, 250, 398, 399]:
        prefix = ours_fn(*(x[: k + 1] for x in data))
        for j, (p, f) in enumerate(zip(prefix, full)):
            np.testing.assert_array_equal(p, f[: k + 1], err_msg=f"{name} output {j}, k={k}")


@pytest.mark.parametrize("name", list(INDICATORS))
def test_future_perturbation_does_not_change_past(name):
    ours_fn = INDICATORS[name][0]
    data = _ohlcv(13, 300)
    base = ours_fn(*data)
    rng = np.random.default_rng(0)
    k = 150
    shocked = []
    for x in data:
        y = x.copy()
        y[k + 1 :] *= np.exp(rng.normal(0.0, 0.2, y.size - k - 1))
        shocked.append(y)
    out = ours_fn(*shocked)
    changed = False
    for b, o in zip(base, out):
        np.testing.assert_array_equal(o[: k + 1], b[: k + 1])
        changed |= not np.array_equal(o[k + 1 :], b[k + 1 :], equal_nan=True)
    assert changed  # the shock must be visible after k, so the check has teeth


# --------------------------------------------------------------------------- wrappers
def test_inputs_are_converted_and_validated():
    h, lo, c, _ = _ohlcv(9, 120)
    # strided / non-float64 / list inputs give the same numbers as contiguous float64
    h2 = np.repeat(h, 2)[::2]
    assert not h2.flags.c_contiguous
    np.testing.assert_array_equal(
        fi.cci(h2, list(lo), c.astype(np.float32).astype(object)),
        fi.cci(h, lo, c.astype(np.float32)),
    )
    with pytest.raises(ValueError):
        fi.adx(h, lo[:-1], c)
    with pytest.raises(ValueError):
        fi.wma(c, window=0)
    with pytest.raises(ValueError):
        fi.kama(c.reshape(2, -1))
