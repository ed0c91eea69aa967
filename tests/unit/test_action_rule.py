"""The action's meaning: the residual action starts from the supervised
position, and the no-trade band never sends an order below its threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.markets import random_market
from tradingrl.agents.reference import ConstantPolicy
from tradingrl.agents.training import rollout_policy, zero_action_mean
from tradingrl.envs import ExecutionCosts, SingleAssetTradingEnv, risk_layer_hook
from tradingrl.envs.decision import (
    ActionRule,
    banded_target,
    requested_target,
    signal_columns,
    supervised_signal,
)
from tradingrl.evaluation.books import (
    BaselineSettings,
    backtest_sleeve,
    block_env,
    supervised_targets,
)
from tradingrl.evaluation.policy_eval import first_decision_bar
from tradingrl.risk import RiskLimits

NAMES = ("p_down", "p_flat", "p_up", "expected_return", "confidence")


def _env(**extra):
    return {"window": 5, "costs": ExecutionCosts(), "initial_cash": 1_000_000.0,
            "risk_fn": risk_layer_hook(RiskLimits(min_history=5)), "risk_lookback": 30,
            **extra}


# ------------------------------------------------------------------ the rule itself
def test_residual_request_is_the_signal_plus_the_scaled_action():
    rule = ActionRule("residual", residual_scale=0.5)
    row = np.array([0.2, 0.1, 0.7, 0.0, 0.5], dtype=np.float32)
    columns = signal_columns(NAMES, rule)
    assert columns == (2, 0)
    signal = float(np.float32(0.7)) - float(np.float32(0.2))
    assert requested_target(0.0, rule=rule, predictions=row, columns=columns) == signal
    assert requested_target([0.4], rule=rule, predictions=row, columns=columns) == (
        signal + 0.2)
    # The action is clipped to [-1, 1] before scaling, the request after adding.
    assert requested_target(-3.0, rule=rule, predictions=row, columns=columns) == signal - 0.5
    assert requested_target(1.0, rule=ActionRule("residual"), predictions=row,
                            columns=columns) == 1.0
    # The target rule ignores the predictions.
    assert requested_target(0.4) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="NaN"):
        requested_target(math.nan, rule=rule, predictions=row, columns=columns)


def test_residual_rule_needs_p_up_and_p_down():
    with pytest.raises(ValueError, match="p_up"):
        signal_columns(("p_down", "confidence"), ActionRule("residual"))
    assert signal_columns(("confidence",), ActionRule("target")) == (-1, -1)
    with pytest.raises(ValueError, match="action_mode"):
        ActionRule("delta")
    with pytest.raises(ValueError, match="no_trade_band"):
        ActionRule(no_trade_band=1.0)
    with pytest.raises(ValueError, match="residual_scale"):
        ActionRule(residual_scale=0.0)


@given(target=st.floats(-1, 1), position=st.floats(-1.5, 1.5), band=st.floats(0, 0.99))
def test_banded_target_holds_exactly_below_the_band(target, position, band):
    out = banded_target(target, position, band)
    if target != 0.0 and abs(target - position) < band:
        assert out == position
    else:
        assert out == target


# ------------------------------------------------------------------ in the environment
@settings(max_examples=40, deadline=None)
@given(actions=st.lists(st.floats(-1, 1), min_size=30, max_size=30),
       band=st.floats(0.0, 0.5), seed=st.integers(0, 5))
def test_no_trade_band_never_orders_below_its_threshold(actions, band, seed):
    """Whatever the actions: a step whose (risk-free, so requested) target is
    non-zero and less than ``band`` from the observed position trades nothing
    and pays nothing; every other change of more than the minimum trade is
    ordered."""
    market = random_market(80, seed=seed)
    env = SingleAssetTradingEnv(market, window=5, no_trade_band=band)
    obs, _ = env.reset()
    for action in actions:
        position = float(obs[-4])
        obs, _, terminated, truncated, info = env.step(np.array([action], dtype=np.float32))
        requested = info["requested_target"]
        if requested != 0.0 and abs(requested - position) < band:
            # Holding the float32 position leaves an order of float32 round-off
            # (< 1e-6 of equity), which the minimum trade drops.
            assert info["traded_shares"] == 0.0 and info["cost"] == 0.0
            assert info["target"] == position
        else:
            assert info["target"] == requested
        if terminated or truncated:
            break


def test_band_never_holds_the_blocks_closing_step():
    market = random_market(60, seed=3)
    env = SingleAssetTradingEnv(market, window=5, no_trade_band=0.9, close_at_end=True)
    rollout = rollout_policy(market, ConstantPolicy(0.5), {"window": 5, "no_trade_band": 0.9,
                                                           "close_at_end": True})
    # 0 -> 0.5 is within the band: held flat until the end; then a long
    # position held since a wide band was set is still closed.
    assert np.all(rollout["traded_shares"] == 0.0)
    wide = rollout_policy(market, ConstantPolicy(0.95), {"window": 5, "no_trade_band": 0.9,
                                                        "close_at_end": True})
    assert wide["position"][0] > 0.9 and np.all(wide["traded_shares"][1:-1] == 0.0)
    assert wide["position"][-1] == 0.0 and wide["traded_shares"][-1] < 0.0
    assert env.action_rule.no_trade_band == 0.9


# ------------------------------------------------------------------ untrained residual agents
@pytest.mark.parametrize("algorithm", ["ppo", "sac", "td3"])
def test_untrained_residual_agent_trades_the_supervised_baseline_bar_for_bar(algorithm):
    """An agent whose action head is zeroed (what train_agent does before
    training) acts 0 everywhere; in the residual mode its book is the
    supervised baseline's, traded through the same costs, risk layer and
    block-end rule: the same positions, costs and equity on every bar."""
    from tradingrl.agents.training import algorithm_classes

    market = random_market(160, seed=11, symbol="S0", timestamps_from="2020-01-01")
    env_kwargs = block_env(_env(action_mode="residual", residual_scale=1.0))
    env = SingleAssetTradingEnv(market, **env_kwargs)
    extra = {"learning_starts": 10} if algorithm != "ppo" else {"n_steps": 64}
    model = algorithm_classes()[algorithm]("MlpPolicy", env, seed=0, device="cpu", **extra)
    zero_action_mean(model)
    rollout = rollout_policy(market, model, env_kwargs)
    assert np.all(rollout["action"] == 0.0)

    first = first_decision_bar(market, 5)
    assert rollout["decision_bar"][0] == first
    n_steps = len(market) - 1 - first
    targets = supervised_targets(market, first, n_steps, BaselineSettings())
    np.testing.assert_array_equal(rollout["requested_target"], targets)
    baseline = backtest_sleeve(market, targets, first, env_kwargs)
    np.testing.assert_array_equal(rollout["position"], baseline["position"])
    np.testing.assert_array_equal(rollout["cost"], baseline["cost"])
    np.testing.assert_array_equal(rollout["equity"], baseline["equity"])
    assert np.abs(rollout["position"]).max() > 0.05  # it really traded


def test_supervised_signal_is_the_baselines_target():
    market = random_market(50, seed=2)
    preds = market.predictions.astype(np.float64)
    np.testing.assert_array_equal(
        supervised_targets(market, 0, 50, BaselineSettings()),
        np.clip(supervised_signal(preds[:, 2], preds[:, 0]), -1, 1))
