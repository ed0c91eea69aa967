"""Execution costs of one fill: commission, half spread, square-root impact, volume cap.

For an order decided at bar t and filled at bar t+1, of ``q`` shares
(absolute) at price ``p``, with past-only per-bar volatility ``sigma[t]``
(fraction) and the volume known at decision time ``V[t]`` (shares per bar,
:func:`decision_volume`: the mean volume of the ``volume_window`` bars up to
and including t; fewer at the first bars of the data, where only what exists
is averaged):

    notional   = q * p                                   (quote currency)
    commission = commission_bps * 1e-4 * notional
    spread     = 0.5 * spread_bps * 1e-4 * notional      (half the quoted spread)
    impact     = impact_coef * sigma[t] * sqrt(q / V[t]) * notional
    q         <= participation_limit * V[t]              (the rest is not filled)

Bar t+1's own volume is not known when the order is sized, so neither the cap
nor the impact uses it; the one exception is a fill bar without any volume
(a halt), on which nothing fills. What the cap leaves unfilled is dropped
(the next decision re-targets) and counted: the environments' info and the
backtest result record the unfilled shares and notional of every step.

All costs are in the quote currency and are paid from cash on top of the
trade's price; a fill of zero shares costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_VOLUME_WINDOW = 20  # bars averaged into the volume known at decision time


@dataclass(frozen=True)
class ExecutionCosts:
    """Cost model parameters.

    commission_bps: commission, bps of traded notional.
    spread_bps: full quoted bid-ask spread, bps of price; a fill pays half.
    impact_coef: dimensionless coefficient of the square-root law (~0.1-1).
    participation_limit: max fraction of the volume known at decision time
        (:func:`decision_volume`) one fill may take.
    volume_window: bars (>= 1) in that past-only mean volume.
    """

    commission_bps: float = 1.0
    spread_bps: float = 2.0
    impact_coef: float = 0.5
    participation_limit: float = 0.1
    volume_window: int = DEFAULT_VOLUME_WINDOW

    def __post_init__(self) -> None:
        for name in ("commission_bps", "spread_bps", "impact_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if not (self.participation_limit > 0.0):
            raise ValueError(f"participation_limit must be > 0, got {self.participation_limit}")
        if isinstance(self.volume_window, bool) or int(self.volume_window) != self.volume_window \
                or self.volume_window < 1:
            raise ValueError(f"volume_window must be an integer >= 1, got {self.volume_window}")

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


def decision_volume(volume: np.ndarray, window: int = DEFAULT_VOLUME_WINDOW) -> np.ndarray:
    """The volume known at each decision bar t: the mean of ``volume`` over the
    ``window`` bars up to and including t (past-only; at the first
    ``window - 1`` bars, the mean of the bars that exist). float64, shares per bar."""
    if window < 1:
        raise ValueError(f"volume window must be >= 1 bar, got {window}")
    series = pd.Series(np.asarray(volume, dtype=np.float64))
    return series.rolling(int(window), min_periods=1).mean().to_numpy(dtype=np.float64)


def cap_fill(shares: float, known_volume: float, costs: ExecutionCosts) -> tuple[float, bool]:
    """Signed order ``shares`` -> (signed filled shares, capped?) under the volume
    cap, ``known_volume`` the volume known at decision time."""
    cap = costs.participation_limit * known_volume
    if abs(shares) <= cap:
        return shares, False
    return math.copysign(cap, shares), True


def fill_costs(shares: float, price: float, known_volume: float, sigma: float,
               costs: ExecutionCosts) -> FillCosts:
    """Costs of filling ``shares`` (signed; already capped) at ``price``;
    ``known_volume``: the volume known at decision time."""
    traded = abs(shares)
    if traded == 0.0:
        return FillCosts(0.0, 0.0, 0.0)
    notional = traded * price
    return FillCosts(
        commission=costs.commission_bps * 1e-4 * notional,
        spread=0.5 * costs.spread_bps * 1e-4 * notional,
        impact=costs.impact_coef * sigma * math.sqrt(traded / known_volume) * notional,
    )
