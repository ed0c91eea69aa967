"""Books and baselines: how every policy of the evaluation is traded and scored.

Book: each symbol gets an equal share of capital and is traded on its own;
the book's equity is the sum (:func:`equal_weight_book`).

Block end: a book of an evaluation block ends flat. :func:`block_env` is the
one place that says so: it turns on the environment's ``close_at_end`` (and
the backtester's, through :func:`backtest_sleeve`), so the step that fills at
the block's last bar targets flat for the policy and every baseline alike,
uncapped, and pays that exit's commission, spread and square-root impact
with the same cost model; no position is carried out of a block unpaid.

Fill record: every book counts the fills the volume cap cut (``capped``) and
the notional it left unfilled (dropped; the next decision re-targets), and
:func:`summarise` reports ``n_capped_fills`` and ``unfilled_fraction``, the
unfilled share of the requested notional.

Baselines (targets decided at bar t from bars <= t only):
- ``buy_and_hold``: target 1; ``flat``: target 0;
- ``sma_crossover``: 1 when the fast simple moving average of closes is
  above the slow one, else 0 (or -1 with ``sma_short``);
- ``supervised``: p_up - p_down of the CNN+LSTM at t
  (:func:`tradingrl.envs.decision.supervised_signal`, the residual action's
  base too), 0 when its confidence is below ``supervised_min_confidence``;
- ``random``: uniform in [-1, 1], seeded: each (fold, symbol) draws from its
  own generator (:func:`random_targets`), derived from ``random_seed`` with
  numpy's SeedSequence and spawn key (fold, a stable hash of the symbol), so
  the draws differ across symbols and folds and the run stays reproducible.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.backtest import backtest_positions
from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.decision import supervised_signal
from tradingrl.evaluation.performance import fill_record_summary, performance_summary

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
    capped: fills the volume cap cut at the step (sleeves), NaN where the
        sleeves' fill record is not known.
    unfilled: notional the cap left unfilled / book equity before the step
        (NaN where not known).
    """

    timestamps: np.ndarray
    log_return: np.ndarray
    position: np.ndarray
    exposure: np.ndarray
    turnover: np.ndarray
    cost: np.ndarray
    capped: np.ndarray
    unfilled: np.ndarray

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
    target = supervised_signal(preds[:, names.index("p_up")], preds[:, names.index("p_down")])
    if "confidence" in names:
        target[preds[:, names.index("confidence")] < settings.supervised_min_confidence] = 0.0
    return np.clip(target, -1.0, 1.0)


def symbol_key(symbol: str) -> int:
    """A stable 64-bit key of ``symbol`` (BLAKE2b of its UTF-8 bytes): the same
    in every process, unlike Python's salted ``hash()``."""
    digest = hashlib.blake2b(str(symbol).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def random_generator(seed: int, fold: int, symbol: str) -> np.random.Generator:
    """The ``random`` baseline's generator for one (fold, symbol): a
    SeedSequence of ``seed`` with spawn key ``(fold, symbol_key(symbol))``."""
    if fold < 0:
        raise ValueError(f"fold must be >= 0, got {fold}")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(int(fold), symbol_key(symbol)))
    return np.random.default_rng(sequence)


def random_targets(seed: int, fold: int, symbol: str, n_steps: int) -> np.ndarray:
    """The ``random`` baseline's ``n_steps`` targets, uniform in [-1, 1], for
    ``symbol`` in ``fold`` (:func:`random_generator`)."""
    return random_generator(seed, fold, symbol).uniform(-1.0, 1.0, n_steps)


def baseline_targets(market: MarketArrays, first_decision: int, n_steps: int,
                     sma: np.ndarray, settings: BaselineSettings,
                     *, fold: int = 0) -> dict[str, np.ndarray]:
    """Target series (one per baseline, ``n_steps`` long) decided at bars
    ``first_decision .. first_decision + n_steps - 1`` of ``market``; ``sma`` is
    the SMA crossover target aligned with the market's bars (computed on the
    symbol's whole close history, past-only); ``fold``: the walk-forward
    fold's index, which with the symbol picks the random baseline's draws."""
    bars = np.arange(first_decision, first_decision + n_steps)
    out = {"buy_and_hold": np.ones(n_steps), "flat": np.zeros(n_steps),
           "sma_crossover": np.asarray(sma, dtype=np.float64)[bars]}
    supervised = supervised_targets(market, first_decision, n_steps, settings)
    if supervised is not None:
        out["supervised"] = supervised
    out["random"] = random_targets(settings.random_seed, fold, market.symbol, n_steps)
    return out


BOOK_FIELDS: tuple[str, ...] = ("timestamps", "log_return", "position", "exposure", "turnover",
                                "cost", "capped", "unfilled")


def block_env(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The env's keyword arguments for trading an evaluation block: ``env_kwargs``
    with ``close_at_end=True`` (the module docstring's block-end rule), for the
    policy's rollouts and, through :func:`backtest_sleeve`, every baseline."""
    return {**env_kwargs, "close_at_end": True}


def equal_weight_book(steps: Sequence[Mapping[str, np.ndarray]],
                      timestamps: Sequence[np.ndarray]) -> BookSeries:
    """Combine per-symbol step records (keys equity, equity_before, position,
    cost, turnover, and the fill record capped, unfilled (NaN: unknown);
    every sleeve starting with the same cash) into one book. All sleeves must
    fill at the same timestamps."""
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
        capped=np.sum([s["capped"] for s in steps], axis=0),
        unfilled=np.sum([s["unfilled"] for s in steps], axis=0) / before,
    )


def rollout_steps(rollout: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An env rollout (:func:`tradingrl.agents.training.rollout_policy`) as a
    sleeve's per-step record for :func:`equal_weight_book`, its fill record
    (``capped``, ``unfilled_notional``) included."""
    before = rollout["equity_before"]
    return {"equity": rollout["equity"], "equity_before": before,
            "position": rollout["position"], "cost": rollout["cost"],
            "turnover": np.abs(rollout["traded_shares"]) * rollout["fill_price"] / before,
            "capped": np.asarray(rollout["capped"], dtype=np.float64),
            "unfilled": np.asarray(rollout["unfilled_notional"], dtype=np.float64)}


def _backtest_steps(result: Any) -> dict[str, np.ndarray]:
    return {"equity": np.asarray(result.equity), "equity_before": np.asarray(result.equity_before),
            "position": np.asarray(result.positions), "cost": np.asarray(result.costs),
            "turnover": np.asarray(result.turnover),
            "capped": np.asarray(result.capped, dtype=np.float64),
            "unfilled": np.asarray(result.unfilled_notional)}


def backtest_sleeve(market: MarketArrays, targets: np.ndarray, first_decision: int,
                    env: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Trade ``targets`` (decided from bar ``first_decision`` on) on one symbol
    through :func:`~tradingrl.backtest.backtest_positions` with the env's
    costs, cash, fill, minimum trade, risk layer and block-end rule
    (``close_at_end``, see :func:`block_env`) (``env``: the env's keyword
    arguments; missing keys take the env's defaults). Returns the sleeve's
    per-step record for :func:`equal_weight_book`."""
    result = backtest_positions(
        market, targets, start_bar=first_decision, costs=env.get("costs"),
        initial_cash=env.get("initial_cash", 1_000_000.0),
        fill=env.get("fill", "next_open"),
        min_trade_fraction=env.get("min_trade_fraction", 1e-6),
        risk_fn=env.get("risk_fn"), risk_lookback=env.get("risk_lookback", 20),
        close_at_end=env.get("close_at_end", False))
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
    return BookSeries(*(np.concatenate([getattr(b, f) for b in books]) for f in BOOK_FIELDS))


def summarise(book: BookSeries, *, bars_per_year: int = 252) -> dict[str, float | None]:
    """:func:`~tradingrl.evaluation.performance.performance_summary` of a book
    (equity0 = 1; costs as fractions of the initial book) with its fill record
    (:func:`~tradingrl.evaluation.performance.fill_record_summary`:
    n_capped_fills, unfilled_fraction), NaN -> None."""
    equity_before = np.exp(np.concatenate(([0.0], np.cumsum(book.log_return)[:-1])))
    stats = performance_summary(book.log_return, positions=book.position,
                                turnover=book.turnover, costs=book.cost * equity_before,
                                equity0=1.0, bars_per_year=bars_per_year)
    stats["exposure"] = float(np.mean(book.exposure))
    stats.update(fill_record_summary(book.capped, book.turnover * equity_before,
                                     book.unfilled * equity_before))
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
