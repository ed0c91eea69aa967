"""tradingrl.envs.decision: the one code path of the decision (observation,
risk context, risk function) that the environment and the served policy share."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.markets import random_market
from tradingrl.envs import ExecutionCosts, SingleAssetTradingEnv, risk_layer_hook
from tradingrl.envs.decision import (
    ACCOUNT_STATE_NAMES,
    ENV_PARAM_KEYS,
    allowed_target,
    env_kwargs_from_config,
    observation_bound,
    observation_inputs,
    observation_size,
    requested_target,
    return_window,
    risk_columns,
    risk_context,
    risk_fn_from_config,
    write_observation,
)
from tradingrl.envs.portfolio import PortfolioTradingEnv
from tradingrl.envs.risk_hook import portfolio_risk_layer_hook
from tradingrl.risk.limits import RiskLimits

REPO = Path(__file__).resolve().parents[2]
TRAIN_AGENT = yaml.safe_load((REPO / "params.yaml").read_text())["train_agent"]
RISK = {"enabled": True, "forecast_horizon_bars": 5, "max_position": 0.8, "vol_target": 0.15,
        "var_limit": 0.02, "kelly_fraction": 0.5, "confidence_sizing": True, "min_history": 5,
        "drawdown_limit": 0.25, "cooldown_bars": 5}


# ------------------------------------------------------------------ observation
def test_observation_inputs_are_float32_clipped_once():
    features = np.array([[-20.0, 0.5], [3.0, 11.0]])
    predictions = np.array([0.2, -12.0], dtype=np.float32)
    f, p = observation_inputs(features, predictions, np.float64(10.0))  # a float64 bound too
    assert f.dtype == p.dtype == np.float32 and f.flags.c_contiguous
    np.testing.assert_array_equal(f, np.float32([[-10.0, 0.5], [3.0, 10.0]]))
    np.testing.assert_array_equal(p, np.float32([0.2, -10.0]))
    f, p = observation_inputs(features, predictions, None)
    np.testing.assert_array_equal(f, features.astype(np.float32))
    with pytest.raises(ValueError, match="obs_clip must be > 0"):
        observation_inputs(features, predictions, 0.0)
    assert observation_bound(None) == math.inf and observation_bound(3) == 3.0


def test_write_observation_lays_out_window_predictions_and_clipped_account():
    window = np.arange(6, dtype=np.float32)
    predictions = np.float32([0.1, 0.2, 0.3])
    obs = np.full(observation_size(3, 2, 3), np.nan, dtype=np.float32)
    assert obs.size == 6 + 3 + len(ACCOUNT_STATE_NAMES)
    write_observation(obs, window, predictions, 1.5, -0.5, -4.0, 0.2, 2.0)
    np.testing.assert_array_equal(obs[:6], window)
    np.testing.assert_array_equal(obs[6:9], predictions)
    np.testing.assert_array_equal(obs[9:], np.float32([1.5, -0.5, -2.0, 0.2]))
    write_observation(obs, window, predictions, 30.0, -29.0, 0.0, 5.0, 2.0)
    np.testing.assert_array_equal(obs[9:], np.float32([2.0, -2.0, 0.0, 2.0]))


def test_the_environments_observation_is_written_by_the_shared_functions():
    """The env's observation after a few trades equals observation_inputs +
    write_observation applied to its market rows and its account."""
    market = random_market(200, seed=2)
    env = SingleAssetTradingEnv(market, window=4, obs_clip=1.5)
    obs, _ = env.reset(options={"start_bar": 50})
    for action in (0.7, -0.4, 0.9):
        obs, _, _, _, info = env.step(np.float32([action]))
    t = env.bar
    features, predictions = observation_inputs(market.features, market.predictions, 1.5)
    expected = np.empty(env.obs_size, dtype=np.float32)
    equity, close = info["equity"], market.close[t]
    write_observation(expected, features[t - 3:t + 1].reshape(-1), predictions[t],
                      info["shares"] * close / equity, info["cash"] / equity,
                      info["shares"] * (close - env._entry_price) / equity, info["drawdown"],
                      1.5)
    np.testing.assert_array_equal(obs, expected)


def test_requested_target_reads_arrays_and_numbers_and_refuses_nan():
    assert requested_target(np.float32([0.25])) == float(np.float32(0.25))
    assert requested_target(np.array([[3.0]])[0]) == 1.0
    assert requested_target(-7) == -1.0
    with pytest.raises(ValueError, match="^symbol X: action is NaN$"):
        requested_target(np.array([np.nan]), "symbol X: ")


# ------------------------------------------------------------------ risk context
def test_risk_context_reads_confidence_and_expected_return_from_the_prediction_row():
    row = np.float32([0.2, 0.3, 0.5, 0.01, 0.7])
    columns = risk_columns(("p_down", "p_flat", "p_up", "expected_return", "confidence"))
    assert columns == (4, 3) and risk_columns(("p_up",)) == (-1, -1)
    state: dict = {}
    context = risk_context(9, 2.0, 2.5, 0.2, 0.4, np.zeros(3), 0.01, row, columns, state)
    assert context["confidence"] == float(np.float32(0.7))
    assert context["expected_return"] == float(np.float32(0.01))
    assert context["state"] is state and context["bar"] == 9 and context["peak_equity"] == 2.5
    blind = risk_context(9, 2.0, 2.5, 0.2, 0.4, np.zeros(3), 0.01, row[:1], (-1, -1), state)
    assert math.isnan(blind["confidence"]) and math.isnan(blind["expected_return"])


def test_return_window_is_the_same_from_a_whole_history_and_from_its_last_closes():
    """The env slices its market's log returns; the policy takes the log
    returns of its last lookback + 1 closes: the same numbers."""
    from tradingrl.envs.arrays import log_returns

    close = random_market(100, seed=4).close
    whole = return_window(log_returns(close), 80, 20)
    tail = log_returns(close[80 - 20:81])
    np.testing.assert_array_equal(whole, return_window(tail, len(tail) - 1, 20))
    assert whole.shape == (20,)
    assert return_window(log_returns(close), 3, 20).shape == (4,)  # fewer at the start


def test_allowed_target_clips_and_refuses_nan():
    assert allowed_target(lambda target, context: 2.0 * target, 0.75, {}) == 1.0
    with pytest.raises(ValueError, match="^S: risk_fn returned NaN$"):
        allowed_target(lambda target, context: math.nan, 0.5, {}, "S: ")


# ------------------------------------------------------------------ risk function from params
def _context(market, t):
    env = SingleAssetTradingEnv(market, window=2, risk_lookback=30)
    env.reset(options={"start_bar": t})
    return env._risk_context(t)


def test_risk_fn_from_config_is_the_risk_layer_of_the_section_and_leaves_it_alone():
    risk = copy.deepcopy(RISK)
    assert risk_fn_from_config({**risk, "enabled": False}) is None
    built = risk_fn_from_config(risk)
    assert risk == RISK  # not changed
    limits = RiskLimits(**{k: v for k, v in RISK.items()
                           if k not in ("enabled", "forecast_horizon_bars")})
    by_hand = risk_layer_hook(limits, forecast_horizon_bars=5)
    market = random_market(200, seed=1)
    for t, proposed in ((60, 0.9), (120, -0.6), (150, 0.3)):
        a, b = _context(market, t), _context(market, t)
        assert built(proposed, a) == by_hand(proposed, b)
        assert a["state"]["binding"] == b["state"]["binding"]


def test_risk_fn_from_config_builds_the_portfolio_layer_for_the_portfolio_kind():
    markets = [random_market(200, seed=s, symbol=f"S{s}", timestamps_from="2020-01-01")
               for s in (1, 2)]
    limits = RiskLimits(**{k: v for k, v in RISK.items()
                           if k not in ("enabled", "forecast_horizon_bars")})
    weights = []
    for risk_fn in (risk_fn_from_config(RISK, "portfolio"),
                    portfolio_risk_layer_hook(limits, forecast_horizon_bars=5)):
        env = PortfolioTradingEnv(markets, window=2, allow_short=True, risk_fn=risk_fn,
                                  risk_lookback=30)
        env.reset(options={"start_bar": 60})
        weights.append([env.step(np.float32([0.9, -0.8]))[4]["target_weights"]
                        for _ in range(5)])
    np.testing.assert_array_equal(np.array(weights[0]), np.array(weights[1]))
    with pytest.raises(ValueError, match="env kind must be one of"):
        risk_fn_from_config(RISK, "pairs")
    with pytest.raises(ValueError, match="forecast_horizon_bars must be >= 1"):
        risk_fn_from_config({**RISK, "forecast_horizon_bars": 0})
    with pytest.raises(TypeError):
        risk_fn_from_config({**RISK, "max_leverage": 2.0})  # not a RiskLimits field


def test_env_kwargs_from_config_of_params_yaml():
    sections = {k: copy.deepcopy(TRAIN_AGENT[k]) for k in ("env", "costs", "risk")}
    kwargs = env_kwargs_from_config(sections["env"], sections["costs"], sections["risk"],
                                    TRAIN_AGENT["env_kind"])
    assert sections == {k: TRAIN_AGENT[k] for k in ("env", "costs", "risk")}  # not changed
    assert list(kwargs) == [*ENV_PARAM_KEYS, "costs", "risk_fn"]
    assert {k: kwargs[k] for k in ENV_PARAM_KEYS} == {k: TRAIN_AGENT["env"][k]
                                                      for k in ENV_PARAM_KEYS}
    assert kwargs["costs"] == ExecutionCosts(**TRAIN_AGENT["costs"])
    assert callable(kwargs["risk_fn"])
    off = env_kwargs_from_config(sections["env"], sections["costs"],
                                 {**sections["risk"], "enabled": False}, "portfolio")
    assert "risk_fn" not in off
    SingleAssetTradingEnv(random_market(400), **kwargs)  # the env takes them
