"""Books and baselines: how every policy of the evaluation is traded and scored.

Book: each symbol gets an equal share of capital and is traded on its own;
the book's equity is the sum (:func:`equal_weight_book`).

Baselines (targets decided at bar t from bars <= t only):
- ``buy_and_hold``: target 1; ``flat``: target 0;
- ``sma_crossover``: 1 when the fast simple moving average of closes is
  above the slow one, else 0 (or -1 with ``sma_short``);
- ``supervised``: p_up - p_down of the CNN+LSTM at t, 0 when its confidence
  is below ``supervised_min_confidence``;
- ``random``: uniform in [-1, 1], seeded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.backtest import backtest_positions
from tradingrl.envs.arrays import MarketArrays
from tradingrl.evaluation.performance import performance_summary

BASELINE_NAMES: tuple[str, ...] = ("buy_and_hold", "flat", "sma_crossover", "supervised", "random")


@dataclass(frozen=True)
class BaselineSettings:
    """Parameters of the baselines (see the module docstring)."""

    sma_fast: int = 20
    sma_slow: int = 50
    sma_short: bool = False
    supervised_min_confidence: float = 0.0
    random_seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.sma_fast < self.sma_slow:
            raise ValueError(f"need 1 <= sma_fast < sma_slow, got {self.sma_fast}, {self.sma_slow}")
        if not 0.0 <= self.supervised_min_confidence <= 1.0:
            raise ValueError("supervised_min_confidence must be in [0, 1]")


@dataclass(frozen=True)
class BookSeries:
    """Per-step series of an equal-weight book (step k fills at ``timestamps[k]``).

    log_return: log change of book equity, net of costs.
    position: net position of the book (sum of position x equity over sum of
        equity), a signed fraction of equity.
    exposure: gross position (sum of |position| x equity / sum of equity).
    turnover: traded notional / book equity before the step.
    cost: costs paid / book equity before the step.
    """

    timestamps: np.ndarray
    log_return: np.ndarray
    position: np.ndarray
    exposure: np.ndarray
    turnover: np.ndarray
    cost: np.ndarray

    def frame(self, series: str, fold: int) -> pd.DataFrame:
        """Long-format rows for the report: ``position`` is the gross exposure,
        ``net_position`` the signed one."""
        return pd.DataFrame({
            "series": series, "fold": fold,
            "timestamp": pd.DatetimeIndex(self.timestamps).tz_localize("UTC"),
            "log_return": self.log_return, "position": self.exposure,
            "net_position": self.position, "turnover": self.turnover, "cost": self.cost,
        })


def sma_signal(close: np.ndarray, fast: int, slow: int, short: bool) -> np.ndarray:
    """Past-only SMA crossover target per bar: 1 where SMA_fast(t) > SMA_slow(t),
    else 0 (or -1 when ``short``); 0 before ``slow`` closes exist."""
    series = pd.Series(np.asarray(close, dtype=np.float64))
    fast_ma = series.rolling(fast, min_periods=fast).mean().to_numpy()
    slow_ma = series.rolling(slow, min_periods=slow).mean().to_numpy()
    out = np.where(fast_ma > slow_ma, 1.0, -1.0 if short else 0.0)
    out[np.isnan(slow_ma)] = 0.0
    return out


def supervised_targets(market: MarketArrays, first_decision: int, n_steps: int,
                       settings: BaselineSettings) -> np.ndarray | None:
    """The ``supervised`` baseline's targets decided at bars ``first_decision ..
    first_decision + n_steps - 1``: p_up - p_down of the trend model at each bar,
    0 where its confidence is below ``settings.supervised_min_confidence``,
    clipped to [-1, 1]. None when the market carries no p_up/p_down."""
    names = market.prediction_names
    if "p_up" not in names or "p_down" not in names:
        return None
    bars = np.arange(first_decision, first_decision + n_steps)
    preds = market.predictions[bars].astype(np.float64)
    target = preds[:, names.index("p_up")] - preds[:, names.index("p_down")]
    if "confidence" in names:
        target[preds[:, names.index("confidence")] < settings.supervised_min_confidence] = 0.0
    return np.clip(target, -1.0, 1.0)


def baseline_targets(market: MarketArrays, first_decision: int, n_steps: int,
                     sma: np.ndarray, settings: BaselineSettings) -> dict[str, np.ndarray]:
    """Target series (one per baseline, ``n_steps`` long) decided at bars
    ``first_decision .. first_decision + n_steps - 1`` of ``market``; ``sma`` is
    the SMA crossover target aligned with the market's bars (computed on the
    symbol's whole close history, past-only)."""
    bars = np.arange(first_decision, first_decision + n_steps)
    out = {"buy_and_hold": np.ones(n_steps), "flat": np.zeros(n_steps),
           "sma_crossover": np.asarray(sma, dtype=np.float64)[bars]}
    supervised = supervised_targets(market, first_decision, n_steps, settings)
    if supervised is not None:
        out["supervised"] = supervised
    rng = np.random.default_rng(settings.random_seed)
    out["random"] = rng.uniform(-1.0, 1.0, n_steps)
    return out


def equal_weight_book(steps: Sequence[Mapping[str, np.ndarray]],
                      timestamps: Sequence[np.ndarray]) -> BookSeries:
    """Combine per-symbol step records (keys equity, equity_before, position,
    cost, turnover; every sleeve starting with the same cash) into one book.
    All sleeves must fill at the same timestamps."""
    if not steps:
        raise ValueError("no sleeves to combine")
    first = np.asarray(timestamps[0])
    for stamps in timestamps[1:]:
        if not np.array_equal(np.asarray(stamps), first):
            raise ValueError("sleeves fill at different timestamps; align the markets first")
    equity = np.sum([s["equity"] for s in steps], axis=0)
    before = np.sum([s["equity_before"] for s in steps], axis=0)
    if (equity <= 0).any():
        raise ValueError("the book was wiped out; its log returns are undefined")
    net = np.sum([s["position"] * s["equity"] for s in steps], axis=0) / equity
    gross = np.sum([np.abs(s["position"]) * s["equity"] for s in steps], axis=0) / equity
    return BookSeries(
        timestamps=first,
        log_return=np.log(equity / before),
        position=net, exposure=gross,
        turnover=np.sum([s["turnover"] * s["equity_before"] for s in steps], axis=0) / before,
        cost=np.sum([s["cost"] for s in steps], axis=0) / before,
    )


def rollout_steps(rollout: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An env rollout (:func:`tradingrl.agents.training.rollout_policy`) as a
    sleeve's per-step record for :func:`equal_weight_book`."""
    before = rollout["equity_before"]
    return {"equity": rollout["equity"], "equity_before": before,
            "position": rollout["position"], "cost": rollout["cost"],
            "turnover": np.abs(rollout["traded_shares"]) * rollout["fill_price"] / before}


def _backtest_steps(result: Any) -> dict[str, np.ndarray]:
    return {"equity": np.asarray(result.equity), "equity_before": np.asarray(result.equity_before),
            "position": np.asarray(result.positions), "cost": np.asarray(result.costs),
            "turnover": np.asarray(result.turnover)}


def backtest_sleeve(market: MarketArrays, targets: np.ndarray, first_decision: int,
                    env: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Trade ``targets`` (decided from bar ``first_decision`` on) on one symbol
    through :func:`~tradingrl.backtest.backtest_positions` with the env's
    costs, cash, fill, minimum trade and risk layer (``env``: the env's keyword
    arguments; missing keys take the env's defaults). Returns the sleeve's
    per-step record for :func:`equal_weight_book`."""
    result = backtest_positions(
        market, targets, start_bar=first_decision, costs=env.get("costs"),
        initial_cash=env.get("initial_cash", 1_000_000.0),
        fill=env.get("fill", "next_open"),
        min_trade_fraction=env.get("min_trade_fraction", 1e-6),
        risk_fn=env.get("risk_fn"), risk_lookback=env.get("risk_lookback", 20))
    return _backtest_steps(result)


def supervised_book(markets: Sequence[MarketArrays], first_decisions: Sequence[int],
                    env: Mapping[str, Any],
                    settings: BaselineSettings | None = None) -> BookSeries:
    """The ``supervised`` baseline's equal-weight book over ``markets`` (one per
    symbol, carrying the trend model's predictions): market i decides from bar
    ``first_decisions[i]`` to its second-last bar (the last decision fills at
    its last bar). Every market must fill at the same timestamps."""
    settings = settings if settings is not None else BaselineSettings()
    steps, stamps = [], []
    for market, first in zip(markets, first_decisions, strict=True):
        n_steps = len(market) - 1 - int(first)
        if n_steps < 1:
            raise ValueError(f"{market.symbol}: no decision bar before the market's last bar")
        targets = supervised_targets(market, int(first), n_steps, settings)
        if targets is None:
            raise ValueError(f"{market.symbol}: the market carries no p_up/p_down predictions")
        steps.append(backtest_sleeve(market, targets, int(first), env))
        stamps.append(market.timestamps[int(first) + 1:int(first) + 1 + n_steps])
    return equal_weight_book(steps, stamps)


def concatenate(books: Sequence[BookSeries]) -> BookSeries:
    """Consecutive folds' books, in order, as one series."""
    return BookSeries(*(np.concatenate([getattr(b, f) for b in books]) for f in
                        ("timestamps", "log_return", "position", "exposure", "turnover", "cost")))


def summarise(book: BookSeries, *, bars_per_year: int = 252) -> dict[str, float | None]:
    """:func:`~tradingrl.evaluation.performance.performance_summary` of a book
    (equity0 = 1; costs as fractions of the initial book), NaN -> None."""
    equity_before = np.exp(np.concatenate(([0.0], np.cumsum(book.log_return)[:-1])))
    stats = performance_summary(book.log_return, positions=book.position,
                                turnover=book.turnover, costs=book.cost * equity_before,
                                equity0=1.0, bars_per_year=bars_per_year)
    stats["exposure"] = float(np.mean(book.exposure))
    return json_safe(stats)


def json_safe(values: Any) -> Any:
    """NaN/inf floats -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(values, Mapping):
        return {k: json_safe(v) for k, v in values.items()}
    if isinstance(values, list | tuple):
        return [json_safe(v) for v in values]
    if isinstance(values, np.generic):
        values = values.item()
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values
