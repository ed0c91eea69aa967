"""Several symbols' :class:`MarketArrays` on one calendar: checks, alignment, stacking.

A portfolio environment steps over N symbols bar by bar, so bar t must mean the
same timestamp in every symbol. :func:`check_same_bars` refuses markets that
do not share exactly the same bars (naming the first mismatch);
:func:`align_markets` is the explicit way for callers with ragged calendars to
keep only the timestamps common to all, and it says how many bars each symbol
lost (:func:`alignment_losses` gives the same counts without aligning).

Aligning keeps each kept bar's values as they were, including the past-only
``sigma`` and features computed on the symbol's own full calendar (both use
bars <= t only, so dropping other bars does not make them look ahead);
``log_returns`` are re-derived, so a return after a dropped bar spans the gap.

:func:`stack_markets` turns aligned markets into the (bars, symbols) arrays a
portfolio environment reads in ``step()``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tradingrl.envs.arrays import MarketArrays

logger = logging.getLogger(__name__)


def _check_sequence(markets: Sequence[MarketArrays]) -> tuple[MarketArrays, ...]:
    if isinstance(markets, MarketArrays):
        raise TypeError("markets must be a sequence of MarketArrays, not one MarketArrays")
    markets = tuple(markets)
    if not markets:
        raise ValueError("need at least one market")
    bad = [type(m).__name__ for m in markets if not isinstance(m, MarketArrays)]
    if bad:
        raise TypeError(f"markets must be MarketArrays, got {bad}")
    symbols = [m.symbol for m in markets]
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise ValueError(f"duplicate symbol(s): {duplicates}")
    return markets


def check_same_bars(markets: Sequence[MarketArrays]) -> None:
    """Raise ValueError unless every market has the same timestamps (bar for bar).

    With two or more markets every one must carry timestamps: bars without
    them cannot be shown to line up. The message names the first symbol and
    the first bar that differs from the first market.
    """
    markets = _check_sequence(markets)
    if len(markets) == 1:
        return
    reference = markets[0]
    missing = [m.symbol for m in markets if m.timestamps is None]
    if missing:
        raise ValueError(f"market(s) {missing} have no timestamps: cannot check that the "
                         "symbols' bars line up")
    for market in markets[1:]:
        if len(market) != len(reference):
            raise ValueError(f"{market.symbol} has {len(market)} bars but {reference.symbol} has "
                             f"{len(reference)}; use align_markets() to keep the common bars")
        differ = np.flatnonzero(market.timestamps != reference.timestamps)
        if differ.size:
            k = int(differ[0])
            raise ValueError(
                f"timestamps differ at bar {k}: {market.symbol} has {market.timestamps[k]} but "
                f"{reference.symbol} has {reference.timestamps[k]}; use align_markets() to keep "
                "the common bars")


def _common_timestamps(markets: tuple[MarketArrays, ...]) -> np.ndarray:
    missing = [m.symbol for m in markets if m.timestamps is None]
    if missing:
        raise ValueError(f"market(s) {missing} have no timestamps: cannot align them")
    common = markets[0].timestamps
    for market in markets[1:]:
        common = np.intersect1d(common, market.timestamps, assume_unique=True)
    return common


def alignment_losses(markets: Sequence[MarketArrays]) -> dict[str, int]:
    """{symbol: bars that :func:`align_markets` would drop} (bars not present in
    every market), in the markets' order."""
    markets = _check_sequence(markets)
    common = _common_timestamps(markets)
    return {m.symbol: len(m) - common.shape[0] for m in markets}


def _take_bars(market: MarketArrays, rows: np.ndarray) -> MarketArrays:
    return MarketArrays(
        symbol=market.symbol,
        open=market.open[rows], high=market.high[rows], low=market.low[rows],
        close=market.close[rows], volume=market.volume[rows],
        features=market.features[rows], feature_names=market.feature_names,
        predictions=market.predictions[rows], prediction_names=market.prediction_names,
        sigma=market.sigma[rows], timestamps=market.timestamps[rows],
    )


def align_markets(markets: Sequence[MarketArrays]) -> list[MarketArrays]:
    """The markets restricted to the timestamps present in all of them.

    Every market needs timestamps. How many bars each symbol lost is logged
    (WARNING, logger ``tradingrl.envs.panel``) whenever any bar is dropped;
    :func:`alignment_losses` returns those counts. A market that loses nothing
    is returned as is. Raises ValueError when fewer than 2 common bars remain.
    """
    markets = _check_sequence(markets)
    common = _common_timestamps(markets)
    if common.shape[0] < 2:
        raise ValueError(f"the markets share {common.shape[0]} timestamp(s); need at least 2")
    losses = {m.symbol: len(m) - common.shape[0] for m in markets}
    if any(losses.values()):
        logger.warning("align_markets: kept %d common bars; bars dropped per symbol: %s",
                       common.shape[0], losses)
    aligned = []
    for market in markets:
        if losses[market.symbol] == 0:
            aligned.append(market)
        else:
            rows = np.flatnonzero(np.isin(market.timestamps, common, assume_unique=True))
            aligned.append(_take_bars(market, rows))
    return aligned


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class MarketPanel:
    """N aligned symbols' arrays stacked for a portfolio environment (read-only).

    T bars, N symbols, F features and P predictions per symbol:
    open, high, low, close, volume, sigma, log_returns: float64 (T, N), as in
    :class:`MarketArrays` (sigma keeps its leading warm-up NaNs, log_returns
    is NaN at bar 0).
    features: float32 (N, T, F); predictions: float32 (T, N, P).
    first_sigma_bar: first bar at which every symbol's sigma is known.
    """

    symbols: tuple[str, ...]
    feature_names: tuple[str, ...]
    prediction_names: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sigma: np.ndarray
    log_returns: np.ndarray
    features: np.ndarray
    predictions: np.ndarray
    timestamps: np.ndarray | None
    first_sigma_bar: int

    @property
    def n_bars(self) -> int:
        return self.close.shape[0]

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)


def stack_markets(markets: Sequence[MarketArrays]) -> MarketPanel:
    """Stack markets that share the same bars (see :func:`check_same_bars`) and
    the same ordered feature and prediction columns into one :class:`MarketPanel`."""
    markets = _check_sequence(markets)
    check_same_bars(markets)
    reference = markets[0]
    for market in markets[1:]:
        if market.feature_names != reference.feature_names:
            raise ValueError(f"{market.symbol} has features {market.feature_names} but "
                             f"{reference.symbol} has {reference.feature_names}; every symbol "
                             "needs the same ordered feature columns")
        if market.prediction_names != reference.prediction_names:
            raise ValueError(f"{market.symbol} has predictions {market.prediction_names} but "
                             f"{reference.symbol} has {reference.prediction_names}; every "
                             "symbol needs the same ordered prediction columns")

    def columns(key: str) -> np.ndarray:
        return _frozen(np.stack([getattr(m, key) for m in markets], axis=1))

    return MarketPanel(
        symbols=tuple(m.symbol for m in markets),
        feature_names=reference.feature_names,
        prediction_names=reference.prediction_names,
        open=columns("open"), high=columns("high"), low=columns("low"),
        close=columns("close"), volume=columns("volume"), sigma=columns("sigma"),
        log_returns=columns("log_returns"),
        features=_frozen(np.stack([m.features for m in markets], axis=0)),
        predictions=columns("predictions"),
        timestamps=reference.timestamps,
        first_sigma_bar=max(m.first_sigma_bar for m in markets),
    )
