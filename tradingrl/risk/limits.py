"""Value types of the risk layer: its parameters, its carried state, its answer.

Units used throughout the risk layer:

- positions (weights) are signed fractions of current equity per asset:
  ``0.5`` is long half the equity, ``-1.0`` short all of it;
- returns are per-bar *simple* returns, ``close[t] / close[t-1] - 1``, because a
  book's one-bar return is then exactly ``sum_i w_i * r_i`` (log returns do not
  add across assets);
- volatility targets are annualised (per-bar volatility times
  ``sqrt(bars_per_year)``); VaR and drawdowns are fractions of equity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Names reported in RiskDecision.binding, in the order the rules are applied
# (see tradingrl.risk.layer for what each does).
SANITISE = "sanitise"
NO_SHORT = "no_short"
INVALID_EQUITY = "invalid_equity"
DRAWDOWN_BREAKER = "drawdown_breaker"
INSUFFICIENT_HISTORY = "insufficient_history"
CONFIDENCE = "confidence"
KELLY = "kelly"
POSITION_LIMIT = "position_limit"
GROSS_LEVERAGE = "gross_leverage"
VOL_TARGET = "vol_target"
VAR_LIMIT = "var_limit"

RULE_ORDER: tuple[str, ...] = (
    SANITISE,
    NO_SHORT,
    INVALID_EQUITY,
    DRAWDOWN_BREAKER,
    INSUFFICIENT_HISTORY,
    CONFIDENCE,
    KELLY,
    POSITION_LIMIT,
    GROSS_LEVERAGE,
    VOL_TARGET,
    VAR_LIMIT,
)

VAR_LEVEL = 0.95  # one-bar historical VaR confidence level


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Parameters of the risk layer. ``None`` disables a rule.

    max_position: largest |weight| per asset, fraction of equity, in (0, 1]
        (proposals are first clipped to the action box [-1, 1], so more than 1
        could never be reached).
    max_gross_leverage: largest sum_i |w_i|, fraction of equity (> 0).
    allow_short: False forces every weight to be >= 0.
    vol_target: largest annualised ex-ante volatility of the book (e.g. 0.15),
        estimated from the sample covariance of the recent per-bar returns.
    bars_per_year: bars in a year, to annualise (252 for daily bars).
    var_limit: largest one-bar historical VaR at 95% of the book, fraction of
        equity (e.g. 0.02 = a 5%-worst one-bar loss of at most 2%).
    kelly_fraction: cap |w_i| at kelly_fraction * Kelly size (e.g. 0.5 = half
        Kelly); needs ``expected_return``.
    confidence_sizing: scale each proposal by the model's confidence in
        [0, 1]; needs ``confidence``.
    min_history: usable return rows (bars) needed before vol targeting, VaR or
        Kelly can be estimated (>= 2). With fewer, and any of those rules on,
        the book goes flat.
    drawdown_limit: the breaker trips when equity <= (1 - drawdown_limit) *
        peak equity (e.g. 0.2 = 20% below the peak); in (0, 1).
    cooldown_bars: the breaker keeps the book flat for at least this many
        decisions, the tripping one included (>= 1).
    drawdown_reset: None: release after the cooldown and measure drawdowns
        from the equity at release (the peak is re-based). A fraction in
        (0, drawdown_limit]: release after the cooldown *and* only once equity
        > (1 - drawdown_reset) * peak; the peak is kept. A flat book does not
        earn its way back, so this makes the breaker a kill switch that only
        lifts when equity recovers by other means (fills still settling,
        deposits, a reset state).
    """

    max_position: float = 1.0
    max_gross_leverage: float = 1.0
    allow_short: bool = True
    vol_target: float | None = 0.15
    bars_per_year: int = 252
    var_limit: float | None = 0.02
    kelly_fraction: float | None = None
    confidence_sizing: bool = False
    min_history: int = 20
    drawdown_limit: float | None = 0.2
    cooldown_bars: int = 5
    drawdown_reset: float | None = None

    def __post_init__(self) -> None:
        _positive("max_position", self.max_position)
        if self.max_position > 1.0:
            raise ValueError(f"max_position must be <= 1 (the action box), got {self.max_position}")
        _positive("max_gross_leverage", self.max_gross_leverage)
        if self.vol_target is not None:
            _positive("vol_target", self.vol_target)
        if self.bars_per_year < 1:
            raise ValueError(f"bars_per_year must be >= 1, got {self.bars_per_year}")
        if self.var_limit is not None:
            _positive("var_limit", self.var_limit)
        if self.kelly_fraction is not None:
            _positive("kelly_fraction", self.kelly_fraction)
        if self.min_history < 2:
            raise ValueError(f"min_history must be >= 2 bars, got {self.min_history}")
        if self.drawdown_limit is not None and not 0.0 < self.drawdown_limit < 1.0:
            raise ValueError(f"drawdown_limit must be in (0, 1), got {self.drawdown_limit}")
        if self.cooldown_bars < 1:
            raise ValueError(f"cooldown_bars must be >= 1, got {self.cooldown_bars}")
        if self.drawdown_reset is not None:
            if self.drawdown_limit is None:
                raise ValueError("drawdown_reset needs drawdown_limit")
            if not 0.0 < self.drawdown_reset <= self.drawdown_limit:
                raise ValueError(
                    f"drawdown_reset must be in (0, drawdown_limit={self.drawdown_limit}],"
                    f" got {self.drawdown_reset}"
                )

    @property
    def needs_history(self) -> bool:
        """True when some rule must estimate from the return window."""
        return (
            self.vol_target is not None
            or self.var_limit is not None
            or self.kelly_fraction is not None
        )


@dataclass(frozen=True, slots=True)
class RiskState:
    """What the risk layer carries from one decision to the next.

    peak_equity: highest equity seen (since the last re-based release), in
        account currency; 0.0 means "none yet" (the first equity becomes it).
    breaker_active: the drawdown breaker holds the book flat.
    bars_since_trip: decisions since the breaker tripped (0 on the tripping
        decision); 0 while inactive.
    """

    peak_equity: float = 0.0
    breaker_active: bool = False
    bars_since_trip: int = 0

    def __post_init__(self) -> None:
        # A NaN peak would silently disable the breaker (every comparison is
        # False), so refuse it here; apply_risk only builds states on change.
        if not math.isfinite(self.peak_equity):
            raise ValueError(f"peak_equity must be finite, got {self.peak_equity}")
        if self.bars_since_trip < 0:
            raise ValueError(f"bars_since_trip must be >= 0, got {self.bars_since_trip}")


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """target: allowed weights, shape (n_assets,), fractions of equity, a new
    array. state: the state for the next decision. binding: names of the rules
    that changed the target, in the order applied (see RULE_ORDER)."""

    target: np.ndarray
    state: RiskState
    binding: tuple[str, ...]
