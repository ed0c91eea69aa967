"""A portfolio agent (``env_kind: portfolio``) through the walk-forward
evaluation: one account over all symbols, judged against the portfolio
baselines (equal weight and inverse volatility among them) in the same env,
with the same costs and risk layer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.markets import random_market
from tradingrl.evaluation.books import BaselineSettings
from tradingrl.evaluation.portfolio_books import (
    PORTFOLIO_BASELINE_NAMES,
    baseline_weights,
    block_portfolio_env,
    rollout_book,
    weights_act,
)


def _markets(n: int = 3, bars: int = 200) -> list:
    return [random_market(bars, seed=k, symbol=f"S{k}", timestamps_from="2020-01-01") for k in range(n)]


def test_baselines_request_their_weights_at_every_decision_bar() -> None:
    markets = _markets()
    env_kwargs = {"window": 1, "risk_lookback": 20}
    probe = block_portfolio_env(markets, env_kwargs)
    first, n_steps = probe.first_bar, probe.last_bar - probe.first_bar
    sma = [np.ones(len(m)) for m in markets]
    weights = baseline_weights(markets, first, n_steps, sma, BaselineSettings(), fold=1)
    assert tuple(weights) == tuple(n for n in PORTFOLIO_BASELINE_NAMES if n != "supervised"
                                   or "p_up" in markets[0].prediction_names)
    for name in ("equal_weight", "inverse_volatility", "flat", "sma_crossover"):
        env = block_portfolio_env(markets, env_kwargs)
        act = weights_act(weights[name])
        env.reset()
        for _ in range(n_steps - 1):  # the last step closes the block
            t = env.bar
            _, _, _, _, info = env.step(act(None, env))
            sigma = env.panel.sigma[t]
            expected = {"equal_weight": np.full(3, 1 / 3), "flat": np.zeros(3),
                        "sma_crossover": np.full(3, 1 / 3),
                        "inverse_volatility": (1 / sigma) / (1 / sigma).sum()}[name]
            np.testing.assert_allclose(info["requested_weights"], expected, atol=1e-6)
    book = rollout_book(block_portfolio_env(markets, env_kwargs), weights_act(weights["flat"]))
    assert len(book.log_return) == n_steps
    assert np.all(book.log_return == 0.0) and np.all(book.turnover == 0.0)
    held = rollout_book(block_portfolio_env(markets, env_kwargs),
                        weights_act(weights["buy_and_hold"]))
    # Bought once at the first fill, then held (no risk layer). Sized at the
    # decision bar's close, filled at the next open, the book can be slightly
    # over gross 1 (a small overdraft); the next bar trims it, then no trade.
    assert held.turnover[0] > 0.9 and held.turnover[1] < 0.01
    assert np.all(held.turnover[2:-1] == 0.0)
    assert held.turnover[-1] > 0.9  # the block ends in cash


def test_walk_forward_judges_a_portfolio_agent_against_portfolio_baselines(
        tmp_path: Path) -> None:
    """The ablation's walk-forward with a portfolio agent on a tiny random
    walk: every fold has the policy and each portfolio baseline on the same
    fill bars, and the gate refuses. Departure from the defaults: the tiny
    budget of the ablation's other smoke tests (the action is the shipped
    residual one)."""
    from benchmarks import bench_agent_ablation

    out = tmp_path / "portfolio.json"
    bench_agent_ablation.main([
        "--market", "random_walk", "--symbols", "3", "--bars", "400", "--model", "noise",
        "--configs", "shipped",
        "--set", 'env_kind="portfolio"', "total_timesteps=512", "eval_freq=256",
        "checkpoint_freq=512", "seeds=[0, 1]", "algorithm_kwargs.ppo.n_steps=128",
        "--out", str(out)])
    row = json.loads(out.read_text())["results"][0]
    assert row["promoted"] is False
    assert set(row["baselines"]) == set(PORTFOLIO_BASELINE_NAMES)
    assert row["baselines"]["flat"]["sharpe"] is None or row["baselines"]["flat"]["sharpe"] == 0
    ew, iv = row["baselines"]["equal_weight"], row["baselines"]["inverse_volatility"]
    assert ew["sharpe"] != iv["sharpe"]
    assert len(row["per_fold_sharpe"]) >= 1
