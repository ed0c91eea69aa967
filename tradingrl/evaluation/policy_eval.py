"""Walk-forward evaluation of the hybrid policy against baselines, one fold at a time.

A fold is a pure function of its spans and settings (:func:`evaluate_fold`),
so folds can run in any order or in parallel. For fold k (test block k of the
walk-forward plan, :mod:`tradingrl.evaluation.walk_forward`):

1. Agent data: the rows of the agent table (features + out-of-fold CNN+LSTM
   predictions + OHLCV) strictly before the test block, minus an embargo;
   every prediction there was made by a model fitted before its own block.
   Its last ``val_fraction`` of sessions validates (early stopping, choice of
   seed), the rest trains. The agent's feature scaler is fitted on the
   training part only.
2. The agent is trained for every seed (the same settings as the
   ``train_agent`` stage); the seed with the best validation score is the
   fold's policy, chosen before the test block is touched.
3. Test: every symbol's test block is traded from the bar before the block
   (whose decision fills at the block's first bar) to its end, by the policy
   in the environment and by the baselines through the backtester, with the
   same costs and risk layer. The fold's CNN+LSTM predictions in the test
   block are the out-of-fold ones of that block.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.envs.arrays import MarketArrays
from tradingrl.evaluation.walk_forward import Fold

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


def _rollout_steps(rollout: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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
    from tradingrl.backtest import backtest_positions

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


@dataclass(frozen=True)
class FoldConfig:
    """Everything a fold needs besides its data.

    settings: the agent's AgentSettings; env_kwargs: the env's keyword
    arguments (costs, risk_fn, window...); features / prediction_names: the
    agent's state columns; val_fraction: the agent's validation share of the
    pre-test span; embargo_timestamps: sessions left out between the agent's
    data and the test block; baselines: BaselineSettings; out_dir: where the
    fold's agents are trained (checkpoints, best models).
    """

    settings: Any
    env_kwargs: Mapping[str, Any]
    features: tuple[str, ...]
    prediction_names: tuple[str, ...]
    val_fraction: float
    out_dir: Path
    embargo_timestamps: int = 0
    baselines: BaselineSettings = field(default_factory=BaselineSettings)


def evaluate_fold_job(table: pd.DataFrame, fold: Fold, config: FoldConfig,
                      torch_threads: int = 1) -> dict[str, Any]:
    """:func:`evaluate_fold` as a piece of work for another process (a Dask
    worker): sets torch's intra-op threads there first, as the stage does."""
    import torch

    torch.set_num_threads(int(torch_threads))
    return evaluate_fold(table, fold, config)


def evaluate_fold(table: pd.DataFrame, fold: Fold, config: FoldConfig) -> dict[str, Any]:
    """Train the fold's agents on the data before ``fold``'s test block and
    trade the block with them and with the baselines (see the module docstring).

    table: the agent table (:func:`tradingrl.agents.data.build_agent_table`).
    Returns {"fold", "spans", "chosen_seed", "seeds": [{seed, best_val_mean_reward,
    series}], "policy": BookSeries, "baselines": {name: BookSeries}}.
    """
    from tradingrl.agents.data import agent_spans, fit_agent_scaler, span_markets
    from tradingrl.agents.training import algorithm_classes, rollout_policy, train_seeds

    sessions = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    before = sessions[sessions < fold.test_start]
    if config.embargo_timestamps:
        before = before[:-config.embargo_timestamps]
    if len(before) < 3:
        raise ValueError(f"fold {fold.index}: {len(before)} sessions with out-of-fold "
                         "predictions before its test block; the agent needs more")
    history = table[table["timestamp"] <= before[-1]]
    spans = agent_spans(history, config.val_fraction)
    scaler = fit_agent_scaler(table, config.features, spans["train_start"], spans["train_end"])
    window = int(config.env_kwargs.get("window", 20))
    train = span_markets(table, scaler, config.prediction_names, start=spans["train_start"],
                         end=spans["train_end"], lookback=0)
    val = span_markets(table, scaler, config.prediction_names, start=spans["val_start"],
                       end=spans["val_end"], lookback=window)
    test = span_markets(table, scaler, config.prediction_names, start=fold.test_start,
                        end=fold.test_end, lookback=window)
    results = train_seeds(train, val, config.settings, out_dir=Path(config.out_dir),
                          env_kwargs=config.env_kwargs)

    env = dict(config.env_kwargs)
    stamps = []
    seed_books = []
    for agent in results.agents:
        model = algorithm_classes()[config.settings.algorithm].load(
            agent.best_model_path, device="cpu")
        rollouts = [rollout_policy(m, model, env) for m in test]
        if not stamps:
            stamps = [m.timestamps[r["bar"].astype(np.int64)] for m, r in zip(test, rollouts,
                                                                              strict=True)]
        seed_books.append(equal_weight_book([_rollout_steps(r) for r in rollouts], stamps))
    chosen = int(np.argmax([a.best_val_mean_reward for a in results.agents]))

    # Baselines: the same decision bars as the env (its first decision bar is
    # the last bar before the block when the market carries `window` bars before it).
    closes = {s: g["close"].to_numpy() for s, g in table.groupby("symbol", sort=False)}
    times = {s: g["timestamp"].to_numpy() for s, g in table.groupby("symbol", sort=False)}
    per_baseline: dict[str, list[dict[str, np.ndarray]]] = {n: [] for n in BASELINE_NAMES}
    base_stamps = []
    for market in test:
        first = max(window - 1, market.first_sigma_bar)
        n_steps = len(market) - 1 - first
        full = sma_signal(closes[market.symbol], config.baselines.sma_fast,
                          config.baselines.sma_slow, config.baselines.sma_short)
        # Map the symbol's full-history signal onto the market's bars by timestamp.
        where = pd.DatetimeIndex(times[market.symbol]).tz_convert("UTC").tz_localize(None)
        index = where.get_indexer(pd.DatetimeIndex(market.timestamps))
        if (index < 0).any():
            raise ValueError(f"{market.symbol}: market bars missing from the table")
        targets = baseline_targets(market, first, n_steps, full[index], config.baselines)
        for name, series in targets.items():
            per_baseline[name].append(backtest_sleeve(market, series, first, env))
        base_stamps.append(market.timestamps[first + 1:first + 1 + n_steps])
    baselines = {name: equal_weight_book(steps, base_stamps)
                 for name, steps in per_baseline.items() if len(steps) == len(test)}
    return {
        "fold": fold.index,
        "spans": {k: v.isoformat() for k, v in spans.items()},
        "test": {"start": fold.test_start.isoformat(), "end": fold.test_end.isoformat()},
        "symbols": [m.symbol for m in test],
        "chosen_seed": results.agents[chosen].seed,
        "seeds": [{"seed": a.seed, "best_val_mean_reward": a.best_val_mean_reward,
                   "series": book} for a, book in zip(results.agents, seed_books, strict=True)],
        "policy": seed_books[chosen],
        "baselines": baselines,
    }


def concatenate(books: Sequence[BookSeries]) -> BookSeries:
    """Consecutive folds' books, in order, as one series."""
    return BookSeries(*(np.concatenate([getattr(b, f) for b in books]) for f in
                        ("timestamps", "log_return", "position", "exposure", "turnover", "cost")))


def summarise(book: BookSeries, *, bars_per_year: int = 252) -> dict[str, float | None]:
    """:func:`~tradingrl.evaluation.performance.performance_summary` of a book
    (equity0 = 1; costs as fractions of the initial book), NaN -> None."""
    from tradingrl.evaluation.performance import performance_summary

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
