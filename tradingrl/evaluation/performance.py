"""Performance statistics of one return stream (a walk-forward fold, or all folds).

Units and conventions:

- :func:`performance_summary` takes per-bar *log* returns of net equity (after
  costs), what the backtester and the environment produce: bar i's entry is
  ``log(equity_after_i / equity_before_i)``, the decision for it made at the
  bar before and filled at this one. Sharpe, Sortino, volatility, VaR/CVaR,
  skewness and kurtosis use per-bar *simple* returns ``r = expm1(log r)``,
  as is conventional (and as empyrical does); total and annualised return and
  drawdowns use the compounded equity path, identical either way.
- The building blocks (:func:`sharpe_ratio`, :func:`sortino_ratio`,
  :func:`max_drawdown`, :func:`drawdown_series`, :func:`var_cvar`,
  :func:`rolling_sharpe`) take per-bar *simple* returns, so they can be checked
  against empyrical-reloaded one for one.
- Annualisation: Sharpe, Sortino and volatility by ``sqrt(bars_per_year)``;
  returns compound: CAGR = (W_n / W_0) ** (bars_per_year / n) - 1.
- Drawdowns are positive fractions of the running peak of equity, the peak
  including the starting equity (before the first bar).
- Undefined is NaN, never a made-up number: Sharpe with < 2 bars or zero
  variance, Sortino with no return below target, Calmar with no drawdown,
  hit rate with no qualifying bar. Empty input, NaN or inf is a ValueError.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from tradingrl.evaluation.sharpe import finite_1d, per_period_sharpe, skew_kurtosis

VAR_LEVEL = 0.95  # historical VaR/CVaR confidence level of the summary
# Equity within this relative distance of its running peak counts as at the
# peak, so rounding in compounding (1.25 * 0.8 != 1.0) neither prolongs nor
# splits a drawdown episode.
_AT_PEAK_RTOL = 1e-12


def _positive_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


# ------------------------------------------------------------ building blocks
def sharpe_ratio(returns: Any, *, bars_per_year: float, risk_free_per_bar: float = 0.0) -> float:
    """Sharpe ratio of per-bar simple returns: ``mean(r - rf) / std(r - rf,
    ddof=1) * sqrt(bars_per_year)`` (``bars_per_year=1``: per period). NaN
    with fewer than 2 bars or zero variance (undefined)."""
    r = finite_1d(returns, "returns")
    scale = math.sqrt(_positive_number("bars_per_year", bars_per_year))
    return per_period_sharpe(r, risk_free_per_bar) * scale


def downside_deviation(returns: Any, target_per_bar: float = 0.0) -> float:
    """Per-bar target semi-deviation ``sqrt(mean(min(r - target, 0)**2))``
    over ALL bars (bars above target count as 0; ddof 0), empyrical's
    ``downside_risk`` before annualisation."""
    r = finite_1d(returns, "returns")
    shortfall = np.minimum(r - target_per_bar, 0.0)
    return float(math.sqrt(np.mean(shortfall * shortfall)))


def sortino_ratio(returns: Any, *, bars_per_year: float, target_per_bar: float = 0.0) -> float:
    """``mean(r - target) / downside_deviation(r, target) * sqrt(bars_per_year)``
    of per-bar simple returns (empyrical's convention). NaN when no bar is
    below target (no downside: undefined; empyrical returns inf there)."""
    r = finite_1d(returns, "returns")
    scale = math.sqrt(_positive_number("bars_per_year", bars_per_year))
    downside = downside_deviation(r, target_per_bar)
    if downside == 0.0:
        return math.nan
    return float(np.mean(r - target_per_bar)) / downside * scale


def _wealth(returns: np.ndarray) -> np.ndarray:
    """Equity path per unit of starting equity, length n + 1: W[0] = 1 (before
    bar 0), W[i + 1] after bar i."""
    return np.concatenate(([1.0], np.cumprod(1.0 + returns)))


def drawdown_series(returns: Any) -> np.ndarray:
    """Drawdown after each bar, ``1 - W / running peak of W`` (positive
    fraction, 0 at a new high), length n; the peak includes the starting
    equity. Minus empyrical's ``drawdown_series``."""
    wealth = _wealth(finite_1d(returns, "returns"))
    return (1.0 - wealth / np.maximum.accumulate(wealth))[1:]


def max_drawdown(returns: Any) -> float:
    """Largest drawdown of per-bar simple returns, a positive fraction
    (0.25 = equity fell 25% below its peak)."""
    return float(drawdown_series(returns).max())


def drawdown_durations(returns: Any) -> dict[str, float]:
    """Depth and durations of drawdowns of per-bar simple returns, in bars.

    Equity index j = 0..n (0 = start, j = after bar j-1). A drawdown episode
    runs from its peak p (last index at the running high) to its recovery q
    (first index after p with equity >= equity[p]); its duration is q - p
    bars, or n - p when it has not recovered by the last bar. Equity within
    a relative 1e-12 of its peak counts as at the peak.

    Returns {"max_drawdown", "max_drawdown_duration_bars" (the deepest
    episode's duration; the first if tied), "max_drawdown_recovered" (1.0 or
    0.0), "longest_drawdown_bars" (longest episode, any depth)}; durations 0
    when equity never falls below a peak.
    """
    wealth = _wealth(finite_1d(returns, "returns"))
    n = wealth.size - 1
    peak = np.maximum.accumulate(wealth)
    depth = 1.0 - wealth / peak
    under = wealth < peak * (1.0 - _AT_PEAK_RTOL)
    if not under.any():
        return {"max_drawdown": float(depth.max()), "max_drawdown_duration_bars": 0.0,
                "max_drawdown_recovered": 1.0, "longest_drawdown_bars": 0.0}
    # Underwater runs [a, b] of equity indices: peak at a - 1, recovery at b + 1
    # (none when b == n).
    edges = np.diff(np.concatenate(([0], under.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    lengths = np.where(stops == n, n - starts + 1, stops - starts + 2)
    trough = int(np.argmax(depth))
    run = int(np.searchsorted(starts, trough, side="right")) - 1
    recovered = bool(stops[run] < n)
    return {
        "max_drawdown": float(depth[trough]),
        "max_drawdown_duration_bars": float(lengths[run]),
        "max_drawdown_recovered": 1.0 if recovered else 0.0,
        "longest_drawdown_bars": float(lengths.max()),
    }


def var_cvar(returns: Any, level: float = VAR_LEVEL) -> tuple[float, float]:
    """Historical one-bar (VaR, CVaR) at ``level`` of per-bar simple returns,
    as positive loss fractions (0.02 = a 2% loss), empyrical's conventions:
    VaR = -quantile(r, 1 - level) with numpy's linear interpolation; CVaR =
    -mean of the k smallest returns, k = floor((n - 1) (1 - level)) + 1
    (computed exactly, so 1 - 0.95 is 1/20 and not 0.0500...04). CVaR >= VaR.
    """
    r = finite_1d(returns, "returns")
    if isinstance(level, bool) or not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = 1 - Fraction(repr(float(level)))
    var = -float(np.percentile(r, 100.0 * float(tail)))
    k = int((r.size - 1) * tail) + 1
    cvar = -float(np.mean(np.partition(r, k - 1)[:k]))
    return var, cvar


def rolling_sharpe(returns: Any, window: int, bars_per_year: float) -> np.ndarray:
    """Trailing Sharpe ratio of per-bar simple returns over the last
    ``window`` bars ending at each bar (bars <= t only), annualised by
    ``sqrt(bars_per_year)``, ddof=1. Length n; NaN for the first window - 1
    bars and where the window has zero variance."""
    import pandas as pd

    r = finite_1d(returns, "returns")
    if isinstance(window, bool) or int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2 bars, got {window}")
    scale = math.sqrt(_positive_number("bars_per_year", bars_per_year))
    rolling = pd.Series(r).rolling(int(window), min_periods=int(window))
    mean, std = rolling.mean().to_numpy(), rolling.std(ddof=1).to_numpy()
    constant = (rolling.max() == rolling.min()).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = mean / std * scale
    out[constant] = math.nan
    return out


# -------------------------------------------------------------------- summary
def _aligned(values: Any, name: str, n: int) -> np.ndarray:
    array = finite_1d(values, name)
    if array.size != n:
        raise ValueError(f"{name} has {array.size} bars, log_returns has {n}")
    return array


def performance_summary(
    log_returns: Any,
    *,
    positions: Any = None,
    turnover: Any = None,
    costs: Any = None,
    equity0: float = 1.0,
    bars_per_year: int = 252,
    risk_free_per_bar: float = 0.0,
) -> dict[str, float]:
    """Statistics of one stream of per-bar log returns of net equity.

    log_returns: (n,) per-bar log returns after costs (see the module
        docstring for the timing).
    positions: (n,) signed position of each bar, fraction of equity (the
        position the bar's return was earned on; from the backtester,
        ``BacktestResult.positions``, the position after the bar's fill).
    turnover: (n,) traded notional at each bar's fill / equity before it
        (``BacktestResult.turnover``).
    costs: (n,) costs paid at each bar's fill, in the currency of ``equity0``
        (``BacktestResult.costs`` with ``equity0=initial_cash``).
    equity0: starting equity (currency); only scales ``costs``.
    bars_per_year: annualisation (252 daily bars).
    risk_free_per_bar: simple return per bar subtracted for Sharpe/Sortino.

    Keys (floats): n_bars; total_return (simple, W_n/W_0 - 1);
    annualised_return (CAGR); annualised_volatility (std of simple returns,
    ddof=1, x sqrt(bars_per_year)); sharpe and sharpe_per_period; sortino;
    calmar (CAGR / max_drawdown); max_drawdown, max_drawdown_duration_bars,
    longest_drawdown_bars (see :func:`drawdown_durations`); var_95, cvar_95
    (positive loss fractions per bar); skewness, kurtosis (of simple returns,
    population, NON-excess: normal = 3); hit_rate: share of bars with a
    simple return > 0 among bars with a non-zero position, or, without
    positions, among bars with a non-zero return.
    With positions: exposure (mean |position|), time_in_market (share of bars
    with a non-zero position). With turnover: turnover (sum over bars) and
    turnover_annualised (mean per bar x bars_per_year). With costs:
    costs_paid (sum, currency), costs_fraction_of_initial_equity (sum /
    equity0) and cost_drag (sum over bars of cost / equity before the bar:
    the simple-return points lost to costs). Keys for inputs not given are
    absent. Undefined values are NaN (see the module docstring).
    """
    log_r = finite_1d(log_returns, "log_returns")
    n = int(log_r.size)
    bpy = _positive_number("bars_per_year", bars_per_year)
    equity0 = _positive_number("equity0", equity0)
    if not math.isfinite(risk_free_per_bar):
        raise ValueError(f"risk_free_per_bar must be finite, got {risk_free_per_bar}")
    r = np.expm1(log_r)
    growth = float(log_r.sum())
    cagr = math.expm1(growth * bpy / n)
    drawdowns = drawdown_durations(r)
    mdd = drawdowns["max_drawdown"]
    var, cvar = var_cvar(r, VAR_LEVEL)
    skew, kurt = skew_kurtosis(r)
    if n < 2:
        volatility = math.nan
    elif np.ptp(r) == 0.0:  # exactly 0, not the ~1e-18 rounding of a constant's mean
        volatility = 0.0
    else:
        volatility = float(r.std(ddof=1)) * math.sqrt(bpy)

    out: dict[str, float] = {
        "n_bars": float(n),
        "total_return": math.expm1(growth),
        "annualised_return": cagr,
        "annualised_volatility": volatility,
        "sharpe": sharpe_ratio(r, bars_per_year=bpy, risk_free_per_bar=risk_free_per_bar),
        "sharpe_per_period": sharpe_ratio(r, bars_per_year=1, risk_free_per_bar=risk_free_per_bar),
        "sortino": sortino_ratio(r, bars_per_year=bpy, target_per_bar=risk_free_per_bar),
        "calmar": cagr / mdd if mdd > 0.0 else math.nan,
        "max_drawdown": mdd,
        "max_drawdown_duration_bars": drawdowns["max_drawdown_duration_bars"],
        "longest_drawdown_bars": drawdowns["longest_drawdown_bars"],
        "var_95": var,
        "cvar_95": cvar,
        "skewness": skew,
        "kurtosis": kurt,
    }
    if positions is not None:
        pos = _aligned(positions, "positions", n)
        held = pos != 0.0
        out["hit_rate"] = float(np.mean(r[held] > 0.0)) if held.any() else math.nan
        out["exposure"] = float(np.mean(np.abs(pos)))
        out["time_in_market"] = float(np.mean(held))
    else:
        moved = r != 0.0
        out["hit_rate"] = float(np.mean(r[moved] > 0.0)) if moved.any() else math.nan
    if turnover is not None:
        traded = _aligned(turnover, "turnover", n)
        if (traded < 0.0).any():
            raise ValueError("turnover must be >= 0 (traded notional / equity)")
        out["turnover"] = float(traded.sum())
        out["turnover_annualised"] = float(traded.mean()) * bpy
    if costs is not None:
        paid = _aligned(costs, "costs", n)
        if (paid < 0.0).any():
            raise ValueError("costs must be >= 0 (currency paid per bar)")
        equity_before = equity0 * np.exp(np.concatenate(([0.0], np.cumsum(log_r)[:-1])))
        out["costs_paid"] = float(paid.sum())
        out["costs_fraction_of_initial_equity"] = float(paid.sum()) / equity0
        out["cost_drag"] = float(np.sum(paid / equity_before))
    return out


def fill_record_summary(capped: Any, traded_notional: Any,
                        unfilled_notional: Any) -> dict[str, float]:
    """What the volume cap did to a stream of fills.

    capped: (n,) fills the cap cut at each bar (a count, or bool per fill).
    traded_notional / unfilled_notional: (n,) notional filled / left unfilled
        at each bar, in one currency.

    Keys: n_capped_fills (sum of ``capped``); unfilled_fraction: unfilled
    share of the requested notional, ``sum(unfilled) / sum(traded +
    unfilled)``. NaN where nothing was requested, or where the record is
    unknown (NaN entries).
    """
    capped = np.asarray(capped, dtype=np.float64)
    traded = np.asarray(traded_notional, dtype=np.float64)
    unfilled = np.asarray(unfilled_notional, dtype=np.float64)
    requested = float(np.sum(traded) + np.sum(unfilled))
    return {
        "n_capped_fills": float(np.sum(capped)),
        "unfilled_fraction": (float(np.sum(unfilled)) / requested
                              if requested > 0.0 else math.nan),
    }
