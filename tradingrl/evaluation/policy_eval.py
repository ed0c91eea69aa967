"""Walk-forward evaluation of the hybrid policy against baselines, one fold at a time.

A fold is a pure function of its spans and settings (:func:`evaluate_fold`),
so folds can run in any order or in parallel. For fold k (test block k of the
walk-forward plan, :mod:`tradingrl.splits.walk_forward`):

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
   (whose decision fills at the block's first bar) to its end; the bars
   before the block are its history (:func:`tradingrl.agents.data.history_lookback`
   of them: the observation window, the risk layer's returns, the known
   volume), so its first decisions are made with the history the served
   policy has on the same bars, never forced flat for want of it; by the policy
   in the environment and by the baselines through the backtester, with the
   same costs and risk layer. The fold's CNN+LSTM predictions in the test
   block are the out-of-fold ones of that block. Every book ends flat at the
   block's last bar and pays that exit with the same cost model
   (:func:`tradingrl.evaluation.books.block_env`), and records its capped
   fills and unfilled notional.

Books and baselines: :mod:`tradingrl.evaluation.books` for single-asset
agents (one sleeve per symbol); a portfolio agent (``env_kind: portfolio``)
trades the block's symbols from one account, and its baselines (equal
weight and inverse volatility among them) trade the same env:
:mod:`tradingrl.evaluation.portfolio_books`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.evaluation.books import (
    BASELINE_NAMES,
    BaselineSettings,
    BookSeries,
    backtest_sleeve,
    baseline_targets,
    block_env,
    equal_weight_book,
    rollout_steps,
    sma_signal,
)
from tradingrl.splits.walk_forward import Fold


@dataclass(frozen=True)
class FoldConfig:
    """Everything a fold needs besides its data.

    settings: the agent's AgentSettings; env_kwargs: the env's keyword
    arguments (costs, risk_fn, window...); features / prediction_names: the
    agent's state columns; val_fraction: the agent's validation share of the
    pre-test span; embargo_timestamps: sessions left out between the agent's
    data and the test block; baselines: BaselineSettings; out_dir: where the
    fold's agents are trained (checkpoints, best models); search: the agent
    search (:class:`~tradingrl.agents.search.AgentSearchSettings`) run on the
    fold's validation span before its seeds train, or None.
    """

    settings: Any
    env_kwargs: Mapping[str, Any]
    features: tuple[str, ...]
    prediction_names: tuple[str, ...]
    val_fraction: float
    out_dir: Path
    embargo_timestamps: int = 0
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    search: Any = None


@dataclass(frozen=True)
class SeedBook:
    """One seed's agent in a fold: its best validation mean reward and its
    book over the fold's test block."""

    seed: int
    best_val_mean_reward: float
    series: BookSeries


@dataclass(frozen=True)
class FoldResult:
    """What :func:`evaluate_fold` returns for one fold.

    fold: the fold's index; spans: the agent's train/val start and end (ISO);
    test: the test block's start and end (ISO); symbols: the symbols traded;
    chosen_seed: the seed chosen on validation; seeds: every seed's book;
    policy: the chosen seed's book; baselines: name -> book; search: the
    fold's agent search (AgentSearch.to_json()), None without one.
    """

    fold: int
    spans: dict[str, str]
    test: dict[str, str]
    symbols: list[str]
    chosen_seed: int
    seeds: list[SeedBook]
    policy: BookSeries
    baselines: dict[str, BookSeries]
    search: dict[str, Any] | None = None


def first_decision_bar(market: Any, window: int) -> int:
    """The environment's first decision bar on ``market`` with observation
    ``window`` (:class:`~tradingrl.envs.episode.TradingEpisode`'s rule with
    start_bar 0): the window full, sigma known, the history bars passed."""
    return max(window - 1, market.first_sigma_bar, market.history_bars - 1)


def evaluate_fold_job(table: pd.DataFrame, fold: Fold, config: FoldConfig,
                      torch_threads: int = 1) -> FoldResult:
    """:func:`evaluate_fold` as a piece of work for another process (a Dask
    worker): sets torch's intra-op threads there first, as the stage does."""
    import torch

    torch.set_num_threads(int(torch_threads))
    return evaluate_fold(table, fold, config)


def train_fold_seed_job(table: pd.DataFrame, fold: Fold, config: FoldConfig, seed: int,
                        torch_threads: int = 1) -> int:
    """One seed of one fold's agents, as a piece of work for another process:
    :func:`~tradingrl.agents.training.train_agent` on the fold's training and
    validation markets (:func:`fold_markets`) in the folder where
    :func:`evaluate_fold` (through ``train_seeds``) looks for it, which then
    reads it back instead of training it. Sets torch's intra-op threads
    first, as the stage does. Returns the agent's timesteps."""
    import torch

    from tradingrl.agents.training import searched_settings, seed_dir, train_agent

    torch.set_num_threads(int(torch_threads))
    _, train, val, _ = fold_markets(table, fold, config)
    # With a search, read back: search_fold_job ran it in the same folder.
    settings, _ = searched_settings(train, val, config.settings, out_dir=config.out_dir,
                                    env_kwargs=config.env_kwargs, search=config.search)
    agent = train_agent(train, val, settings, seed=seed,
                        out_dir=seed_dir(config.out_dir, seed), env_kwargs=config.env_kwargs)
    return agent.timesteps


def search_fold_job(table: pd.DataFrame, fold: Fold, config: FoldConfig,
                    torch_threads: int = 1) -> int:
    """The fold's agent search (``searched_settings``, where ``train_seeds``
    looks for it) as a piece of work for another process; its trials run one
    after another, each depending on the ones before. Returns the number of
    trials."""
    import torch

    from tradingrl.agents.training import searched_settings

    torch.set_num_threads(int(torch_threads))
    _, train, val, _ = fold_markets(table, fold, config)
    _, found = searched_settings(train, val, config.settings, out_dir=config.out_dir,
                                 env_kwargs=config.env_kwargs, search=config.search)
    return 0 if found is None else found.n_trials


def fold_markets(table: pd.DataFrame, fold: Fold, config: FoldConfig
                 ) -> tuple[dict[str, pd.Timestamp], list[Any], list[Any], list[Any]]:
    """The fold's agent data (module docstring, step 1): its spans and the
    training, validation and test markets, one per symbol, scaled with the
    scaler fitted on the training span (the validation and test markets carry
    :func:`~tradingrl.agents.data.history_lookback` bars of history)."""
    from tradingrl.agents.data import (
        agent_spans,
        fit_agent_scaler,
        history_lookback,
        span_markets,
    )

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
    lookback = history_lookback(config.env_kwargs)
    train = span_markets(table, scaler, config.prediction_names, start=spans["train_start"],
                         end=spans["train_end"], lookback=0)
    val = span_markets(table, scaler, config.prediction_names, start=spans["val_start"],
                       end=spans["val_end"], lookback=lookback)
    test = span_markets(table, scaler, config.prediction_names, start=fold.test_start,
                        end=fold.test_end, lookback=lookback)
    return spans, train, val, test


def evaluate_fold(table: pd.DataFrame, fold: Fold, config: FoldConfig) -> FoldResult:
    """Train the fold's agents on the data before ``fold``'s test block and
    trade the block with them and with the baselines (see the module docstring).

    table: the agent table (:func:`tradingrl.agents.data.build_agent_table`).
    """
    from tradingrl.agents.training import algorithm_classes, train_seeds

    spans, train, val, test = fold_markets(table, fold, config)
    window = int(config.env_kwargs.get("window", 20))
    results = train_seeds(train, val, config.settings, out_dir=Path(config.out_dir),
                          env_kwargs=config.env_kwargs, search=config.search)

    model_class = algorithm_classes()[config.settings.algorithm]
    models = [model_class.load(a.best_model_path, device="cpu") for a in results.agents]
    sma = _sma_targets(table, test, config.baselines)
    if config.settings.env == "portfolio":
        seed_books, baselines = _portfolio_books(test, models, sma, config, fold.index)
    else:
        seed_books, baselines = _sleeve_books(test, models, sma, config, fold.index, window)
    chosen = int(np.argmax([a.best_val_mean_reward for a in results.agents]))
    return FoldResult(
        fold=fold.index,
        spans={k: v.isoformat() for k, v in spans.items()},
        test={"start": fold.test_start.isoformat(), "end": fold.test_end.isoformat()},
        symbols=[m.symbol for m in test],
        chosen_seed=results.agents[chosen].seed,
        seeds=[SeedBook(a.seed, a.best_val_mean_reward, book)
               for a, book in zip(results.agents, seed_books, strict=True)],
        policy=seed_books[chosen],
        baselines=baselines,
        search=None if results.search is None else results.search.to_json(),
    )


def _sma_targets(table: pd.DataFrame, markets: list[Any],
                 settings: BaselineSettings) -> list[np.ndarray]:
    """Each market's SMA crossover target on its own bars: computed on the
    symbol's whole close history in the table (past-only) and mapped onto the
    market's bars by timestamp."""
    out = []
    groups = {s: g for s, g in table.groupby("symbol", sort=False)}
    for market in markets:
        group = groups[market.symbol]
        full = sma_signal(group["close"].to_numpy(), settings.sma_fast, settings.sma_slow,
                          settings.sma_short)
        where = pd.DatetimeIndex(group["timestamp"]).tz_convert("UTC").tz_localize(None)
        index = where.get_indexer(pd.DatetimeIndex(market.timestamps))
        if (index < 0).any():
            raise ValueError(f"{market.symbol}: market bars missing from the table")
        out.append(full[index])
    return out


def _sleeve_books(test: list[Any], models: list[Any], sma: list[np.ndarray],
                  config: FoldConfig, fold: int, window: int
                  ) -> tuple[list[BookSeries], dict[str, BookSeries]]:
    """Single-asset agents: every symbol traded in its own sleeve, by each
    seed's model in the env and by the baselines through the backtester,
    on the same decision bars (the env's first decision bar is the last bar
    before the block: the market's history ends there)."""
    from tradingrl.agents.training import rollout_policy

    env = block_env(config.env_kwargs)
    stamps: list[np.ndarray] = []
    seed_books = []
    for model in models:
        rollouts = [rollout_policy(m, model, env) for m in test]
        if not stamps:
            stamps = [m.timestamps[r["bar"].astype(np.int64)] for m, r in zip(test, rollouts,
                                                                              strict=True)]
        seed_books.append(equal_weight_book([rollout_steps(r) for r in rollouts], stamps))
    per_baseline: dict[str, list[dict[str, np.ndarray]]] = {n: [] for n in BASELINE_NAMES}
    base_stamps = []
    for market, signal in zip(test, sma, strict=True):
        first = first_decision_bar(market, window)
        n_steps = len(market) - 1 - first
        targets = baseline_targets(market, first, n_steps, signal, config.baselines, fold=fold)
        for name, series in targets.items():
            per_baseline[name].append(backtest_sleeve(market, series, first, env))
        base_stamps.append(market.timestamps[first + 1:first + 1 + n_steps])
    baselines = {name: equal_weight_book(steps, base_stamps)
                 for name, steps in per_baseline.items() if len(steps) == len(test)}
    return seed_books, baselines


def _portfolio_books(test: list[Any], models: list[Any], sma: list[np.ndarray],
                     config: FoldConfig, fold: int
                     ) -> tuple[list[BookSeries], dict[str, BookSeries]]:
    """Portfolio agents: one account over the block's symbols, traded by
    each seed's model and by the portfolio baselines in the same env
    (:mod:`tradingrl.evaluation.portfolio_books`)."""
    from tradingrl.evaluation.portfolio_books import (
        baseline_weights,
        block_portfolio_env,
        policy_act,
        rollout_book,
        weights_act,
    )

    seed_books = [rollout_book(block_portfolio_env(test, config.env_kwargs), policy_act(model))
                  for model in models]
    # The baselines' actions are target weights, whatever the agent's action rule.
    targets = {**config.env_kwargs, "action_mode": "target", "no_trade_band": 0.0}
    probe = block_portfolio_env(test, targets)
    first, n_steps = probe.first_bar, probe.last_bar - probe.first_bar
    weights = baseline_weights(test, first, n_steps, sma, config.baselines, fold=fold)
    baselines = {name: rollout_book(block_portfolio_env(test, targets), weights_act(w))
                 for name, w in weights.items()}
    return seed_books, baselines
