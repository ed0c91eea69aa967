"""Evaluation books: the random baseline's per-(fold, symbol) draws, the
exit cost of a block's open position, and the fill record (capped fills,
unfilled notional) in the books' summaries."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.markets import random_market
from tradingrl.agents.reference import ConstantPolicy
from tradingrl.agents.training import rollout_policy
from tradingrl.envs import ExecutionCosts, risk_layer_hook
from tradingrl.evaluation.books import (
    BaselineSettings,
    backtest_sleeve,
    baseline_targets,
    block_env,
    equal_weight_book,
    random_targets,
    rollout_steps,
    summarise,
    symbol_key,
)
from tradingrl.evaluation.performance import fill_record_summary


# ------------------------------------------------------------------ random baseline
def _random_draws(symbol: str, fold: int, seed: int = 0, n: int = 50) -> np.ndarray:
    market = random_market(120, seed=1, symbol=symbol)
    return baseline_targets(market, 60, n, np.zeros(len(market)), BaselineSettings(random_seed=seed),
                            fold=fold)["random"]


def test_random_baseline_draws_differ_across_symbols_and_folds() -> None:
    a0, b0, a1 = _random_draws("AAA", 0), _random_draws("BBB", 0), _random_draws("AAA", 1)
    assert not np.allclose(a0, b0)
    assert not np.allclose(a0, a1)
    assert np.all((a0 >= -1.0) & (a0 <= 1.0))
    assert abs(np.corrcoef(a0, b0)[0, 1]) < 0.5


def test_random_baseline_is_reproducible_and_follows_the_seed() -> None:
    np.testing.assert_array_equal(_random_draws("AAA", 2), _random_draws("AAA", 2))
    np.testing.assert_array_equal(_random_draws("AAA", 2), random_targets(0, 2, "AAA", 50))
    assert not np.allclose(_random_draws("AAA", 2, seed=0), _random_draws("AAA", 2, seed=1))


def test_symbol_key_is_stable_across_processes() -> None:
    """A fixed value: Python's hash() of a str is salted per process, this is not."""
    assert symbol_key("AAA") == symbol_key("AAA")
    assert symbol_key("AAA") != symbol_key("AAB")
    assert symbol_key("SPY") == int.from_bytes(
        hashlib.blake2b(b"SPY", digest_size=8).digest(), "little")


# ------------------------------------------------------------------ block end
def _thin_market(seed: int, symbol: str = "S0"):
    """Volume thin enough that a 10% cap binds on a full position."""
    volume = np.full(200, 3.0e4)
    return random_market(200, seed=seed, symbol=symbol, volume=volume,
                         timestamps_from="2020-01-01")


ENV = {"window": 5, "costs": ExecutionCosts(), "initial_cash": 1_000_000.0}


def test_block_books_end_flat_and_pay_the_exit() -> None:
    market = _thin_market(1)
    first = 10
    targets = np.ones(len(market) - 1 - first)
    open_end = backtest_sleeve(market, targets, first, ENV)
    closed = backtest_sleeve(market, targets, first, block_env(ENV))
    assert open_end["position"][-1] > 0.5
    assert closed["position"][-1] == 0.0
    assert closed["cost"][-1] > open_end["cost"][-1]
    np.testing.assert_array_equal(closed["equity"][:-1], open_end["equity"][:-1])
    assert closed["capped"][-1] == 0.0  # the exit is not cut by the cap


@pytest.mark.parametrize("risk", [False, True])
def test_policy_and_baseline_books_follow_the_same_block_end_rule(risk: bool) -> None:
    """A constant policy rolled out in the env and the same targets backtested
    as a baseline give the same book, exit cost and fill record included."""
    from tradingrl.risk import RiskLimits

    env = block_env({**ENV, "risk_fn": risk_layer_hook(RiskLimits(min_history=5)),
                     "risk_lookback": 30} if risk else ENV)
    markets = [_thin_market(2, "A"), _thin_market(3, "B")]
    rollouts = [rollout_policy(m, ConstantPolicy(1.0), env) for m in markets]
    first = int(rollouts[0]["bar"][0]) - 1
    stamps = [m.timestamps[r["bar"].astype(np.int64)] for m, r in zip(markets, rollouts,
                                                                      strict=True)]
    policy = equal_weight_book([rollout_steps(r) for r in rollouts], stamps)
    n_steps = len(markets[0]) - 1 - first
    baseline = equal_weight_book([backtest_sleeve(m, np.ones(n_steps), first, env)
                                  for m in markets], stamps)
    for name in ("log_return", "position", "turnover", "cost", "capped", "unfilled"):
        np.testing.assert_allclose(getattr(policy, name), getattr(baseline, name), rtol=1e-9,
                                   atol=1e-15, err_msg=name)
    assert policy.position[-1] == 0.0 and policy.cost[-1] > 0.0
    assert np.nansum(policy.capped) > 0 and np.all(np.isfinite(policy.unfilled))
    stats = summarise(policy)
    assert stats["n_capped_fills"] == float(np.sum(policy.capped)) > 0
    assert 0.0 < stats["unfilled_fraction"] < 1.0


def test_fill_record_summary_by_hand() -> None:
    out = fill_record_summary([1, 0, 2], [100.0, 50.0, 30.0], [20.0, 0.0, 40.0])
    assert out["n_capped_fills"] == 3.0
    assert out["unfilled_fraction"] == pytest.approx(60.0 / 240.0)
    assert np.isnan(fill_record_summary([0], [0.0], [0.0])["unfilled_fraction"])
