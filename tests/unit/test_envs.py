"""Behaviour of the single-asset trading environment: timing, costs, accounting,
leakage guards, determinism and the gymnasium / SB3 contracts."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from tests.markets import random_market
from tradingrl.envs import (
    ACCOUNT_STATE_NAMES,
    DEFAULT_PREDICTION_COLUMNS,
    SINGLE_ASSET_ENV_ID,
    ExecutionCosts,
    MarketArrays,
    SingleAssetTradingEnv,
    fill_costs,
    is_label_like,
    make_synthetic_env,
)
from tradingrl.features.technical import FEATURE_COLUMNS

N_FEAT = 3


def run_actions(env: gym.Env, actions: np.ndarray, seed: int = 0) -> tuple[list, list, list]:
    obs, _ = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    return observations, rewards, infos


# ------------------------------------------------------------------ contracts
def test_gymnasium_and_sb3_env_checkers_pass() -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for kwargs in ({}, {"reward_mode": "differential_sharpe", "random_start": True,
                        "fill": "next_close", "max_steps": 50}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checker warning is a failure here
            gym_check_env(make_synthetic_env(**kwargs), skip_render_check=True)
            sb3_check_env(make_synthetic_env(**kwargs), warn=True)


def test_registered_env_makes_with_no_arguments_and_runs() -> None:
    env = gym.make(SINGLE_ASSET_ENV_ID)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and math.isfinite(reward)
        assert not (terminated or truncated)
    assert info["equity"] > 0


def test_observation_layout() -> None:
    market = random_market()
    env = SingleAssetTradingEnv(market, window=5, costs=ExecutionCosts.zero())
    obs, info = env.reset(seed=0)
    t = info["bar"]
    assert obs.dtype == np.float32 and obs.shape == (5 * N_FEAT + 5 + 4,)
    np.testing.assert_array_equal(obs[:15], market.features[t - 4:t + 1].ravel())
    np.testing.assert_array_equal(obs[15:20], market.predictions[t])
    np.testing.assert_array_equal(obs[20:], [0.0, 1.0, 0.0, 0.0])
    obs, *_, info = env.step(np.array([0.5]))
    position, cash, unrealised, drawdown = obs[20:].astype(float)
    assert len(ACCOUNT_STATE_NAMES) == 4
    assert position == pytest.approx(info["position"], rel=1e-6)
    assert position + cash == pytest.approx(1.0, abs=1e-6)
    pnl = info["shares"] * (market.close[t + 1] - market.open[t + 1]) / info["equity"]
    assert unrealised == pytest.approx(pnl, rel=1e-5)
    assert drawdown == pytest.approx(info["drawdown"], abs=1e-7)


# ------------------------------------------------------------------ accounting
@pytest.mark.parametrize("reward_mode", ["none", "drawdown_penalty", "differential_sharpe"])
def test_raw_log_returns_sum_to_log_equity_ratio(reward_mode: str) -> None:
    env = SingleAssetTradingEnv(random_market(600), window=10, reward_mode=reward_mode,
                                costs=ExecutionCosts(2.0, 5.0, 1.0, 0.1))
    actions = np.random.default_rng(1).uniform(-1, 1, 10_000)
    _, rewards, infos = run_actions(env, actions)
    assert len(infos) == 600 - 10  # the whole span, ended by the data
    raw = np.array([i["log_return"] for i in infos])
    assert math.fsum(raw) == pytest.approx(math.log(env.equity / env.initial_cash), abs=1e-9)
    assert sum(i["cost"] for i in infos) > 0
    risk = np.array([i["risk_term"] for i in infos])
    np.testing.assert_allclose(rewards, raw + risk, rtol=0, atol=1e-15)
    if reward_mode == "none":
        assert not risk.any()
    else:
        assert risk.any()
    # Cash moves only by fills and their costs; equity is cash plus shares at the close.
    cash = env.initial_cash
    for info in infos:
        cash -= info["traded_shares"] * info["fill_price"] + info["cost"]
        assert info["cash"] == pytest.approx(cash, rel=1e-12)
        close = env.market.close[info["bar"]]
        assert info["equity"] == pytest.approx(info["cash"] + info["shares"] * close, rel=1e-12)


def test_drawdown_penalty_and_differential_sharpe_terms() -> None:
    env = SingleAssetTradingEnv(random_market(200), window=3, reward_mode="drawdown_penalty",
                                risk_lambda=2.0)
    _, _, infos = run_actions(env, np.ones(100))
    drawdowns = [0.0] + [i["drawdown"] for i in infos]
    for k, info in enumerate(infos):
        assert info["risk_term"] == pytest.approx(-2.0 * max(drawdowns[k + 1] - drawdowns[k], 0))
    eta = 0.1
    env = SingleAssetTradingEnv(random_market(200), window=3, reward_mode="differential_sharpe",
                                dsr_eta=eta, risk_lambda=1.0)
    _, _, infos = run_actions(env, np.ones(100))
    a = b = 0.0
    for info in infos:
        r = info["log_return"]
        expected = (b * (r - a) - 0.5 * a * (r * r - b)) / (b - a * a) ** 1.5 if b > a * a else 0.0
        assert info["risk_term"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        a, b = a + eta * (r - a), b + eta * (r * r - b)


# ------------------------------------------------------------------ timing and costs
def test_decision_at_t_fills_at_next_open_or_next_close() -> None:
    n = 50
    close = np.full(n, 100.0)
    open_ = np.full(n, 100.0)
    open_[10] = 104.0  # bar 10 opens away from bar 9's close
    close[10] = 108.0
    market = random_market(n, open=open_, close=close, high=np.full(n, 110.0),
                           low=np.full(n, 90.0), sigma=np.full(n, 0.02))
    for fill, expected in (("next_open", 104.0), ("next_close", 108.0)):
        env = SingleAssetTradingEnv(market, window=3, fill=fill, costs=ExecutionCosts.zero())
        env.reset(options={"start_bar": 9})
        _, reward, *_, info = env.step(np.array([1.0]))
        assert info["bar"] == 10 and info["fill_price"] == expected
        shares = env.initial_cash / 100.0  # sized with bar 9's close, known at decision
        assert info["traded_shares"] == pytest.approx(shares)
        equity = env.initial_cash + shares * (108.0 - expected)
        assert info["equity"] == pytest.approx(equity)
        assert reward == pytest.approx(math.log(equity / env.initial_cash))


def test_costs_zero_when_target_is_current_position_and_match_hand_computation() -> None:
    n = 40
    close = np.full(n, 50.0)
    open_ = np.full(n, 50.0)
    open_[21] = 51.0
    volume = np.full(n, 1.0e6)
    sigma = np.full(n, 0.02)
    sigma[21:] = 0.05  # the fill bar's own vol is not known at the decision: 0.02 applies
    market = random_market(n, open=open_, close=close, high=np.full(n, 55.0),
                           low=np.full(n, 45.0), volume=volume, sigma=sigma)
    costs = ExecutionCosts(commission_bps=3.0, spread_bps=10.0, impact_coef=0.8,
                           participation_limit=0.2)
    env = SingleAssetTradingEnv(market, window=3, costs=costs, initial_cash=1e6)
    env.reset(options={"start_bar": 20})
    *_, info = env.step(np.array([0.4]))
    shares = 0.4 * 1e6 / 50.0  # 8000 shares, sized at bar 20's close
    notional = shares * 51.0  # filled at bar 21's open
    commission = 3.0e-4 * notional
    spread = 0.5 * 10.0e-4 * notional
    impact = 0.8 * 0.02 * math.sqrt(shares / 1.0e6) * notional
    assert info["traded_shares"] == pytest.approx(shares)
    assert info["commission"] == pytest.approx(commission)
    assert info["spread_cost"] == pytest.approx(spread)
    assert info["impact_cost"] == pytest.approx(impact)
    assert info["cost"] == pytest.approx(commission + spread + impact) and info["cost"] > 0
    assert fill_costs(shares, 51.0, 1.0e6, 0.02, costs).total == pytest.approx(info["cost"])
    assert info["cash"] == pytest.approx(1e6 - notional - info["cost"])
    # Holding the position (even passed back through float32) trades and costs nothing.
    for action in (np.array([info["position"]]), np.array([info["position"]], np.float32)):
        equity_before = env.equity
        *_, info = env.step(action)
        assert info["traded_shares"] == 0.0 and info["cost"] == 0.0 and not info["capped"]
        assert info["equity"] == pytest.approx(equity_before)  # flat prices: nothing moves


def test_participation_cap_limits_fills_and_is_reported() -> None:
    """The cap is 10% of the mean volume of the 20 bars up to the decision bar."""
    n = 40
    volume = np.full(n, 1.0e6)
    volume[:21] = 1000.0  # thin up to and including the decision bar 20
    market = random_market(n, volume=volume)
    env = SingleAssetTradingEnv(market, window=3, costs=ExecutionCosts(participation_limit=0.1))
    env.reset(options={"start_bar": 20})
    *_, info = env.step(np.array([-1.0]))
    assert info["capped"]
    assert info["traded_shares"] == pytest.approx(-100.0)  # 10% of 1000 shares
    assert info["order_shares"] < -1000.0
    assert info["unfilled_shares"] == pytest.approx(info["order_shares"] + 100.0)
    assert info["unfilled_notional"] == pytest.approx(
        abs(info["unfilled_shares"]) * info["fill_price"])
    assert info["position"] > -0.01  # far short of the -1 target
    for _ in range(3):  # the known volume rises as liquid bars enter the window
        *_, info = env.step(np.array([-1.0]))
    assert not info["capped"] and info["position"] == pytest.approx(-1.0, abs=0.05)
    assert info["unfilled_shares"] == 0.0 and info["unfilled_notional"] == 0.0
    volume[30] = 0.0  # nothing fills on a bar without volume, even with no cap
    env = SingleAssetTradingEnv(random_market(n, volume=volume), window=3,
                                costs=ExecutionCosts.zero())
    env.reset(options={"start_bar": 29})
    *_, info = env.step(np.array([1.0]))
    assert info["capped"] and info["traded_shares"] == 0.0 and info["cost"] == 0.0
    assert info["unfilled_shares"] == info["order_shares"]


def test_cap_and_impact_use_the_volume_known_at_the_decision_bar() -> None:
    """A thin fill bar t+1 is unknown at t: it neither caps the order nor raises
    its impact; the impact's V is the mean volume of bars t-19 .. t."""
    n = 40
    volume = np.full(n, 1.0e6)
    volume[21] = 1000.0  # thin fill bar
    sigma = np.full(n, 0.01)
    market = random_market(n, volume=volume, sigma=sigma)
    env = SingleAssetTradingEnv(market, window=3, costs=ExecutionCosts(participation_limit=0.1))
    env.reset(options={"start_bar": 20})
    *_, info = env.step(np.array([1.0]))
    assert not info["capped"] and info["unfilled_shares"] == 0.0
    size = abs(info["traded_shares"])
    notional = size * info["fill_price"]
    assert info["impact_cost"] == pytest.approx(0.5 * 0.01 * math.sqrt(size / 1.0e6) * notional,
                                                rel=1e-12)
    # At the first bars only the bars that exist are averaged.
    volume = np.full(n, 1.0e6)
    volume[:2] = [2.0e6, 4.0e6]
    env = SingleAssetTradingEnv(random_market(n, volume=volume, sigma=sigma), window=1,
                                costs=ExecutionCosts(participation_limit=1e-3, volume_window=20))
    env.reset(options={"start_bar": 1})
    *_, info = env.step(np.array([1.0]))
    assert info["capped"] and info["traded_shares"] == pytest.approx(1e-3 * 3.0e6)


# ------------------------------------------------------------------ leakage
def test_observation_at_t_ignores_every_bar_after_t() -> None:
    n, cut = 200, 120
    base = random_market(n, seed=5)
    rng = np.random.default_rng(9)
    changed = {}
    for key in ("open", "close", "volume"):
        values = getattr(base, key).copy()
        values[cut + 1:] *= rng.uniform(0.5, 1.5, n - cut - 1)
        changed[key] = values
    changed["high"] = np.maximum(base.high, np.maximum(changed["open"], changed["close"]))
    changed["low"] = np.minimum(base.low, np.minimum(changed["open"], changed["close"]))
    features = base.features.copy()
    features[cut + 1:] = rng.normal(size=(n - cut - 1, N_FEAT))
    predictions = base.predictions.copy()
    predictions[cut + 1:] = np.array([0.0, 0.0, 1.0, 0.05, 1.0])
    future = random_market(n, seed=5, features=features, predictions=predictions, **changed)
    np.testing.assert_array_equal(base.close[:cut + 1], future.close[:cut + 1])
    assert not np.array_equal(base.close, future.close)

    actions = np.random.default_rng(2).uniform(-1, 1, cut)
    runs = [run_actions(SingleAssetTradingEnv(m, window=8), actions)[0] for m in (base, future)]
    start = 7
    for k in range(cut - start + 1):  # observation k is the one made at bar start + k
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert not np.array_equal(runs[0][cut - start + 1], runs[1][cut - start + 1])


@pytest.mark.parametrize("leak", ["label", "fwd_return", "t1", "target_5", "future_ret",
                                  "ret_fwd", "next_open"])
def test_label_like_columns_are_refused(leak: str) -> None:
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2020-01-01", periods=30, tz="UTC"),
        "symbol": "X", "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1e4,
        "ret_1": 0.0, leak: 1.0,
    })
    with pytest.raises(ValueError, match="label-like"):
        MarketArrays.from_frame(frame, ["ret_1", leak])
    with pytest.raises(ValueError, match="label-like"):
        MarketArrays.from_frame(frame, ["ret_1"], prediction_columns=[leak])
    market = MarketArrays.from_frame(frame, ["ret_1"])  # only the named column enters
    assert market.feature_names == ("ret_1",) and market.features.shape == (30, 1)
    np.testing.assert_allclose(market.predictions[0], [1 / 3, 1 / 3, 1 / 3, 0, 0], atol=1e-7)


def test_feature_stage_columns_are_not_mistaken_for_labels() -> None:
    assert not [c for c in FEATURE_COLUMNS if is_label_like(c)]


def test_missing_predictions_are_refused_unless_filled_explicitly() -> None:
    frame = pd.DataFrame({"symbol": "X", "open": 10.0, "high": 11.0, "low": 9.0,
                          "close": np.linspace(10, 12, 20), "volume": 1e4, "f": 0.5,
                          **{p: 0.2 for p in DEFAULT_PREDICTION_COLUMNS}})
    frame.loc[:4, "p_up"] = np.nan
    with pytest.raises(ValueError, match="lack predictions"):
        MarketArrays.from_frame(frame, ["f"], DEFAULT_PREDICTION_COLUMNS)
    market = MarketArrays.from_frame(frame, ["f"], DEFAULT_PREDICTION_COLUMNS,
                                     fill_missing_predictions=True)
    assert market.predictions[0, 2] == pytest.approx(1 / 3)
    assert market.predictions[5, 2] == pytest.approx(0.2)
    assert not market.close.flags.writeable


# ------------------------------------------------------------------ determinism and starts
def test_same_seed_same_trajectory() -> None:
    actions = np.random.default_rng(4).uniform(-1, 1, 300)
    runs = [run_actions(make_synthetic_env(random_start=True, max_steps=300), actions, seed=12)
            for _ in range(2)]
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2]
    other = run_actions(make_synthetic_env(random_start=True, max_steps=300), actions, seed=13)
    assert other[2][0]["bar"] != runs[0][2][0]["bar"]


def test_random_start_respects_window_and_minimum_episode() -> None:
    market = random_market(120)
    env = SingleAssetTradingEnv(market, window=30, random_start=True, min_episode_steps=40)
    starts = {env.reset(seed=s)[1]["bar"] for s in range(300)}
    assert min(starts) >= 29 and max(starts) <= 119 - 40
    assert len(starts) > 30  # actually random over the span
    env.reset(seed=0, options={"start_bar": 29})
    with pytest.raises(ValueError):
        env.reset(options={"start_bar": 28})


def test_episode_ends_at_data_end_ruin_and_max_steps() -> None:
    env = SingleAssetTradingEnv(random_market(60), window=5, max_steps=10)
    _, _, infos = run_actions(env, np.zeros(100))
    assert len(infos) == 10
    env = SingleAssetTradingEnv(random_market(60), window=5, end_bar=30)
    obs, _ = env.reset()
    steps = 0
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(np.array([0.0]))
        steps += 1
    assert terminated and not truncated and info["bar"] == 29 and steps == 29 - 4
    with pytest.raises(RuntimeError):
        env.step(np.array([0.0]))
    # A short into a price that triples wipes the account out: terminated.
    close = np.full(40, 10.0)
    close[21:] = 30.0  # bar 21 opens at 10 and closes at 30
    open_ = np.concatenate([[10.0], close[:-1]])
    crash = random_market(40, open=open_, close=close, high=close * 1.01, low=open_ * 0.99)
    env = SingleAssetTradingEnv(crash, window=3, costs=ExecutionCosts.zero())
    env.reset(options={"start_bar": 20})
    obs, reward, terminated, truncated, info = env.step(np.array([-1.0]))
    assert terminated and info["equity"] < 0 and math.isfinite(reward) and reward < -20
    assert env.observation_space.contains(obs)


# ------------------------------------------------------------------ risk hook
def test_risk_fn_sees_only_the_past_and_changes_the_target() -> None:
    market = random_market(100)
    seen = []

    def halve(target: float, context: dict) -> float:
        seen.append(context)
        context["state"]["calls"] = context["state"].get("calls", 0) + 1
        return 0.5 * target

    env = SingleAssetTradingEnv(market, window=5, risk_fn=halve, risk_lookback=10)
    env.reset(options={"start_bar": 30})
    *_, info = env.step(np.array([0.8]))
    assert info["requested_target"] == pytest.approx(0.8) and info["target"] == pytest.approx(0.4)
    context = seen[0]
    assert context["bar"] == 30 and context["equity"] == env.initial_cash
    np.testing.assert_allclose(context["returns"], np.diff(np.log(market.close[20:31])))
    assert context["confidence"] == pytest.approx(market.predictions[30, 4])
    assert context["expected_return"] == pytest.approx(market.predictions[30, 3])
    env.step(np.array([0.8]))
    assert seen[-1]["state"]["calls"] == 2
    env.reset()
    assert seen[-1]["state"] == {}


def test_risk_layer_hook_enforces_limits_inside_the_env():
    from gymnasium.utils.env_checker import check_env as gym_check_env

    from tradingrl.envs import make_synthetic_env, risk_layer_hook
    from tradingrl.risk import RiskLimits

    limits = RiskLimits(max_position=0.3, vol_target=0.10, var_limit=0.02, drawdown_limit=0.2)
    env = make_synthetic_env(risk_fn=risk_layer_hook(limits), risk_lookback=60)
    gym_check_env(env, skip_render_check=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    positions, requested = [], []
    for _ in range(300):
        _, _, terminated, truncated, info = env.step(np.array([rng.choice([-1.0, 1.0])], np.float32))
        requested.append(abs(info["requested_target"]))
        positions.append(abs(info["target"]))
        if terminated or truncated:
            break
    assert max(positions) <= 0.3 + 1e-12  # the agent asked for +-1 every bar
    assert max(requested) == 1.0
    assert max(positions) > 0.05  # limited, not simply flat
