"""Equal-weight book of independently traded symbols: one sleeve per symbol.

Each symbol gets ``initial_cash / n_symbols`` and is backtested on its own with
:func:`tradingrl.backtest.backtest_positions` (so a single-asset agent can trade
every symbol); the book's equity is the sum of the sleeves' equities after each
step, with no rebalancing between sleeves. Step k of every sleeve must be the
same moment: when all markets carry timestamps the fill bars' timestamps must
agree, otherwise the caller vouches for the alignment.

A sleeve that is ruined stops trading; its last (<= 0) equity stays in the sum
for the remaining steps (the loss is the book's). Should the book's own equity
reach <= 0, the book ends at that step with the environment's log-return floor
(``log(RUIN_FLOOR * initial_cash / equity_before)``, RUIN_FLOOR = 1e-12), and ``ruined`` is True.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tradingrl.backtest.engine import BacktestResult, backtest_positions
from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.costs import ExecutionCosts
from tradingrl.envs.episode import RUIN_FLOOR
from tradingrl.envs.risk_hook import RiskFn


@dataclass(frozen=True, eq=False)
class EqualWeightResult:
    """The book of per-symbol sleeves.

    symbols: the symbols, in the order of ``results``.
    results: each sleeve's :class:`BacktestResult` (started with
        ``initial_cash / n_symbols``).
    initial_cash: the book's starting equity, quote currency.
    equity: the book's equity after each step (sum over sleeves), float64.
    log_returns: log(equity after / equity before) per step, float64.
    timestamps: datetime64[ns] of each step's fill bar when every market has
        timestamps, else None.
    ruined: whether the book's equity fell to <= 0 (the arrays then end there).

    ``n_capped`` and ``unfilled_fraction`` sum the sleeves' fill records (the
    fills the volume cap cut, the unfilled share of the requested notional).
    """

    symbols: tuple[str, ...]
    results: tuple[BacktestResult, ...]
    initial_cash: float
    equity: np.ndarray
    log_returns: np.ndarray
    timestamps: np.ndarray | None
    ruined: bool

    def result(self, symbol: str) -> BacktestResult:
        """The sleeve of ``symbol``."""
        if symbol not in self.symbols:
            raise KeyError(f"no sleeve for symbol {symbol!r}; have {self.symbols}")
        return self.results[self.symbols.index(symbol)]

    @property
    def n_steps(self) -> int:
        return int(self.equity.shape[0])

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])

    @property
    def n_capped(self) -> int:
        """Fills the volume cap cut, over every sleeve."""
        return sum(r.n_capped for r in self.results)

    @property
    def unfilled_fraction(self) -> float:
        """Unfilled share of the requested notional over every sleeve (NaN
        when no order was sent)."""
        unfilled = sum(float(r.unfilled_notional.sum()) for r in self.results)
        filled = sum(float((np.abs(r.traded_shares) * r.fill_price).sum()) for r in self.results)
        return unfilled / (filled + unfilled) if filled + unfilled > 0.0 else math.nan


def backtest_equal_weight(
    markets: Sequence[MarketArrays],
    targets_per_symbol: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    *,
    start_bar: int | Sequence[int],
    costs: ExecutionCosts | None = None,
    initial_cash: float = 1_000_000.0,
    fill: Literal["next_open", "next_close"] = "next_open",
    min_trade_fraction: float = 1e-6,
    risk_fn: RiskFn | None = None,
    risk_lookback: int = 20,
    close_at_end: bool = False,
) -> EqualWeightResult:
    """Backtest one target series per symbol, each sleeve with an equal share of cash.

    targets_per_symbol: one 1-D target series per market (same order), or a
        mapping symbol -> series; every series has the same length (steps).
    start_bar: the first decision bar, one for all markets or one per market
        (markets may start at different indices for the same timestamp).
    The other arguments go to :func:`backtest_positions` for every sleeve; a
    ``risk_fn`` keeps its memory per sleeve (in the context's state).
    """
    if isinstance(markets, MarketArrays) or not isinstance(markets, Sequence) or not markets:
        raise TypeError("markets must be a non-empty sequence of MarketArrays")
    for market in markets:
        if not isinstance(market, MarketArrays):
            raise TypeError(f"markets must hold MarketArrays, got {type(market).__name__}")
    symbols = tuple(m.symbol for m in markets)
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"duplicate symbols in markets: {symbols}")
    if isinstance(targets_per_symbol, Mapping):
        if set(targets_per_symbol) != set(symbols):
            raise ValueError(f"targets are keyed by {sorted(targets_per_symbol)}, markets are "
                             f"{sorted(symbols)}")
        series = [targets_per_symbol[s] for s in symbols]
    else:
        series = list(targets_per_symbol)
        if len(series) != len(markets):
            raise ValueError(f"{len(series)} target series for {len(markets)} markets")
    shapes = [np.shape(s) for s in series]
    if any(len(shape) != 1 for shape in shapes):
        raise ValueError(f"every target series must be 1-D, got shapes {shapes}")
    lengths = {shape[0] for shape in shapes}
    if len(lengths) != 1:
        raise ValueError(f"every target series must have the same length, got {sorted(lengths)}")
    n_steps = lengths.pop()
    if isinstance(start_bar, int | np.integer) and not isinstance(start_bar, bool):
        starts = [int(start_bar)] * len(markets)
    else:
        starts = list(start_bar)
        if len(starts) != len(markets):
            raise ValueError(f"{len(starts)} start bars for {len(markets)} markets")
    initial_cash = float(initial_cash)
    if not (initial_cash > 0 and math.isfinite(initial_cash)):
        raise ValueError(f"initial_cash must be finite and > 0, got {initial_cash}")

    sleeve_cash = initial_cash / len(markets)
    results = tuple(
        backtest_positions(market, targets, start_bar=start, costs=costs,
                           initial_cash=sleeve_cash, fill=fill,
                           min_trade_fraction=min_trade_fraction, risk_fn=risk_fn,
                           risk_lookback=risk_lookback, close_at_end=close_at_end)
        for market, targets, start in zip(markets, series, starts, strict=True))

    timestamps = None
    if all(m.timestamps is not None for m in markets):
        fill_bars = [start + 1 + np.arange(n_steps) for start in starts]
        timestamps = markets[0].timestamps[fill_bars[0]]
        for market, bars in zip(markets[1:], fill_bars[1:], strict=True):
            stamps = market.timestamps[bars]
            if not np.array_equal(stamps, timestamps):
                k = int(np.flatnonzero(stamps != timestamps)[0])
                raise ValueError(f"markets are not aligned: step {k} fills at {timestamps[k]} "
                                 f"for {symbols[0]!r} but at {stamps[k]} for {market.symbol!r}")

    equity = np.zeros(n_steps)
    for result in results:  # a ruined sleeve's last equity stays for the remaining steps
        equity[:result.n_steps] += result.equity
        equity[result.n_steps:] += result.equity[-1]
    before = np.concatenate([[initial_cash], equity[:-1]])
    wiped = np.flatnonzero(equity <= 0.0)
    ruined = wiped.size > 0
    if ruined:
        end = int(wiped[0]) + 1
        equity, before = equity[:end], before[:end]
    log_returns = np.log(np.where(equity > 0.0, equity, RUIN_FLOOR * initial_cash) / before)
    if timestamps is not None:
        timestamps = timestamps[:equity.shape[0]]
        timestamps.setflags(write=False)
    for array in (equity, log_returns):
        array.setflags(write=False)
    return EqualWeightResult(symbols=symbols, results=results, initial_cash=initial_cash,
                             equity=equity, log_returns=log_returns, timestamps=timestamps,
                             ruined=ruined)
