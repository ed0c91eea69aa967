"""All technical features in one numba pass: the fast twin of ``compute_features``.

:func:`feature_matrix` returns the values of
:func:`tradingrl.features.technical.compute_features` (the ``ta`` 0.11 / pandas
reference) as a C-contiguous float64 array of shape ``(n, len(FEATURE_COLUMNS))``
(85 columns today), in :data:`~tradingrl.features.technical.FEATURE_COLUMNS`
order, without building any pandas object, so a serving window's features cost
a small fraction of the reference's time (``benchmarks/bench_feature_kernel.py``
measures both).

Conventions (the same as the reference)
---------------------------------------
* Inputs: five 1-D arrays of equal length in time order, converted with
  ``np.ascontiguousarray(x, dtype=np.float64)``. Prices are assumed positive and
  volume non-negative (the validated contract); no other input is checked.
* Windows are in bars; every feature keeps the reference's units (ratios to the
  close, log returns, oscillators in ta's scales).
* Past-only: the row of bar ``t`` uses bars ``<= t`` only.
* Non-finite results (inf, NaN) are NaN, as ``compute_features`` writes them;
  early rows are NaN where a window is not yet full.

How the pandas semantics are reproduced
---------------------------------------
The rolling and exponential helpers below are transcriptions of pandas 2.x's
window kernels (``pandas/_libs/window/aggregations.pyx``), not textbook
formulas, and every expression keeps the reference's operation order, so that
the results agree to the last bit in almost every cell and, above all, the NaN
pattern agrees exactly (the feature table drops rows with a non-finite
feature, so a different NaN mask would change which rows exist):

* ``rolling(w, min_periods=m).sum/mean``: Kahan running sums with separate add
  and remove compensations; a window whose values are all equal returns that
  value (``mean``) or value * count (``sum``) (pandas' GH#42064 guard); ``mean``
  clamps a result of the wrong sign to 0 when all values share a sign.
* ``rolling(w).var/std`` (``ddof=1``; ta's Bollinger bands use ``ddof=0``):
  Welford's update with Kahan compensation, exactly 0 for a window of equal
  values, negative variance -> std 0 (pandas' ``zsqrt``). So a flat window
  gives std 0 on both sides, and the ratios divided by it (``rv_ratio_5_60``,
  ``bb_pband``, ``log_volume_z20``'s 0.0 case) agree.
* ``rolling(w).max/min``: over the non-NaN values of the window, NaN if fewer
  than ``max(min_periods, 1)`` of them (a monotonic deque here, O(n)).
* ``ewm(..., adjust=False, min_periods=m).mean()``: ``alpha = 1 / (1 + com)``
  with pandas' ``com`` (``(span - 1) / 2``, or ``(1 - a) / a`` for ``alpha=a``);
  the recursion starts at the first non-NaN input (so a chained EMA, such as
  the MACD/PPO/PVO signal, the TRIX/TSI/mass-index stages or STC's smoothings,
  starts where its input's warm-up ends); a NaN inside the series decays the
  old weight and repeats the last value (``ignore_na=False``); the output is
  NaN until ``m`` non-NaN inputs have been seen; an input equal to the running
  value leaves it unchanged.
* Every rolling/ewm input has +-inf replaced by NaN first (pandas'
  ``_prep_values``): e.g. an infinite money-flow multiplier counts as missing.
* With ``min_periods == window`` a single NaN in the window makes the result NaN.

PSAR, ADX, ATR, KAMA, Aroon, CCI, Ulcer index and MFI call the kernels of
:mod:`tradingrl.features.fast_indicators`, which the reference calls too.

Known differences from the reference
------------------------------------
* Logarithms: numpy's ``np.log`` on arrays may use SIMD code (where the CPU
  has it) that differs from the C library's ``log`` used inside the kernel by
  one ulp on a few percent of inputs near 1. ``ret_2`` ..
  ``ret_20``, ``range_hl``, ``body``, the shadows, ``gap``,
  ``parkinson_vol_20``, ``garman_klass_vol_20`` and ``volume_trend_20_60``
  therefore match to ~3e-15 relative, not bit for bit (zero stays exactly zero:
  ``log(1) == 0`` on both sides). The two log series that are later centred,
  the 1-bar log return (``ret_1``, ``rv_*``) and ``log1p(volume)``
  (``log_volume_z20``), are computed with numpy in the wrapper, as in the
  reference, because centring would amplify a last-bit difference.
* Everything else was bit-identical in the tests
  (``tests/unit/test_fast_features.py``, which check every column with
  ``rtol=1e-9, atol=1e-12`` and identical NaN masks on random, synthetic and
  degenerate markets).

Maintenance: the kernel mirrors ``technical._compute`` by hand. Import fails if
the set of ``FEATURE_COLUMNS`` changes (a pure reordering is followed); a
changed formula is caught only by the tests. The kernels are compiled with
``cache=True`` and numba keys its on-disk cache on this file only, so after
editing a kernel of ``fast_indicators`` (compiled into this one) delete
``tradingrl/features/__pycache__/fast_features.*`` (or touch this file).
"""

from __future__ import annotations

import numba
import numpy as np

from tradingrl.features import fast_indicators
from tradingrl.features.technical import FEATURE_COLUMNS

_NAN = np.nan


def _jit_sig(signature: str):
    """``numba.njit`` with one explicit signature, compiled (or loaded from cache) at import.

    The explicit signature stops numba from compiling one specialisation per literal
    window size (it would type ``_ema(x, 12, 12)`` with ``Literal[int](12)``).
    """
    return numba.njit(signature, cache=True, error_model="numpy")  # x/0 -> inf/nan


_SIG_ROLL = "float64[::1](float64[::1], int64, int64)"

# Column order written by the kernel (the literal indices in _kernel follow it).
_KERNEL_COLUMNS: tuple[str, ...] = (
    "ret_1", "ret_2", "ret_5", "ret_10", "ret_20",
    "rv_5", "rv_10", "rv_20", "rv_60", "rv_ratio_5_60",
    "parkinson_vol_20", "garman_klass_vol_20",
    "range_hl", "body", "upper_shadow", "lower_shadow", "gap", "close_location",
    "log_volume_z20", "volume_ratio_5_20", "volume_trend_20_60", "obv_flow_20",
    "sma_ratio_10", "sma_ratio_20", "sma_ratio_50", "sma_ratio_100",
    "ema_ratio_12", "ema_ratio_26",
    "macd", "macd_signal", "macd_diff",
    "adx", "adx_pos", "adx_neg",
    "vortex_pos", "vortex_neg", "vortex_diff",
    "trix", "mass_index", "cci",
    "kst", "kst_signal", "kst_diff",
    "ichimoku_conversion", "ichimoku_base", "ichimoku_a", "ichimoku_b",
    "aroon_up", "aroon_down", "aroon_indicator",
    "stc", "psar_distance", "psar_uptrend",
    "rsi_14", "stoch_rsi", "stoch_rsi_k", "stoch_rsi_d", "tsi", "ultimate_oscillator",
    "stoch_k", "stoch_d", "williams_r", "awesome_oscillator", "kama_ratio", "roc_10",
    "ppo", "ppo_signal", "ppo_hist", "pvo", "pvo_signal", "pvo_hist",
    "atr_14", "bb_pband", "bb_wband", "bb_hband_indicator", "bb_lband_indicator",
    "kc_pband", "kc_wband", "dc_pband", "dc_wband", "ulcer_index",
    "mfi_14", "cmf_20", "force_index_13", "vwap_ratio_14",
)
_N_COLS = 85  # len(_KERNEL_COLUMNS), a literal so that numba's cached kernel sees it
if len(_KERNEL_COLUMNS) != _N_COLS:
    raise ImportError("fast_features: _N_COLS does not match _KERNEL_COLUMNS")

if sorted(_KERNEL_COLUMNS) != sorted(FEATURE_COLUMNS):
    raise ImportError(
        "fast_features is out of date: its columns differ from technical.FEATURE_COLUMNS "
        f"(missing {sorted(set(FEATURE_COLUMNS) - set(_KERNEL_COLUMNS))}, "
        f"extra {sorted(set(_KERNEL_COLUMNS) - set(FEATURE_COLUMNS))})"
    )
# For each FEATURE_COLUMNS position, the kernel's column; None when the orders agree.
_REORDER = (
    None
    if _KERNEL_COLUMNS == FEATURE_COLUMNS
    else np.array([_KERNEL_COLUMNS.index(name) for name in FEATURE_COLUMNS])
)


# --------------------------------------------------------------------------- pandas windows
@_jit_sig("float64(float64)")
def _prep(x):
    """pandas' ``_prep_values`` for one value: +-inf -> NaN."""
    return x if x - x == 0.0 else _NAN


@_jit_sig(_SIG_ROLL)
def _roll_sum(x, w, minp):
    """``pd.Series(x).rolling(w, min_periods=minp).sum()``."""
    n = x.size
    out = np.empty(n)
    sum_x = comp_add = comp_rem = 0.0
    nobs = same = 0
    prev = 0.0
    for i in range(n):
        if i == 0 or w == 1:  # pandas re-initialises when windows stop overlapping
            s = max(0, i - w + 1)
            sum_x = comp_add = comp_rem = 0.0
            nobs = same = 0
            prev = _prep(x[s])
            lo = s
        else:
            lo = i
            if i >= w:
                r = x[i - w]
                if r - r == 0.0:  # not NaN/inf
                    nobs -= 1
                    y = -r - comp_rem
                    t = sum_x + y
                    comp_rem = t - sum_x - y
                    sum_x = t
        for j in range(lo, i + 1):
            a = x[j]
            if a - a == 0.0:
                nobs += 1
                y = a - comp_add
                t = sum_x + y
                comp_add = t - sum_x - y
                sum_x = t
                if a == prev:
                    same += 1
                else:
                    same = 1
                prev = a
        if nobs == 0 and minp == 0:
            out[i] = 0.0
        elif nobs >= minp:
            out[i] = prev * nobs if same >= nobs else sum_x
        else:
            out[i] = _NAN
    return out


@_jit_sig(_SIG_ROLL)
def _roll_mean(x, w, minp):
    """``pd.Series(x).rolling(w, min_periods=minp).mean()``."""
    n = x.size
    out = np.empty(n)
    sum_x = comp_add = comp_rem = 0.0
    nobs = neg = same = 0
    prev = 0.0
    for i in range(n):
        if i == 0 or w == 1:
            s = max(0, i - w + 1)
            sum_x = comp_add = comp_rem = 0.0
            nobs = neg = same = 0
            prev = _prep(x[s])
            lo = s
        else:
            lo = i
            if i >= w:
                r = x[i - w]
                if r - r == 0.0:  # not NaN/inf
                    nobs -= 1
                    y = -r - comp_rem
                    t = sum_x + y
                    comp_rem = t - sum_x - y
                    sum_x = t
                    if np.signbit(r):
                        neg -= 1
        for j in range(lo, i + 1):
            a = x[j]
            if a - a == 0.0:
                nobs += 1
                y = a - comp_add
                t = sum_x + y
                comp_add = t - sum_x - y
                sum_x = t
                if np.signbit(a):
                    neg += 1
                if a == prev:
                    same += 1
                else:
                    same = 1
                prev = a
        if nobs >= minp and nobs > 0:
            res = sum_x / nobs
            if same >= nobs:
                res = prev
            elif (neg == 0 and res < 0) or (neg == nobs and res > 0):
                res = 0.0  # all values share a sign: clamp a wrong-signed mean
            out[i] = res
        else:
            out[i] = _NAN
    return out


@_jit_sig("float64[::1](float64[::1], int64, int64, int64)")
def _roll_std(x, w, minp, ddof):
    """``pd.Series(x).rolling(w, min_periods=minp).std(ddof=ddof)``."""
    n = x.size
    out = np.empty(n)
    minp = max(minp, 1)
    mean_x = ssqdm = comp_add = comp_rem = 0.0
    nobs = 0.0
    same = 0
    prev = 0.0
    for i in range(n):
        if i == 0 or w == 1:
            s = max(0, i - w + 1)
            mean_x = ssqdm = comp_add = comp_rem = 0.0
            nobs = 0.0
            same = 0
            prev = _prep(x[s])
            lo = s
        else:
            lo = i
            if i >= w:
                r = x[i - w]
                if r - r == 0.0:  # not NaN/inf
                    nobs -= 1.0
                    if nobs != 0.0:
                        prev_mean = mean_x - comp_rem
                        y = r - comp_rem
                        t = y - mean_x
                        comp_rem = t + mean_x - y
                        mean_x = mean_x - t / nobs
                        ssqdm = ssqdm - (r - prev_mean) * (r - mean_x)
                    else:
                        mean_x = 0.0
                        ssqdm = 0.0
        for j in range(lo, i + 1):
            a = x[j]
            if a - a == 0.0:
                nobs += 1.0
                if a == prev:
                    same += 1
                else:
                    same = 1
                prev = a
                prev_mean = mean_x - comp_add
                y = a - comp_add
                t = y - mean_x
                comp_add = t + mean_x - y
                mean_x = mean_x + t / nobs
                ssqdm = ssqdm + (a - prev_mean) * (a - mean_x)
        if nobs >= minp and nobs > ddof:
            if nobs == 1.0 or same >= nobs:
                var = 0.0
            else:
                var = ssqdm / (nobs - ddof)
            out[i] = np.sqrt(var) if var >= 0.0 else 0.0  # pandas' zsqrt
        else:
            out[i] = _NAN
    return out


@_jit_sig("float64[::1](float64[::1], int64, int64, boolean)")
def _roll_extreme(x, w, minp, is_max):
    """``pd.Series(x).rolling(w, min_periods=minp).max()`` (or ``.min()``).

    The extreme of the window's non-NaN values (NaN if fewer than ``max(minp, 1)``), kept
    with a monotonic deque of indices ``q[head:tail]``: O(n).
    """
    n = x.size
    out = np.empty(n)
    q = np.empty(n, np.int64)
    head = tail = 0
    cnt = 0  # observations in the window
    for i in range(n):
        a = x[i]
        if a - a == 0.0:  # not NaN/inf
            cnt += 1
            if is_max:
                while tail > head and x[q[tail - 1]] <= a:
                    tail -= 1
            else:
                while tail > head and x[q[tail - 1]] >= a:
                    tail -= 1
            q[tail] = i
            tail += 1
        s = i - w + 1
        if s > 0:
            b = x[s - 1]
            if b - b == 0.0:
                cnt -= 1
            while tail > head and q[head] < s:
                head += 1
        out[i] = x[q[head]] if cnt > 0 and cnt >= minp else _NAN
    return out


@_jit_sig(_SIG_ROLL)
def _roll_max(x, w, minp):
    """``pd.Series(x).rolling(w, min_periods=minp).max()`` (NaN skipped)."""
    return _roll_extreme(x, w, minp, True)


@_jit_sig(_SIG_ROLL)
def _roll_min(x, w, minp):
    """``pd.Series(x).rolling(w, min_periods=minp).min()`` (NaN skipped)."""
    return _roll_extreme(x, w, minp, False)


@_jit_sig("float64[::1](float64[::1], float64, int64)")
def _ewm(x, alpha, minp):
    """``pd.Series(x).ewm(alpha=alpha, adjust=False, min_periods=minp).mean()``.

    ``alpha`` must be pandas' own ``1 / (1 + com)`` (see :func:`_ema`, :func:`_wilder`).
    """
    n = x.size
    out = np.empty(n)
    if n == 0:
        return out
    minp = max(minp, 1)
    old_wt_factor = 1.0 - alpha
    weighted = _prep(x[0])
    nobs = 0 if np.isnan(weighted) else 1
    out[0] = weighted if nobs >= minp else _NAN
    old_wt = 1.0
    for i in range(1, n):
        cur = x[i]
        is_obs = cur - cur == 0.0  # inf counts as NaN
        if is_obs:
            nobs += 1
        if not np.isnan(weighted):
            old_wt *= old_wt_factor
            if is_obs:
                if weighted != cur:
                    weighted = old_wt * weighted + alpha * cur
                    weighted /= old_wt + alpha
                old_wt = 1.0
        elif is_obs:
            weighted = cur
        out[i] = weighted if nobs >= minp else _NAN
    return out


@_jit_sig(_SIG_ROLL)
def _ema(x, span, minp):
    """``x.ewm(span=span, min_periods=minp, adjust=False).mean()`` (ta's ``_ema``)."""
    com = (span - 1) / 2
    return _ewm(x, 1.0 / (1.0 + com), minp)


@_jit_sig(_SIG_ROLL)
def _wilder(x, window, minp):
    """``x.ewm(alpha=1 / window, min_periods=minp, adjust=False).mean()`` (ta's RSI)."""
    a = 1 / window
    com = (1 - a) / a
    return _ewm(x, 1.0 / (1.0 + com), minp)


# --------------------------------------------------------------------------- the kernel
@_jit_sig("int64(int64)")
def _i64(x):
    """A plain (non-literal) int64, so that the lazily compiled ``fast_indicators``
    kernels are specialised once (as their wrappers call them), not once per window."""
    return x


@_jit_sig("float64[::1](float64[::1], float64[::1], float64[::1], float64)")
def _stoch_of(x, lo, hi, scale):
    """``scale * (x - lo) / (hi - lo)`` elementwise (pandas' evaluation order)."""
    out = np.empty(x.size)
    for i in range(x.size):
        out[i] = scale * (x[i] - lo[i]) / (hi[i] - lo[i])
    return out


@_jit_sig("float64[:, ::1](float64[:, ::1])")
def _to_rows(cols):
    """Transpose (features, bars) -> (bars, features) in cache-sized blocks; inf -> NaN."""
    m, n = cols.shape
    out = np.empty((n, m))
    for start in range(0, n, 8):  # 8 bars: one cache line of each feature row
        for i in range(start, min(start + 8, n)):
            for j in range(m):
                x = cols[j, i]
                out[i, j] = x if x - x == 0.0 else _NAN
    return out


@_jit_sig("float64[:, ::1](" + ", ".join(["float64[::1]"] * 7) + ", float64)")
def _kernel(o, h, lo, c, v, r1, log_v, log2):
    """The (bars, features) matrix in ``_KERNEL_COLUMNS`` order; see :func:`feature_matrix`.

    ``r1`` is ``log(c / c.shift(1))`` and ``log_v`` is ``log1p(v)``, both from numpy;
    ``log2`` is ``np.log(2.0)``. Columns are filled as rows of a (features, bars)
    buffer (contiguous writes) and transposed at the end.
    """
    n = c.size
    out = np.empty((_N_COLS, n))
    nan = _NAN

    # ---------------------------------------------------------------- shifts, shared series
    diff = np.empty(n)  # c.diff()
    for i in range(n):
        diff[i] = c[i] - c[i - 1] if i > 0 else nan

    # ---------------------------------------------------------------- returns, volatility
    out[0] = r1
    for col, k in ((1, 2), (2, 5), (3, 10), (4, 20)):
        for i in range(n):
            out[col, i] = np.log(c[i] / c[i - k]) if i >= k else nan
    rv5 = _roll_std(r1, 5, 5, 1)
    rv60 = _roll_std(r1, 60, 60, 1)
    out[5] = rv5
    out[6] = _roll_std(r1, 10, 10, 1)
    out[7] = _roll_std(r1, 20, 20, 1)
    out[8] = rv60
    out[9] = rv5 / rv60
    hl = np.empty(n)
    co = np.empty(n)
    hl2 = np.empty(n)
    gk = np.empty(n)
    k_gk = 2.0 * log2 - 1.0
    for i in range(n):
        hl[i] = np.log(h[i] / lo[i])
        co[i] = np.log(c[i] / o[i])
        hl2[i] = hl[i] * hl[i]
        gk[i] = 0.5 * hl2[i] - k_gk * (co[i] * co[i])
    park = _roll_mean(hl2, 20, 20)
    gkm = _roll_mean(gk, 20, 20)
    for i in range(n):
        out[10, i] = np.sqrt(park[i] / (4.0 * log2))
        out[11, i] = np.sqrt(max(gkm[i], 0.0))  # clip(lower=0); max(nan, 0.0) is nan
        out[12, i] = hl[i]
        out[13, i] = co[i]
        out[14, i] = np.log(h[i] / max(o[i], c[i]))
        out[15, i] = np.log(min(o[i], c[i]) / lo[i])
        out[16, i] = np.log(o[i] / c[i - 1]) if i > 0 else nan
        span = h[i] - lo[i]
        out[17, i] = (c[i] - lo[i]) / span if span > 0 else 0.5

    # ---------------------------------------------------------------- volume
    signed = np.empty(n)
    for i in range(n):
        signed[i] = np.sign(diff[i]) * v[i]
    lv_mean = _roll_mean(log_v, 20, 20)
    lv_std = _roll_std(log_v, 20, 20, 1)
    v5 = _roll_mean(v, 5, 5)
    v20 = _roll_mean(v, 20, 20)
    v60 = _roll_mean(v, 60, 60)
    s_signed = _roll_sum(signed, 20, 20)
    s_v20 = _roll_sum(v, 20, 20)
    for i in range(n):
        sp = lv_std[i]
        out[18, i] = (log_v[i] - lv_mean[i]) / sp if sp != 0 else 0.0
        out[19, i] = v5[i] / v20[i]
        out[20, i] = np.log(v20[i] / v60[i])
        out[21, i] = s_signed[i] / s_v20[i]

    # ---------------------------------------------------------------- trend
    for col, k in ((22, 10), (23, 20), (24, 50), (25, 100)):
        m = _roll_mean(c, k, k)
        for i in range(n):
            out[col, i] = c[i] / m[i] - 1.0
    ema12 = _ema(c, 12, 12)
    ema26 = _ema(c, 26, 26)
    macd = ema12 - ema26
    macd_sig = _ema(macd, 9, 9)
    for i in range(n):
        out[26, i] = c[i] / ema12[i] - 1.0
        out[27, i] = c[i] / ema26[i] - 1.0
        out[28, i] = macd[i] / c[i]
        out[29, i] = macd_sig[i] / c[i]
        out[30, i] = (macd[i] - macd_sig[i]) / c[i]
    adx, adx_pos, adx_neg = fast_indicators._adx_kernel(h, lo, c, _i64(14))
    out[31] = adx
    out[32] = adx_pos
    out[33] = adx_neg

    # vortex: the first bar's true range is high - low (np.fmax skips the NaN shift)
    tr_vx = np.empty(n)
    vm_p = np.empty(n)
    vm_m = np.empty(n)
    for i in range(n):
        if i == 0:
            tr_vx[i] = h[i] - lo[i]
            vm_p[i] = nan
            vm_m[i] = nan
        else:
            pc = c[i - 1]
            tr_vx[i] = max(h[i] - lo[i], max(abs(h[i] - pc), abs(lo[i] - pc)))
            vm_p[i] = abs(h[i] - lo[i - 1])
            vm_m[i] = abs(lo[i] - h[i - 1])
    tr14 = _roll_sum(tr_vx, 14, 14)
    vip = _roll_sum(vm_p, 14, 14) / tr14
    vin = _roll_sum(vm_m, 14, 14) / tr14
    out[34] = vip
    out[35] = vin
    out[36] = vip - vin

    e3 = _ema(_ema(_ema(c, 15, 15), 15, 15), 15, 15)
    out[37, 0] = nan
    for i in range(1, n):
        out[37, i] = 100.0 * (e3[i] / e3[i - 1] - 1.0)

    amp = h - lo
    m1 = _ema(amp, 9, 9)
    m2 = _ema(m1, 9, 9)
    out[38] = _roll_sum(m1 / m2, 25, 25)
    out[39] = fast_indicators._cci_kernel(h, lo, c, _i64(20), 0.015)

    # KST (technical.kst: ta's formula without the future-mean fill)
    kst = np.zeros(n)
    for wgt, sh, win in ((1.0, 10, 10), (2.0, 15, 10), (3.0, 20, 10), (4.0, 30, 15)):
        roc = np.empty(n)
        for i in range(n):
            roc[i] = c[i] / c[i - sh] - 1.0 if i >= sh else nan
        rs = _roll_mean(roc, win, win)
        if wgt == 1.0:
            kst[:] = rs
        else:
            kst += wgt * rs
    kst *= 100.0
    kst_sig = _roll_mean(kst, 9, 9)
    out[40] = kst
    out[41] = kst_sig
    out[42] = kst - kst_sig

    conv = 0.5 * (_roll_max(h, 9, 9) + _roll_min(lo, 9, 9))
    base = 0.5 * (_roll_max(h, 26, 26) + _roll_min(lo, 26, 26))
    span_b = 0.5 * (_roll_max(h, 52, 0) + _roll_min(lo, 52, 0))
    for i in range(n):
        out[43, i] = c[i] / conv[i] - 1.0
        out[44, i] = c[i] / base[i] - 1.0
        out[45, i] = c[i] / (0.5 * (conv[i] + base[i])) - 1.0
        out[46, i] = c[i] / span_b[i] - 1.0
    ar_up, ar_down = fast_indicators._aroon_kernel(h, lo, _i64(25))
    out[47] = ar_up
    out[48] = ar_down
    out[49] = ar_up - ar_down

    # STC (window_slow=50, window_fast=23, cycle=10, smooth1=smooth2=3)
    stc_macd = _ema(c, 23, 23) - _ema(c, 50, 50)
    stoch_k = _stoch_of(stc_macd, _roll_min(stc_macd, 10, 10), _roll_max(stc_macd, 10, 10), 100.0)
    stoch_d = _ema(stoch_k, 3, 3)
    stoch_kd = _stoch_of(stoch_d, _roll_min(stoch_d, 10, 10), _roll_max(stoch_d, 10, 10), 100.0)
    out[50] = _ema(stoch_kd, 3, 3)

    psar, psar_up, _psar_down = fast_indicators._psar_kernel(h, lo, c, 0.02, 0.2)
    for i in range(n):
        out[51, i] = (c[i] - psar[i]) / c[i]
        out[52, i] = 0.0 if np.isnan(psar_up[i]) else 1.0

    # ---------------------------------------------------------------- momentum
    up = np.empty(n)
    dn = np.empty(n)
    for i in range(n):
        d = diff[i]
        up[i] = d if d > 0 else 0.0
        dn[i] = -(d if d < 0 else 0.0)
    ema_up = _wilder(up, 14, 14)
    ema_dn = _wilder(dn, 14, 14)
    rsi = np.empty(n)
    for i in range(n):
        rsi[i] = 100.0 if ema_dn[i] == 0 else 100 - (100 / (1 + ema_up[i] / ema_dn[i]))
    out[53] = rsi
    rsi_lo = _roll_min(rsi, 14, 14)
    srsi = _stoch_of(rsi, rsi_lo, _roll_max(rsi, 14, 14), 1.0)
    srsi_k = _roll_mean(srsi, 3, 3)
    out[54] = srsi
    out[55] = srsi_k
    out[56] = _roll_mean(srsi_k, 3, 3)

    abs_diff = np.abs(diff)
    tsi_num = _ema(_ema(diff, 25, 25), 13, 13)
    tsi_den = _ema(_ema(abs_diff, 25, 25), 13, 13)
    out[57] = (tsi_num / tsi_den) * 100

    # ultimate oscillator: true range skips the NaN shift, buying pressure does not
    tr_uo = np.empty(n)
    bp = np.empty(n)
    for i in range(n):
        if i == 0:
            tr_uo[i] = h[i] - lo[i]
            bp[i] = nan
        else:
            pc = c[i - 1]
            tr_uo[i] = max(h[i] - lo[i], max(abs(h[i] - pc), abs(lo[i] - pc)))
            bp[i] = c[i] - min(lo[i], pc)
    avg_s = _roll_sum(bp, 7, 7) / _roll_sum(tr_uo, 7, 7)
    avg_m = _roll_sum(bp, 14, 14) / _roll_sum(tr_uo, 14, 14)
    avg_l = _roll_sum(bp, 28, 28) / _roll_sum(tr_uo, 28, 28)
    out[58] = 100.0 * ((4.0 * avg_s) + (2.0 * avg_m) + (1.0 * avg_l)) / 7.0

    low14 = _roll_min(lo, 14, 14)
    high14 = _roll_max(h, 14, 14)
    stoch = _stoch_of(c, low14, high14, 100.0)
    out[59] = stoch
    out[60] = _roll_mean(stoch, 3, 3)
    for i in range(n):
        out[61, i] = -100.0 * (high14[i] - c[i]) / (high14[i] - low14[i])
    med = 0.5 * (h + lo)
    ao = _roll_mean(med, 5, 5) - _roll_mean(med, 34, 34)
    kama = fast_indicators._kama_kernel(c, _i64(10), _i64(2), _i64(30))
    for i in range(n):
        out[62, i] = ao[i] / c[i]
        out[63, i] = c[i] / kama[i] - 1.0
        out[64, i] = ((c[i] - c[i - 10]) / c[i - 10]) * 100 if i >= 10 else nan

    # PPO on close (the MACD's EMAs), PVO on volume
    for base_col, fast, slow in ((65, ema12, ema26), (68, _ema(v, 12, 12), _ema(v, 26, 26))):
        ppo = ((fast - slow) / slow) * 100
        sig = _ema(ppo, 9, 9)
        out[base_col] = ppo
        out[base_col + 1] = sig
        out[base_col + 2] = ppo - sig

    # ---------------------------------------------------------------- volatility bands
    out[71] = fast_indicators._atr_kernel(h, lo, c, _i64(14)) / c
    c20 = _roll_mean(c, 20, 20)
    bb_std = _roll_std(c, 20, 20, 0)
    for i in range(n):
        hb = c20[i] + 2 * bb_std[i]
        lb = c20[i] - 2 * bb_std[i]
        out[72, i] = (c[i] - lb) / (hb - lb) if hb != lb else nan
        out[73, i] = ((hb - lb) / c20[i]) * 100
        out[74, i] = 1.0 if c[i] > hb else 0.0
        out[75, i] = 1.0 if c[i] < lb else 0.0
    tp = np.empty(n)
    tp_hi = np.empty(n)
    tp_lo = np.empty(n)
    tpv = np.empty(n)
    for i in range(n):
        tp[i] = (h[i] + lo[i] + c[i]) / 3.0
        tp_hi[i] = ((4 * h[i]) - (2 * lo[i]) + c[i]) / 3.0
        tp_lo[i] = ((-2 * h[i]) + (4 * lo[i]) + c[i]) / 3.0
        tpv[i] = tp[i] * v[i]
    kc_mid = _roll_mean(tp, 20, 20)
    kc_hi = _roll_mean(tp_hi, 20, 0)
    kc_lo = _roll_mean(tp_lo, 20, 0)
    dc_hi = _roll_max(h, 20, 20)
    dc_lo = _roll_min(lo, 20, 20)
    for i in range(n):
        out[76, i] = (c[i] - kc_lo[i]) / (kc_hi[i] - kc_lo[i])
        out[77, i] = ((kc_hi[i] - kc_lo[i]) / kc_mid[i]) * 100
        out[78, i] = (c[i] - dc_lo[i]) / (dc_hi[i] - dc_lo[i])
        out[79, i] = ((dc_hi[i] - dc_lo[i]) / c20[i]) * 100
    out[80] = fast_indicators._ulcer_kernel(c, _i64(14))

    # ---------------------------------------------------------------- volume-price
    out[81] = fast_indicators._mfi_kernel(h, lo, c, v, _i64(14))
    mfv = np.empty(n)
    fi = np.empty(n)
    for i in range(n):
        m = ((c[i] - lo[i]) - (h[i] - c[i])) / (h[i] - lo[i])
        if np.isnan(m):  # fillna(0.0): 0/0 on a flat bar (inf is kept)
            m = 0.0
        mfv[i] = m * v[i]
        fi[i] = diff[i] * v[i]
    cmf = _roll_sum(mfv, 20, 20) / s_v20
    force = _ema(fi, 13, 13)
    vwap = _roll_sum(tpv, 14, 14) / _roll_sum(v, 14, 14)
    for i in range(n):
        out[82, i] = cmf[i]
        out[83, i] = force[i] / (c[i] * v20[i])
        out[84, i] = c[i] / vwap[i] - 1.0

    return _to_rows(out)


_LOG2 = float(np.log(2.0))  # the reference's constant, from numpy


def feature_matrix(open_, high, low, close, volume) -> np.ndarray:
    """The features of ``compute_features`` as a float64 array, shape ``(n, 85)``.

    ``compute_features(o, h, l, c, v).to_numpy()`` without pandas: columns in
    :data:`~tradingrl.features.technical.FEATURE_COLUMNS` order (85 today), rows
    are the bars in the inputs' order, C-contiguous. Values agree with the
    reference bit for bit except for a few purely log-based columns (~3e-15
    relative; see the module docstring), with the identical NaN pattern: NaN
    during each indicator's warm-up and wherever the reference gives a
    non-finite value. Past-only: row ``t`` depends on bars ``<= t`` only.

    Inputs are 1-D sequences of equal length (prices positive, volume
    non-negative, as the validated contract guarantees; not checked here);
    raises ``ValueError`` for other shapes or unequal lengths. ``n == 0`` gives
    an empty ``(0, 85)`` array.
    """
    arrs = [np.ascontiguousarray(x, dtype=np.float64) for x in (open_, high, low, close, volume)]
    for a in arrs:
        if a.ndim != 1:
            raise ValueError(f"expected 1-D arrays, got shape {a.shape}")
    if len({a.size for a in arrs}) > 1:
        raise ValueError(f"input lengths differ: {[a.size for a in arrs]}")
    o, h, lo, c, v = arrs
    # The two log series that are later centred (realised vol, log-volume z-score) come
    # from numpy's own log/log1p, as in the reference: their last-bit differences would
    # be amplified by the centring.
    r1 = np.empty(c.size)
    if c.size:
        r1[0] = np.nan
        np.divide(c[1:], c[:-1], out=r1[1:])
        np.log(r1[1:], out=r1[1:])
    out = _kernel(o, h, lo, c, v, r1, np.log1p(v), _LOG2)
    return out if _REORDER is None else out[:, _REORDER]
