"""Numba versions of the ``ta`` 0.11 indicators that ``ta`` computes with Python loops.

Each public function reproduces one ``ta`` indicator computed with ``fillna=False`` on a
Series with a RangeIndex. Differences from ``ta`` are listed in each docstring. The main one
is that where ``ta`` writes a placeholder ``0.0`` during warm-up (ATR, ADX, +DI, -DI), these
functions write NaN, because a zero ATR/ADX looks like a real reading.

Conventions
-----------
* Inputs are 1-D arrays of equal length, converted with ``np.ascontiguousarray(x, float64)``.
  They are assumed finite (no NaN or inf). ``ta``'s handling of missing values is not
  reproduced.
* Windows are in bars. Outputs are float64 arrays of the input length.
* Every output is past-only: the value at bar ``t`` uses inputs at bars ``<= t`` only.
* To match ``ta`` to the last bit, window sums use numpy's pairwise summation
  (``_np_sum``), and rolling sums/means use pandas' Kahan running sum (``_pd_roll_sum``).
  This also makes flat stretches (0/0 -> NaN) behave exactly as in ``ta``.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

_NAN = np.nan
_jit = numba.njit(cache=True, error_model="numpy")  # x/0 -> inf/nan, as in numpy


# --------------------------------------------------------------------------- helpers
@_jit
def _pw_leaf(a, s, n):
    """numpy's pairwise-sum leaf (``n <= 128``): 8 interleaved accumulators."""
    if n < 8:
        res = 0.0
        for i in range(s, s + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[s], a[s + 1], a[s + 2], a[s + 3]
    r4, r5, r6, r7 = a[s + 4], a[s + 5], a[s + 6], a[s + 7]
    i = 8
    m = n - n % 8
    while i < m:
        r0 += a[s + i]
        r1 += a[s + i + 1]
        r2 += a[s + i + 2]
        r3 += a[s + i + 3]
        r4 += a[s + i + 4]
        r5 += a[s + i + 5]
        r6 += a[s + i + 6]
        r7 += a[s + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[s + i]
        i += 1
    return res


@_jit
def _np_sum(a, s, n):
    """``np.sum(a[s:s+n])`` bit-for-bit (numpy's pairwise summation for float64).

    numpy halves blocks above 128 elements recursively; that recursion is unrolled onto an
    explicit stack here because numba's on-disk cache segfaults on recursive functions.
    """
    if n <= 128:
        return 0.0 + _pw_leaf(a, s, n)
    task_s = np.empty(192, np.int64)  # n == -1 marks "add the top two partial sums"
    task_n = np.empty(192, np.int64)
    vals = np.empty(64)
    nt = 1
    nv = 0
    task_s[0] = s
    task_n[0] = n
    while nt > 0:
        nt -= 1
        ts = task_s[nt]
        tn = task_n[nt]
        if tn == -1:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
        elif tn <= 128:
            vals[nv] = _pw_leaf(a, ts, tn)
            nv += 1
        else:
            n2 = tn // 2
            n2 -= n2 % 8
            task_s[nt], task_n[nt] = 0, -1
            task_s[nt + 1], task_n[nt + 1] = ts + n2, tn - n2
            task_s[nt + 2], task_n[nt + 2] = ts, n2
            nt += 3
    return 0.0 + vals[0]


@_jit
def _pd_roll_sum(x, w, mean):
    """``pd.Series(x).rolling(w).sum()`` (or ``.mean()``), bit-for-bit for finite ``x >= 0``.

    Uses the same Kahan add/remove scheme as pandas and treats runs of equal values the
    same way. pandas' sign clamps in ``mean`` are omitted; they only matter for negative
    inputs.
    """
    n = x.size
    out = np.full(n, _NAN)
    sum_x = comp_add = comp_rem = 0.0
    nobs = same = 0
    prev = 0.0
    for i in range(n):
        if i == 0 or w == 1:  # pandas re-initialises when windows stop overlapping
            sum_x = comp_add = comp_rem = 0.0
            nobs = same = 0
            prev = x[i]
        elif i >= w:  # remove x[i - w]
            nobs -= 1
            y = -x[i - w] - comp_rem
            t = sum_x + y
            comp_rem = t - sum_x - y
            sum_x = t
        v = x[i]  # add x[i]
        nobs += 1
        y = v - comp_add
        t = sum_x + y
        comp_add = t - sum_x - y
        sum_x = t
        if v == prev:
            same += 1
        else:
            same = 1
        prev = v
        if nobs >= w:
            if mean:
                out[i] = prev if same >= nobs else sum_x / nobs
            else:
                out[i] = prev * nobs if same >= nobs else sum_x
    return out


def _arr(x) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    return a


def _arrs(*xs) -> tuple[np.ndarray, ...]:
    arrs = tuple(_arr(x) for x in xs)
    if len({a.size for a in arrs}) > 1:
        raise ValueError(f"input lengths differ: {[a.size for a in arrs]}")
    return arrs


def _check_window(**windows: int) -> None:
    for name, w in windows.items():
        if int(w) != w or w < 1:
            raise ValueError(f"{name} must be a positive integer, got {w!r}")


# --------------------------------------------------------------------------- PSAR
class PSARResult(NamedTuple):
    psar: np.ndarray
    psar_up: np.ndarray
    psar_down: np.ndarray
    psar_up_indicator: np.ndarray
    psar_down_indicator: np.ndarray


@_jit
def _psar_kernel(high, low, close, step, max_step):
    n = close.size
    psar = close.copy()
    up = np.full(n, _NAN)
    down = np.full(n, _NAN)
    if n == 0:
        return psar, up, down
    up_trend = True
    af = step
    hi = high[0]
    lo = low[0]
    for i in range(2, n):
        reversal = False
        if up_trend:
            p = psar[i - 1] + af * (hi - psar[i - 1])
            if low[i] < p:
                reversal = True
                p = hi
                lo = low[i]
                af = step
            else:
                if high[i] > hi:
                    hi = high[i]
                    af = min(af + step, max_step)
                if low[i - 2] < p:
                    p = low[i - 2]
                elif low[i - 1] < p:
                    p = low[i - 1]
        else:
            p = psar[i - 1] - af * (psar[i - 1] - lo)
            if high[i] > p:
                reversal = True
                p = lo
                hi = high[i]
                af = step
            else:
                if low[i] < lo:
                    lo = low[i]
                    af = min(af + step, max_step)
                if high[i - 2] > p:
                    p = high[i - 2]
                elif high[i - 1] > p:
                    p = high[i - 1]
        psar[i] = p
        up_trend = up_trend != reversal
        if up_trend:
            up[i] = p
        else:
            down[i] = p
    return psar, up, down


def psar(high, low, close, step: float = 0.02, max_step: float = 0.20) -> PSARResult:
    """Parabolic SAR, as ``ta.trend.PSARIndicator`` (psar, psar_up, psar_down, indicators).

    ``step``/``max_step`` are acceleration factors (per bar). ``psar`` has price units.
    Bars 0 and 1 equal ``close``, as in ta. ``psar_up``/``psar_down`` hold the SAR on
    up-/down-trend bars and NaN otherwise. The indicator series are 1.0 on the first bar of
    each up/down run (bar 2 counts as a start) and 0.0 elsewhere. Like ta, this is not
    textbook Wilder: reversal is tested before the SAR is clamped to the two prior
    extremes, and that clamp takes ``low[t-2]`` if it is below the SAR, otherwise
    ``low[t-1]``, rather than the minimum of the two (mirrored for highs). Past-only.
    """
    h, lo, c = _arrs(high, low, close)
    p, up, down = _psar_kernel(h, lo, c, float(step), float(max_step))
    up_ind = np.zeros(c.size)
    down_ind = np.zeros(c.size)
    up_ind[1:] = ~np.isnan(up[1:]) & np.isnan(up[:-1])
    down_ind[1:] = ~np.isnan(down[1:]) & np.isnan(down[:-1])
    return PSARResult(p, up, down, up_ind, down_ind)


# --------------------------------------------------------------------------- ADX
class ADXResult(NamedTuple):
    adx: np.ndarray
    adx_pos: np.ndarray
    adx_neg: np.ndarray


@_jit
def _adx_kernel(high, low, close, w):
    n = close.size
    adx = np.full(n, _NAN)
    dip_out = np.full(n, _NAN)
    din_out = np.full(n, _NAN)
    if n < w + 2:
        return adx, dip_out, din_out
    tr = np.zeros(n)
    pos = np.zeros(n)
    neg = np.zeros(n)
    for i in range(1, n):
        pc = close[i - 1]
        tr[i] = max(high[i], pc) - min(low[i], pc)
        up = high[i] - high[i - 1]
        dn = low[i - 1] - low[i]
        if up > dn and up > 0:
            pos[i] = up
        if dn > up and dn > 0:
            neg[i] = dn
    fw = float(w)
    # Wilder running sums; the value for bar d >= w covers bars (d-w, d]
    s_tr = _np_sum(tr, 1, w)
    s_p = _np_sum(pos, 1, w)
    s_n = _np_sum(neg, 1, w)
    dx = np.zeros(n)
    for d in range(w, n):
        if d > w:
            s_tr = s_tr - (s_tr / fw) + tr[d]
            s_p = s_p - (s_p / fw) + pos[d]
            s_n = s_n - (s_n / fw) + neg[d]
        dip = 100 * (s_p / s_tr) if s_tr != 0 else 0.0
        din = 100 * (s_n / s_tr) if s_tr != 0 else 0.0
        if d > w:  # ta leaves bar w at its 0.0 placeholder
            dip_out[d] = dip
            din_out[d] = din
        if dip + din != 0:
            dx[d] = 100 * np.abs((dip - din) / (dip + din))
        if d == 2 * w - 1:
            adx[d] = _np_sum(dx, w, w) / w
        elif d >= 2 * w:
            adx[d] = ((adx[d - 1] * (w - 1)) + dx[d]) / fw
    return adx, dip_out, din_out


def adx(high, low, close, window: int = 14) -> ADXResult:
    """ADX, +DI and -DI (0..100), as ``ta.trend.ADXIndicator`` (adx, adx_pos, adx_neg).

    ``window`` (bars) is used both for the Wilder sums of true range and directional
    movement and for the smoothing of DX. Differs from ta only in warm-up: ta writes 0.0 at
    bars ``< 2*window - 1`` (adx) and ``<= window`` (adx_pos/adx_neg); these are NaN here.
    ta raises for fewer than ``2*window`` bars; here the ADX is then all NaN (and the DIs
    need ``window + 2`` bars). Like ta: a zero true-range sum gives DI = 0, and
    +DI + -DI = 0 gives DX = 0. Past-only (ta is too).
    """
    _check_window(window=window)
    h, lo, c = _arrs(high, low, close)
    return ADXResult(*_adx_kernel(h, lo, c, int(window)))


# --------------------------------------------------------------------------- ATR
@_jit
def _atr_kernel(high, low, close, w):
    n = close.size
    out = np.full(n, _NAN)
    if n < w:
        return out
    tr = np.empty(n)
    tr[0] = high[0] - low[0]
    for i in range(1, n):
        pc = close[i - 1]
        tr[i] = max(high[i] - low[i], abs(high[i] - pc), abs(low[i] - pc))
    out[w - 1] = _np_sum(tr, 0, w) / w
    for i in range(w, n):
        out[i] = (out[i - 1] * (w - 1) + tr[i]) / float(w)
    return out


def average_true_range(high, low, close, window: int = 14) -> np.ndarray:
    """Wilder ATR (price units), as ``ta.volatility.AverageTrueRange.average_true_range``.

    The seed at bar ``window - 1`` is the mean true range of bars ``0..window-1``, with bar
    0's true range being ``high - low``, as in ta. ta writes 0.0 before that bar (NaN here)
    and raises for fewer than ``window`` bars (all NaN here). Past-only.
    """
    _check_window(window=window)
    return _atr_kernel(*_arrs(high, low, close), int(window))


# --------------------------------------------------------------------------- KAMA
@_jit
def _kama_kernel(close, w, pow1, pow2):
    n = close.size
    out = np.full(n, _NAN)
    if n < w:
        return out
    vol = np.zeros(n)  # vol[0] stays 0: ta wraps around to close[-1] (see docstring)
    for i in range(1, n):
        vol[i] = abs(close[i] - close[i - 1])
    den = _pd_roll_sum(vol, w, False)
    fast = 2.0 / (pow1 + 1)
    slow = 2 / (pow2 + 1.0)
    out[w - 1] = close[w - 1]
    for i in range(w, n):
        num = abs(close[i] - close[i - w])
        er = num / den[i] if den[i] != 0 else 0.0
        sc = er * (fast - slow) + slow
        sc = sc * sc
        out[i] = out[i - 1] + sc * (close[i] - out[i - 1])
    return out


def kama(close, window: int = 10, pow1: int = 2, pow2: int = 30) -> np.ndarray:
    """Kaufman adaptive moving average (price units), as ``ta.momentum.KAMAIndicator.kama``.

    ``window`` is the efficiency-ratio window in bars, and ``pow1``/``pow2`` are the fast
    and slow EMA periods in bars. NaN before bar ``window - 1``, which is seeded with
    ``close``. ta builds its ER with ``np.roll``, which wraps around, so its ER at bar
    ``window - 1`` uses ``close[-1]`` (the last bar of the series). That value is only used
    to decide NaN vs not-NaN, because bar ``window - 1`` is seeded with ``close``. So ta's
    output does not leak. Here the wrapped term is 0 instead. The rolling denominator
    removes that term again, and no difference from ta was seen in tests (at most a few ulp
    would be possible in principle). Past-only.
    """
    _check_window(window=window, pow1=pow1, pow2=pow2)
    return _kama_kernel(_arr(close), int(window), int(pow1), int(pow2))


# --------------------------------------------------------------------------- Aroon
class AroonResult(NamedTuple):
    aroon_up: np.ndarray
    aroon_down: np.ndarray
    aroon_indicator: np.ndarray


@_jit
def _aroon_kernel(high, low, w):
    n = high.size
    up = np.full(n, _NAN)
    down = np.full(n, _NAN)
    imax = imin = -1  # absolute index of the first (oldest) extreme in the current span
    for i in range(w, n):
        s = i - w
        if imax < s:  # extreme left the span (or first span): rescan
            imax = s
            for j in range(s + 1, i + 1):
                if high[j] > high[imax]:
                    imax = j
        elif high[i] > high[imax]:  # strictly greater: ties keep the oldest, like np.argmax
            imax = i
        if imin < s:
            imin = s
            for j in range(s + 1, i + 1):
                if low[j] < low[imin]:
                    imin = j
        elif low[i] < low[imin]:
            imin = i
        up[i] = float(imax - s) / w * 100
        down[i] = float(imin - s) / w * 100
    return up, down


def aroon(high, low, window: int = 25) -> AroonResult:
    """Aroon up/down/indicator (0..100), as ``ta.trend.AroonIndicator``.

    Uses ``window + 1`` bars (the current bar and the ``window`` before it). The value is
    ``100 * (position of the extreme in that span) / window``. For ties ta takes the oldest
    extreme (``np.argmax``), and so does this. NaN before bar ``window``. Past-only.
    """
    _check_window(window=window)
    h, lo = _arrs(high, low)
    up, down = _aroon_kernel(h, lo, int(window))
    return AroonResult(up, down, up - down)


# --------------------------------------------------------------------------- CCI
@_jit
def _cci_kernel(high, low, close, w, constant):
    n = close.size
    out = np.full(n, _NAN)
    tp = (high + low + close) / 3.0
    ma = _pd_roll_sum(tp, w, True)
    dev = np.empty(w)
    for i in range(w - 1, n):
        s = i - w + 1
        m = _np_sum(tp, s, w) / w
        for j in range(w):
            dev[j] = abs(tp[s + j] - m)
        mad = _np_sum(dev, 0, w) / w
        out[i] = (tp[i] - ma[i]) / (constant * mad)
    return out


def cci(high, low, close, window: int = 20, constant: float = 0.015) -> np.ndarray:
    """Commodity Channel Index (unitless), as ``ta.trend.CCIIndicator.cci``.

    ``(tp - SMA_window(tp)) / (constant * MAD_window(tp))`` with ``tp = (h + l + c) / 3``.
    NaN before bar ``window - 1``. A fully flat window gives 0/0 = NaN, as in ta.
    Past-only.
    """
    _check_window(window=window)
    return _cci_kernel(*_arrs(high, low, close), int(window), float(constant))


# --------------------------------------------------------------------------- Ulcer
@_jit
def _ulcer_kernel(close, w):
    n = close.size
    out = np.full(n, _NAN)
    r = np.empty(n)
    for i in range(n):
        m = close[i]
        for j in range(max(0, i - w + 1), i):
            m = max(m, close[j])
        r[i] = ((100 * (close[i] - m)) / m) ** 2 / w
    for i in range(w - 1, n):
        out[i] = np.sqrt(_np_sum(r, i - w + 1, w))
    return out


def ulcer_index(close, window: int = 14) -> np.ndarray:
    """Ulcer Index (percent), as ``ta.volatility.UlcerIndex.ulcer_index``.

    This is the RMS, over ``window`` bars, of the percent drawdown from the running
    ``window``-bar max. The max uses ``min_periods=1``, as in ta. NaN before bar
    ``window - 1``. Past-only.
    """
    _check_window(window=window)
    return _ulcer_kernel(_arr(close), int(window))


# --------------------------------------------------------------------------- NVI
@_jit
def _nvi_kernel(close, volume):
    n = close.size
    out = np.empty(n)
    if n == 0:
        return out
    out[0] = 1000.0
    for i in range(1, n):
        if volume[i - 1] > volume[i]:
            out[i] = out[i - 1] * (1.0 + (close[i] / close[i - 1] - 1))
        else:
            out[i] = out[i - 1]
    return out


def negative_volume_index(close, volume) -> np.ndarray:
    """Negative Volume Index (index points, starts at 1000).

    As ``ta.volume.NegativeVolumeIndexIndicator``. It compounds the close-to-close return on
    bars whose volume fell from the previous bar. It has no warm-up NaN. Past-only.
    """
    return _nvi_kernel(*_arrs(close, volume))


# --------------------------------------------------------------------------- WMA
@_jit
def _wma_kernel(close, w):
    n = close.size
    out = np.full(n, _NAN)
    wt = np.empty(w)
    for k in range(w):
        wt[k] = (k + 1) * 2 / (w * (w + 1))
    buf = np.empty(w)
    for i in range(w - 1, n):
        s = i - w + 1
        for k in range(w):
            buf[k] = wt[k] * close[s + k]
        out[i] = _np_sum(buf, 0, w)
    return out


def wma(close, window: int = 9) -> np.ndarray:
    """Linearly weighted moving average (price units), as ``ta.trend.WMAIndicator.wma``.

    The newest of the ``window`` bars has weight ``window``. NaN before bar
    ``window - 1``. Past-only.
    """
    _check_window(window=window)
    return _wma_kernel(_arr(close), int(window))


# --------------------------------------------------------------------------- MFI
@_jit
def _mfi_kernel(high, low, close, volume, w):
    n = close.size
    out = np.full(n, _NAN)
    tp = (high + low + close) / 3.0
    mf = np.empty(n)
    for i in range(n):
        ud = 0.0
        if i > 0 and tp[i] > tp[i - 1]:
            ud = 1.0
        elif i > 0 and tp[i] < tp[i - 1]:
            ud = -1.0
        mf[i] = tp[i] * volume[i] * ud
    bp = np.empty(w)
    bn = np.empty(w)
    for i in range(w - 1, n):
        s = i - w + 1
        for j in range(w):
            x = mf[s + j]
            bp[j] = max(x, 0.0)  # ta: np.where(x >= 0, x, 0)
            bn[j] = min(0.0, x)  # ta: np.where(x < 0, x, 0)
        ratio = _np_sum(bp, 0, w) / abs(_np_sum(bn, 0, w))
        out[i] = 100 - (100 / (1 + ratio))
    return out


def money_flow_index(high, low, close, volume, window: int = 14) -> np.ndarray:
    """Money Flow Index (0..100), as ``ta.volume.MFIIndicator.money_flow_index``.

    Money flow is ``tp * volume`` signed by the change in typical price. Bar 0 and
    unchanged-tp bars count as 0. NaN before bar ``window - 1``. As in ta, a window with no
    negative flow gives 100, and a window with no flow at all (flat prices) gives NaN.
    Past-only.
    """
    _check_window(window=window)
    return _mfi_kernel(*_arrs(high, low, close, volume), int(window))
