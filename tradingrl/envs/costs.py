"""Execution costs of one fill: commission, half spread, square-root impact, volume cap.

For a fill of ``q`` shares (absolute) at price ``p`` on a bar with volume ``V``
(shares) and past-only per-bar volatility ``sigma`` (fraction):

    notional   = q * p                                   (quote currency)
    commission = commission_bps * 1e-4 * notional
    spread     = 0.5 * spread_bps * 1e-4 * notional      (half the quoted spread)
    impact     = impact_coef * sigma * sqrt(q / V) * notional
    q         <= participation_limit * V                 (the rest is not filled)

All costs are in the quote currency and are paid from cash on top of the
trade's price; a fill of zero shares costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutionCosts:
    """Cost model parameters.

    commission_bps: commission, bps of traded notional.
    spread_bps: full quoted bid-ask spread, bps of price; a fill pays half.
    impact_coef: dimensionless coefficient of the square-root law (~0.1-1).
    participation_limit: max fraction of the fill bar's volume one fill may take.
    """

    commission_bps: float = 1.0
    spread_bps: float = 2.0
    impact_coef: float = 0.5
    participation_limit: float = 0.1

    def __post_init__(self) -> None:
        for name in ("commission_bps", "spread_bps", "impact_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if not (self.participation_limit > 0.0):
            raise ValueError(f"participation_limit must be > 0, got {self.participation_limit}")

    @classmethod
    def zero(cls, participation_limit: float = math.inf) -> ExecutionCosts:
        """No costs and (by default) no volume cap: a frictionless market."""
        return cls(0.0, 0.0, 0.0, participation_limit)


@dataclass(frozen=True)
class FillCosts:
    """The costs of one fill, quote currency."""

    commission: float
    spread: float
    impact: float

    @property
    def total(self) -> float:
        return self.commission + self.spread + self.impact


def cap_fill(shares: float, bar_volume: float, costs: ExecutionCosts) -> tuple[float, bool]:
    """Signed order ``shares`` -> (signed filled shares, capped?) under the volume cap."""
    cap = costs.participation_limit * bar_volume
    if abs(shares) <= cap:
        return shares, False
    return math.copysign(cap, shares), True


def fill_costs(shares: float, price: float, bar_volume: float, sigma: float,
               costs: ExecutionCosts) -> FillCosts:
    """Costs of filling ``shares`` (signed; already capped) at ``price``."""
    traded = abs(shares)
    if traded == 0.0:
        return FillCosts(0.0, 0.0, 0.0)
    notional = traded * price
    return FillCosts(
        commission=costs.commission_bps * 1e-4 * notional,
        spread=0.5 * costs.spread_bps * 1e-4 * notional,
        impact=costs.impact_coef * sigma * math.sqrt(traded / bar_volume) * notional,
    )
