"""The risk layer: one pure function every trading decision passes through.

The RL agent proposes target weights; ``apply_risk`` returns the allowed
weights, the next ``RiskState`` and the rules that bound. The gymnasium
environment, the backtest and serving all call it, so they agree bar for bar.
Units (see ``tradingrl.risk.limits``): weights are signed fractions of equity,
returns are per-bar simple returns.

Rules, in order (the name each reports in ``binding`` when it changes the
target):

1. ``sanitise``: NaN/inf proposals -> 0; clip to the action box [-1, 1].
2. ``no_short``: with ``allow_short=False``, negative weights -> 0.
3. Forced flat; the first reason that applies is reported:
   ``invalid_equity`` (equity NaN/inf or <= 0),
   ``drawdown_breaker`` (equity <= (1 - drawdown_limit) * peak, or the breaker
   not yet released; see ``RiskLimits.drawdown_reset``),
   ``insufficient_history`` (vol targeting, VaR or Kelly is on and the window
   has fewer than ``min_history`` usable rows, or its statistics overflow).
   The breaker is logically the last rule, but a flat book is a fixed point of
   every other rule, so it is decided early and the rest is skipped.
4. ``confidence``: w_i *= confidence_i (NaN -> 0, clipped to [0, 1]).
5. ``kelly``: |w_i| <= kelly_fraction * f_i with the Kelly size
   f_i = max(sign(w_i) * mu_i, 0) / sigma_i^2, where mu_i = expected_return_i
   (the model's expected *per-bar* simple return of the next bar; divide an
   h-bar forecast by h first) and sigma_i^2 the sample variance (ddof=1) of
   asset i's per-bar returns over the usable window. Both are per bar, so f_i
   is a fraction of equity (the growth-optimal fraction for one asset, small-
   return approximation, correlations ignored). A forecast against the
   proposal's direction, or a NaN forecast, gives a cap of 0; zero variance
   with a favourable forecast gives no cap (the hard limits still apply).
6. ``position_limit``: clip each |w_i| to max_position.
7. ``gross_leverage``: scale the book so sum |w_i| <= max_gross_leverage.
8. ``vol_target``: scale the book down so sqrt(w' S w * bars_per_year) <=
   vol_target, S the sample covariance (ddof=1) of the usable window. It never
   scales up: a quiet market does not lever a small proposal.
9. ``var_limit``: historical simulation. The book's one-bar losses over the
   usable window are L_t = -sum_i w_i r_ti; VaR95 = quantile(L, 0.95) with
   linear interpolation (numpy's default). Order statistics and linear
   interpolation are positively homogeneous, so VaR(c w) = c VaR(w) for c >= 0
   and a single exact scale c = var_limit / VaR95 brings it to the limit.

Steps 7-9 are uniform down-scalings by c in [0, 1]. Clipping per asset could
*raise* the risk of a hedged book, so it comes before them; each later scaling
keeps every earlier bound (|c w_i| <= |w_i|, and volatility and VaR scale by
c), so all limits hold at the output at once.

Usable window: rows of ``recent_returns`` with any NaN/inf are dropped whole
(listwise), so the covariance, the variances and the VaR use the same bars.

Going flat when the history is too short is the conservative choice: a
volatility or VaR limit that cannot be checked is treated as breached, rather
than trading on hard limits alone. With all three estimating rules off, the
window is not needed and only the hard limits and the breaker apply.
"""

from __future__ import annotations

import math

import numpy as np

from tradingrl.risk.limits import (
    CONFIDENCE,
    DRAWDOWN_BREAKER,
    GROSS_LEVERAGE,
    INSUFFICIENT_HISTORY,
    INVALID_EQUITY,
    KELLY,
    NO_SHORT,
    POSITION_LIMIT,
    SANITISE,
    VAR_LEVEL,
    VAR_LIMIT,
    VOL_TARGET,
    RiskDecision,
    RiskLimits,
    RiskState,
)

_EMPTY_WINDOW = np.empty((0, 0))


def apply_risk(
    proposed: np.ndarray,
    *,
    limits: RiskLimits,
    state: RiskState,
    equity: float,
    recent_returns: np.ndarray,
    confidence: np.ndarray | None = None,
    expected_return: np.ndarray | None = None,
) -> RiskDecision:
    """Turn proposed weights into allowed weights; pure (inputs are not
    modified; the same inputs give the same decision).

    proposed: (n_assets,) target weights, fractions of equity.
    equity: current equity (account currency), marked at this bar.
    recent_returns: (window, n_assets) past per-bar simple returns, oldest
        first, ending at this bar (never later); may be empty or hold NaN.
    confidence: (n_assets,) model confidence in [0, 1]; required when
        ``limits.confidence_sizing``.
    expected_return: (n_assets,) model's expected per-bar simple return of the
        next bar; required when ``limits.kelly_fraction`` is set.

    Raises ValueError on shape mismatches or a missing required input (a
    configuration error, not market data). See the module docstring for the
    rules and their order.
    """
    proposed = np.asarray(proposed, dtype=np.float64)
    if proposed.ndim != 1:
        raise ValueError(f"proposed must be 1-D (n_assets,), got shape {proposed.shape}")
    n_assets = proposed.shape[0]
    returns = np.asarray(recent_returns, dtype=np.float64)
    if returns.size == 0:
        returns = _EMPTY_WINDOW
    elif returns.ndim != 2 or returns.shape[1] != n_assets:
        raise ValueError(
            f"recent_returns must have shape (window, {n_assets}), got {returns.shape}"
        )
    if limits.confidence_sizing:
        if confidence is None:
            raise ValueError("limits.confidence_sizing is on but confidence is None")
        confidence = np.asarray(confidence, dtype=np.float64)
        if confidence.shape != (n_assets,):
            raise ValueError(f"confidence must have shape ({n_assets},), got {confidence.shape}")
    if limits.kelly_fraction is not None:
        if expected_return is None:
            raise ValueError("limits.kelly_fraction is set but expected_return is None")
        expected_return = np.asarray(expected_return, dtype=np.float64)
        if expected_return.shape != (n_assets,):
            raise ValueError(
                f"expected_return must have shape ({n_assets},), got {expected_return.shape}"
            )

    next_state, flat_reason = advance_breaker(limits, state, equity)
    # NaN/inf inputs are detected and handled explicitly below (a non-finite
    # sum is the cheap test), so numpy's floating-point warnings are noise.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if n_assets == 1:
            return _apply_single(
                float(proposed[0]), limits, next_state, flat_reason, returns, confidence,
                expected_return,
            )
        return _apply_book(
            proposed, limits, next_state, flat_reason, returns, confidence, expected_return
        )


def advance_breaker(
    limits: RiskLimits, state: RiskState, equity: float
) -> tuple[RiskState, str | None]:
    """Next state of the drawdown breaker and the forced-flat reason, if any.

    Non-finite equity leaves the state unchanged (the bar's mark is unusable)
    and forces flat; equity <= 0 forces flat and counts as a 100% drawdown.
    The returned state is ``state`` itself when nothing changed (it is frozen).
    """
    equity = float(equity)
    if not math.isfinite(equity):
        return state, INVALID_EQUITY
    peak = max(state.peak_equity, equity)
    invalid = INVALID_EQUITY if equity <= 0.0 else None
    limit = limits.drawdown_limit
    if limit is None:
        return _state(state, peak, False, 0), invalid
    if state.breaker_active:
        bars = state.bars_since_trip + 1
        reset = limits.drawdown_reset
        if bars < limits.cooldown_bars or (
            reset is not None and not equity > (1.0 - reset) * peak
        ):
            return RiskState(peak, True, bars), invalid or DRAWDOWN_BREAKER
        # Released. Without a recovery rule the drawdown is measured afresh
        # from here, or the breaker would trip again at once.
        return RiskState(equity if reset is None else peak, False, 0), invalid
    if equity <= (1.0 - limit) * peak:
        return RiskState(peak, True, 0), invalid or DRAWDOWN_BREAKER
    return _state(state, peak, False, 0), invalid


def _state(old: RiskState, peak: float, active: bool, bars: int) -> RiskState:
    if old.peak_equity == peak and old.breaker_active == active and old.bars_since_trip == bars:
        return old
    return RiskState(peak, active, bars)


def _quantile_sorted(values: np.ndarray, q: float) -> float:
    """numpy's default (linear) quantile of an ascending array."""
    h = (values.shape[0] - 1) * q
    lo = int(h)
    a = float(values[lo])
    if lo + 1 >= values.shape[0]:
        return a
    return a + (float(values[lo + 1]) - a) * (h - lo)


def _usable_window(returns: np.ndarray, min_history: int) -> np.ndarray | None:
    """Rows with no NaN/inf, or None when fewer than min_history remain."""
    if returns.shape[0] < min_history:
        return None
    # A finite sum means every entry is finite (NaN and inf propagate); only
    # scan row by row when it is not.
    if not math.isfinite(returns.sum()):
        returns = returns[np.isfinite(returns).all(axis=1)]
        if returns.shape[0] < min_history:
            return None
    return returns


def _apply_single(
    w: float,
    limits: RiskLimits,
    state: RiskState,
    flat_reason: str | None,
    returns: np.ndarray,
    confidence: np.ndarray | None,
    expected_return: np.ndarray | None,
) -> RiskDecision:
    """Fast path for one asset: the same rules on Python floats."""
    binding: list[str] = []
    if not math.isfinite(w):
        w = 0.0
        binding.append(SANITISE)
    elif w > 1.0:
        w = 1.0
        binding.append(SANITISE)
    elif w < -1.0:
        w = -1.0
        binding.append(SANITISE)
    if w < 0.0 and not limits.allow_short:
        w = 0.0
        binding.append(NO_SHORT)
    if w == 0.0 or flat_reason is not None:
        if w != 0.0:
            binding.append(flat_reason)
        return RiskDecision(np.zeros(1), state, tuple(binding))

    if limits.needs_history:
        r = returns[:, 0] if returns.shape[0] else returns.ravel()
        total = r.sum()
        if not math.isfinite(total):
            r = r[np.isfinite(r)]
            total = r.sum()
        m = r.shape[0]
        var = math.nan
        if m >= limits.min_history:
            d = r - total / m
            var = float(d @ d) / (m - 1)
        if not math.isfinite(var):  # too few usable bars, or overflow
            binding.append(INSUFFICIENT_HISTORY)
            return RiskDecision(np.zeros(1), state, tuple(binding))

    if limits.confidence_sizing:
        c = float(confidence[0])
        if not c > 0.0:  # NaN counts as no confidence
            c = 0.0
        elif c > 1.0:
            c = 1.0
        if w * c != w:
            w *= c
            binding.append(CONFIDENCE)
    if limits.kelly_fraction is not None and w != 0.0:
        mu = float(expected_return[0])
        edge = mu if w > 0.0 else -mu
        # As the general path computes it: kelly * edge first (a tiny edge can
        # underflow to 0), then / var with 0 / 0 -> 0 and x / 0 -> inf.
        scaled = limits.kelly_fraction * edge if edge > 0.0 else 0.0
        if var > 0.0:
            cap = scaled / var
        else:
            cap = math.inf if scaled > 0.0 else 0.0
        if abs(w) > cap:
            w = math.copysign(cap, w) if cap > 0.0 else 0.0
            binding.append(KELLY)
    if abs(w) > limits.max_position:
        w = math.copysign(limits.max_position, w)
        binding.append(POSITION_LIMIT)
    if abs(w) > limits.max_gross_leverage:
        w = math.copysign(limits.max_gross_leverage, w)
        binding.append(GROSS_LEVERAGE)
    if limits.vol_target is not None and w != 0.0:
        vol = abs(w) * math.sqrt(var * limits.bars_per_year)
        if vol > limits.vol_target:
            w *= limits.vol_target / vol
            binding.append(VOL_TARGET)
    if limits.var_limit is not None and w != 0.0:
        var95 = _quantile_sorted(np.sort(r * -w), VAR_LEVEL)
        if var95 > limits.var_limit:
            w *= limits.var_limit / var95
            binding.append(VAR_LIMIT)
    return RiskDecision(np.array([w]), state, tuple(binding))


def _apply_book(  # called under apply_risk's np.errstate
    proposed: np.ndarray,
    limits: RiskLimits,
    state: RiskState,
    flat_reason: str | None,
    returns: np.ndarray,
    confidence: np.ndarray | None,
    expected_return: np.ndarray | None,
) -> RiskDecision:
    """General path, any number of assets (also correct for one)."""
    n_assets = proposed.shape[0]
    binding: list[str] = []
    w = proposed.copy()  # never hand the caller's array back, nor write to it
    if n_assets == 0:
        return RiskDecision(w, state, ())
    if not math.isfinite(w.sum()):
        w[~np.isfinite(w)] = 0.0
        binding.append(SANITISE)
    if np.abs(w).max() > 1.0:
        np.minimum(np.maximum(w, -1.0, out=w), 1.0, out=w)
        binding.append(SANITISE)
    if not limits.allow_short and w.min() < 0.0:
        np.maximum(w, 0.0, out=w)
        binding.append(NO_SHORT)
    if flat_reason is not None or not w.any():
        if flat_reason is not None and w.any():
            binding.append(flat_reason)
        return RiskDecision(np.zeros(n_assets), state, _dedupe(binding))

    window = None
    if limits.needs_history:
        window = _usable_window(returns, limits.min_history)
        if window is None:
            binding.append(INSUFFICIENT_HISTORY)
            return RiskDecision(np.zeros(n_assets), state, _dedupe(binding))
        m = window.shape[0]

    if limits.confidence_sizing:
        # fmax/fmin ignore NaN, so a NaN confidence becomes 0.
        scaled = w * np.fmin(np.fmax(confidence, 0.0), 1.0)
        if (scaled != w).any():
            binding.append(CONFIDENCE)
        w = scaled
    if limits.kelly_fraction is not None:
        dev = window - window.sum(axis=0) / m
        var = np.einsum("ij,ij->j", dev, dev) / (m - 1)
        if not math.isfinite(var.sum()):  # overflow
            binding.append(INSUFFICIENT_HISTORY)
            return RiskDecision(np.zeros(n_assets), state, _dedupe(binding))
        # Forecast in the position's direction; NaN or against it -> 0. On a
        # zero-variance asset a favourable forecast gives an infinite cap
        # (edge / 0) and no edge gives 0 (0 / 0 -> NaN -> 0).
        edge = np.fmax(expected_return * np.sign(w), 0.0)
        cap = limits.kelly_fraction * edge / var
        cap[np.isnan(cap)] = 0.0
        if (np.abs(w) > cap).any():
            w = np.minimum(np.maximum(w, -cap), cap)
            binding.append(KELLY)
    abs_w = np.abs(w)
    if abs_w.max() > limits.max_position:
        np.minimum(np.maximum(w, -limits.max_position, out=w), limits.max_position, out=w)
        np.abs(w, out=abs_w)
        binding.append(POSITION_LIMIT)
    gross = float(abs_w.sum())
    if gross > limits.max_gross_leverage:
        w *= limits.max_gross_leverage / gross
        binding.append(GROSS_LEVERAGE)

    if window is not None and (limits.vol_target is not None or limits.var_limit is not None):
        book = window @ w  # the book's per-bar return on each usable bar
        dev_book = book - book.sum() / m
        book_var = float(dev_book @ dev_book) / (m - 1)
        if not math.isfinite(book_var):  # overflow
            binding.append(INSUFFICIENT_HISTORY)
            return RiskDecision(np.zeros(n_assets), state, _dedupe(binding))
        if limits.vol_target is not None:
            vol = math.sqrt(book_var * limits.bars_per_year)
            if vol > limits.vol_target:
                scale = limits.vol_target / vol
                w *= scale
                book *= scale
                binding.append(VOL_TARGET)
        if limits.var_limit is not None:
            book *= -1.0  # losses
            book.sort()
            var95 = _quantile_sorted(book, VAR_LEVEL)
            if var95 > limits.var_limit:
                w *= limits.var_limit / var95
                binding.append(VAR_LIMIT)
    return RiskDecision(w, state, _dedupe(binding))


def _dedupe(binding: list[str]) -> tuple[str, ...]:
    # sanitise can fire twice (non-finite, then out of the box).
    return tuple(dict.fromkeys(binding))
