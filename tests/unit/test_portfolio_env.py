"""Behaviour of the portfolio trading environment: action map, timing, costs,
accounting, leakage guards, alignment, determinism, the risk hook, the
gymnasium / SB3 contracts, and agreement with the single-asset env at N = 1."""

from __future__ import annotations

import functools
import itertools
import logging
import math
import warnings

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.markets import random_market as random_walk_market
from tradingrl.envs import (
    PORTFOLIO_ENV_ID,
    ExecutionCosts,
    MarketArrays,
    PortfolioTradingEnv,
    SingleAssetTradingEnv,
    align_markets,
    alignment_losses,
    fill_costs,
    make_synthetic_portfolio_env,
    portfolio_risk_layer_hook,
    synthetic_market_arrays,
    synthetic_portfolio_arrays,
)
from tradingrl.envs.costs import decision_volume

N_FEAT = 3
STAMPS = pd.date_range("2020-01-01", periods=2000, freq="D").to_numpy()


# Markets with timestamps (STAMPS[:n]); symbol S0 unless given.
random_market = functools.partial(random_walk_market, symbol="S0",
                                  timestamps_from="2020-01-01")


def random_panel(n_symbols: int = 3, n: int = 300, seed: int = 0) -> list[MarketArrays]:
    return [random_market(n, seed=seed * 100 + i, symbol=f"S{i}") for i in range(n_symbols)]


def flat_market(symbol: str, n: int, price: float, **overrides: np.ndarray) -> MarketArrays:
    """Constant prices (set ``open``/``close`` overrides to move bars), volume 1e6."""
    arrays = {"open": np.full(n, price), "close": np.full(n, price),
              "volume": np.full(n, 1.0e6), "sigma": np.full(n, 0.02)}
    arrays.update(overrides)
    arrays["high"] = np.maximum(arrays["open"], arrays["close"]) * 1.05
    arrays["low"] = np.minimum(arrays["open"], arrays["close"]) * 0.95
    return random_market(n, symbol=symbol, **arrays)


def run_actions(env: PortfolioTradingEnv, actions: np.ndarray, seed: int = 0,
                options: dict | None = None) -> tuple[list, list, list]:
    obs, info = env.reset(seed=seed, options=options)
    observations, rewards, infos = [obs], [], [info]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    return observations, rewards, infos


def uniform_actions(env: PortfolioTradingEnv, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, env.n_actions)).astype(np.float32)


# ------------------------------------------------------------------ contracts
def test_gymnasium_and_sb3_env_checkers_pass_long_only_and_short() -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for kwargs in ({"n_symbols": 3},
                   {"n_symbols": 2, "allow_short": True, "max_gross_leverage": 1.5,
                    "reward_mode": "differential_sharpe", "random_start": True,
                    "fill": "next_close", "max_steps": 50}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checker warning is a failure here
            gym_check_env(make_synthetic_portfolio_env(**kwargs), skip_render_check=True)
            sb3_check_env(make_synthetic_portfolio_env(**kwargs), warn=True)


def test_registered_env_makes_with_no_arguments_and_runs() -> None:
    env = gym.make(PORTFOLIO_ENV_ID)
    base = env.unwrapped
    assert isinstance(base, PortfolioTradingEnv) and base.n_symbols == 4
    assert env.action_space.shape == (5,)  # 4 symbols + cash, long-only
    assert env.observation_space.shape == (4 * 20 * 6 + 4 * 5 + 4 + 3,)
    obs, _ = env.reset(seed=3)
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and math.isfinite(reward)
        assert not (terminated or truncated)
    assert info["equity"] > 0 and info["cost"] > 0


def test_synthetic_portfolio_symbol_zero_is_the_single_asset_market() -> None:
    single = synthetic_market_arrays(300, 5, 0.5)
    markets = synthetic_portfolio_arrays(3, 300, 5, 0.5)
    assert [m.symbol for m in markets] == ["SYN000", "SYN001", "SYN002"]
    for key in ("open", "close", "volume", "features", "sigma", "timestamps"):
        np.testing.assert_array_equal(getattr(markets[0], key), getattr(single, key))
    assert not np.array_equal(markets[1].close, markets[0].close)


def test_observation_layout() -> None:
    markets = random_panel(2, 120)
    env = PortfolioTradingEnv(markets, window=4, costs=ExecutionCosts.zero())
    obs, info = env.reset(options={"start_bar": 50})
    t = 50
    assert obs.dtype == np.float32 and obs.shape == (2 * 4 * N_FEAT + 2 * 5 + 2 + 3,)
    assert len(env.observation_names) == obs.shape[0]
    assert env.observation_names[0] == "S0:f0[t-3]" and env.observation_names[-5] == "weight:S0"
    np.testing.assert_array_equal(obs[:12], markets[0].features[t - 3:t + 1].ravel())
    np.testing.assert_array_equal(obs[12:24], markets[1].features[t - 3:t + 1].ravel())
    np.testing.assert_array_equal(obs[24:29], markets[0].predictions[t])
    np.testing.assert_array_equal(obs[29:34], markets[1].predictions[t])
    np.testing.assert_array_equal(obs[34:], [0, 0, 1, 0, 0])
    obs, *_, info = env.step(np.array([0.0, 1.0, 0.0]))  # raw (1/2, 1, 1/2): weights (1/4, 1/2)
    np.testing.assert_allclose(info["requested_weights"], [0.25, 0.5], rtol=1e-12)
    w0, w1, cash, unrealised, drawdown = obs[34:].astype(float)
    np.testing.assert_allclose([w0, w1], info["weights"], rtol=1e-6)
    assert w0 + w1 + cash == pytest.approx(1.0, abs=1e-6)
    pnl = sum(info["shares"][i] * (markets[i].close[t + 1] - markets[i].open[t + 1])
              for i in range(2))
    assert unrealised == pytest.approx(pnl / info["equity"], rel=1e-5)
    assert drawdown == pytest.approx(info["drawdown"], abs=1e-7)


# ------------------------------------------------------------------ action map
def test_action_map_long_only_and_short() -> None:
    env = PortfolioTradingEnv(random_panel(3, 80), window=2)
    np.testing.assert_allclose(env.weights_from_action([1, 0, -1, 0]), [0.5, 0.25, 0.0])
    np.testing.assert_array_equal(env.weights_from_action([-1, -1, -1, -1]), [0, 0, 0])
    np.testing.assert_array_equal(env.weights_from_action([-1, -1, -1, 1]), [0, 0, 0])
    np.testing.assert_allclose(env.weights_from_action([5, -1, -1, -1]), [1, 0, 0])  # clipped
    for weights in ([0.5, 0.3, 0.0], [0.0, 0.0, 1.0], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0]):
        action = env.action_for_weights(weights)
        assert action.dtype == np.float32 and env.action_space.contains(action)
        np.testing.assert_allclose(env.weights_from_action(action), weights, atol=1e-7)
    with pytest.raises(ValueError, match="outside"):
        env.action_for_weights([-0.1, 0.2, 0.2])
    with pytest.raises(ValueError, match="gross"):
        env.action_for_weights([0.6, 0.6, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        env.weights_from_action([np.nan, 0, 0, 0])
    with pytest.raises(ValueError, match="4 entries"):
        env.weights_from_action([0.0, 0.0, 0.0])

    env = PortfolioTradingEnv(random_panel(3, 80), window=2, allow_short=True,
                              max_gross_leverage=1.5)
    np.testing.assert_allclose(env.weights_from_action([0.5, -0.25, 0.5]), [0.5, -0.25, 0.5])
    np.testing.assert_allclose(env.weights_from_action([1, -1, 1]), [0.5, -0.5, 0.5])
    np.testing.assert_allclose(env.action_for_weights([0.7, -0.7, 0.1]), [0.7, -0.7, 0.1],
                               rtol=1e-7)
    with pytest.raises(ValueError, match="allow_short"):
        PortfolioTradingEnv(random_panel(2, 80), max_gross_leverage=2.0)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float32, 5, elements=st.floats(-1.5, 1.5, width=32)),
       st.sampled_from([1.0, 0.6]))
def test_requested_weights_are_within_long_only_limits(action: np.ndarray, leverage: float) -> None:
    w = _env(False, leverage).weights_from_action(action)
    assert w.shape == (4,) and (w >= 0).all() and w.sum() <= leverage * (1 + 1e-12)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float32, 4, elements=st.floats(-1.5, 1.5, width=32)),
       st.sampled_from([1.0, 0.5, 2.5]))
def test_requested_weights_are_within_gross_leverage(action: np.ndarray, leverage: float) -> None:
    w = _env(True, leverage).weights_from_action(action)
    assert (np.abs(w) <= 1).all() and np.abs(w).sum() <= leverage * (1 + 1e-12)
    inside = np.clip(action.astype(np.float64), -1, 1)
    if np.abs(inside).sum() <= leverage:  # inside the limits the action is the weights
        np.testing.assert_array_equal(w, inside)


@functools.cache
def _env(allow_short: bool, leverage: float) -> PortfolioTradingEnv:
    return PortfolioTradingEnv(random_panel(4, 200, seed=7), window=3, allow_short=allow_short,
                               max_gross_leverage=leverage,
                               costs=ExecutionCosts(participation_limit=0.002))


@settings(max_examples=40, deadline=None)
@given(st.booleans(), st.data())
def test_book_never_breaks_its_limits_over_random_episodes(allow_short: bool, data) -> None:
    leverage = 1.5 if allow_short else 1.0
    env = _env(allow_short, leverage)
    actions = data.draw(hnp.arrays(np.float32, (30, env.n_actions),
                                   elements=st.floats(-1, 1, width=32)))
    _, _, infos = run_actions(env, actions, options={"start_bar": data.draw(
        st.integers(env.first_bar, env.last_start_bar - 30))})
    previous = infos[0]
    for info in infos[1:]:
        target = info["target_weights"]
        assert np.abs(target).sum() <= leverage * (1 + 1e-12) and (np.abs(target) <= 1).all()
        # Fills move the book from where it was towards the target, never past it
        # (the volume cap is tight here, so many fills stop short).
        t = info["bar"] - 1
        before = previous["shares"]
        goal = target * previous["equity"] / env.panel.close[t]
        lo, hi = np.minimum(before, goal), np.maximum(before, goal)
        assert ((info["shares"] >= lo - 1e-6) & (info["shares"] <= hi + 1e-6)).all()
        if not allow_short:
            assert (info["shares"] >= 0).all() and (target >= 0).all()
        previous = info


# ------------------------------------------------------------------ accounting
@pytest.mark.parametrize("reward_mode", ["none", "drawdown_penalty", "differential_sharpe"])
@pytest.mark.parametrize("allow_short", [False, True])
def test_raw_log_returns_sum_to_log_equity_ratio(reward_mode: str, allow_short: bool) -> None:
    for seed in (1, 2, 3):
        markets = random_panel(3, 250, seed=seed)
        env = PortfolioTradingEnv(markets, window=10, reward_mode=reward_mode,
                                  allow_short=allow_short,
                                  costs=ExecutionCosts(2.0, 5.0, 1.0, 0.05))
        _, rewards, infos = run_actions(env, uniform_actions(env, 1000, seed), seed=seed)
        steps = infos[1:]
        assert len(steps) == 250 - 10  # the whole span, ended by the data
        raw = np.array([i["log_return"] for i in steps])
        assert math.fsum(raw) == pytest.approx(math.log(env.equity / env.initial_cash),
                                               abs=1e-9)
        assert sum(i["cost"] for i in steps) > 0
        risk = np.array([i["risk_term"] for i in steps])
        np.testing.assert_allclose(rewards, raw + risk, rtol=0, atol=1e-15)
        assert risk.any() == (reward_mode != "none")
        # One cash account: it moves only by fills and their costs; equity is
        # cash plus every symbol's shares at the close.
        cash = env.initial_cash
        closes = env.panel.close
        for info in steps:
            cash -= float(info["traded_shares"] @ info["fill_price"]) + info["cost"]
            # Cash can come near 0 (fully invested): round-off is relative to equity.
            assert info["cash"] == pytest.approx(cash, rel=1e-12, abs=1e-12 * env.initial_cash)
            assert info["cost"] == pytest.approx(
                info["commission"] + info["spread_cost"] + info["impact_cost"], rel=1e-12)
            value = info["shares"] * closes[info["bar"]]
            assert info["equity"] == pytest.approx(info["cash"] + value.sum(), rel=1e-12)
            np.testing.assert_allclose(info["weights"], value / info["equity"], rtol=1e-12)


def test_drawdown_penalty_and_differential_sharpe_terms() -> None:
    markets = random_panel(2, 150)
    hold_first = np.tile([1.0, -1.0, -1.0], (100, 1))
    env = PortfolioTradingEnv(markets, window=3, reward_mode="drawdown_penalty",
                              risk_lambda=2.0)
    _, _, infos = run_actions(env, hold_first)
    drawdowns = [0.0] + [i["drawdown"] for i in infos[1:]]
    assert max(drawdowns) > 0
    for k, info in enumerate(infos[1:]):
        assert info["risk_term"] == pytest.approx(-2.0 * max(drawdowns[k + 1] - drawdowns[k], 0))
    eta = 0.1
    env = PortfolioTradingEnv(markets, window=3, reward_mode="differential_sharpe",
                              dsr_eta=eta, risk_lambda=1.0)
    _, _, infos = run_actions(env, hold_first)
    a = b = 0.0
    for info in infos[1:]:
        r = info["log_return"]
        expected = (b * (r - a) - 0.5 * a * (r * r - b)) / (b - a * a) ** 1.5 if b > a * a else 0.0
        assert info["risk_term"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        a, b = a + eta * (r - a), b + eta * (r * r - b)


# ------------------------------------------------------------------ timing and costs
def test_decision_at_t_fills_at_next_open_or_next_close() -> None:
    n = 50
    open0, close0, open1, close1 = (np.full(n, 100.0), np.full(n, 100.0),
                                    np.full(n, 50.0), np.full(n, 50.0))
    open0[10], close0[10] = 104.0, 108.0  # bar 10 opens away from bar 9's close
    open1[10], close1[10] = 49.0, 47.0
    markets = [flat_market("A", n, 100.0, open=open0, close=close0),
               flat_market("B", n, 50.0, open=open1, close=close1)]
    action = np.array([1.0, 0.2, -0.2])  # weights 0.5, 0.3 and 0.2 cash
    for fill, price0, price1 in (("next_open", 104.0, 49.0), ("next_close", 108.0, 47.0)):
        env = PortfolioTradingEnv(markets, window=3, fill=fill, costs=ExecutionCosts.zero())
        env.reset(options={"start_bar": 9})
        _, reward, *_, info = env.step(action)
        assert info["bar"] == 10
        np.testing.assert_array_equal(info["fill_price"], [price0, price1])
        shares = np.array([0.5e6 / 100.0, 0.3e6 / 50.0])  # sized with bar 9's closes
        np.testing.assert_allclose(info["traded_shares"], shares, rtol=1e-12)
        cash = 1e6 - shares[0] * price0 - shares[1] * price1
        equity = cash + shares[0] * 108.0 + shares[1] * 47.0
        assert info["cash"] == pytest.approx(cash, rel=1e-12)
        assert info["equity"] == pytest.approx(equity, rel=1e-12)
        assert reward == pytest.approx(math.log(equity / 1e6), rel=1e-12)
    assert equity == pytest.approx(1e6)  # next_close: bought at the close it is marked at


def test_costs_match_hand_computation_and_are_zero_when_holding_observed_weights() -> None:
    n = 40
    open0, open1 = np.full(n, 50.0), np.full(n, 20.0)
    open0[21], open1[21] = 51.0, 19.5
    sigma0, sigma1 = np.full(n, 0.02), np.full(n, 0.03)
    sigma0[21:], sigma1[21:] = 0.5, 0.5  # the fill bar's own vol is unknown at t: 0.02/0.03 apply
    markets = [flat_market("A", n, 50.0, open=open0, sigma=sigma0),
               flat_market("B", n, 20.0, open=open1, sigma=sigma1)]
    costs = ExecutionCosts(commission_bps=3.0, spread_bps=10.0, impact_coef=0.8,
                           participation_limit=0.2)
    env = PortfolioTradingEnv(markets, window=3, costs=costs, initial_cash=1e6)
    env.reset(options={"start_bar": 20})
    *_, info = env.step(env.action_for_weights([0.4, 0.25]).astype(np.float64))
    shares = np.array([0.4e6 / 50.0, 0.25e6 / 20.0])  # 8000 and 12500, sized at bar 20's close
    notional = shares * np.array([51.0, 19.5])  # filled at bar 21's open
    commission = 3.0e-4 * notional.sum()
    spread = 0.5 * 10.0e-4 * notional.sum()
    impact = 0.8 * (0.02 * math.sqrt(8000 / 1e6) * notional[0]
                    + 0.03 * math.sqrt(12500 / 1e6) * notional[1])
    np.testing.assert_allclose(info["traded_shares"], shares, rtol=1e-12)
    assert info["commission"] == pytest.approx(commission, rel=1e-12)
    assert info["spread_cost"] == pytest.approx(spread, rel=1e-12)
    assert info["impact_cost"] == pytest.approx(impact, rel=1e-12)
    assert info["cost"] == pytest.approx(
        fill_costs(8000, 51.0, 1e6, 0.02, costs).total
        + fill_costs(12500, 19.5, 1e6, 0.03, costs).total, rel=1e-12)
    assert info["cash"] == pytest.approx(1e6 - notional.sum() - info["cost"], rel=1e-12)
    # Requesting the observed weights (through float32, as an agent would) trades
    # nothing and costs nothing; flat prices, so equity stands still.
    for _ in range(3):
        equity_before = env.equity
        obs_weights = env._obs[env._acct:env._acct + 2]
        *_, info = env.step(env.action_for_weights(obs_weights))
        assert not info["traded_shares"].any() and info["cost"] == 0.0
        assert info["equity"] == equity_before
    # Changing one weight trades that symbol only, and pays for it.
    held = env._obs[env._acct]
    assert env.bar == 24 and sigma1[24] == 0.5
    *_, info = env.step(env.action_for_weights([held, 0.1]))
    assert info["traded_shares"][0] == 0.0 and info["traded_shares"][1] < 0
    assert info["cost"] == pytest.approx(
        fill_costs(info["traded_shares"][1], 20.0, 1e6, 0.5, costs).total, rel=1e-12)


def test_every_change_of_weights_is_charged_and_drift_trades() -> None:
    markets = random_panel(3, 200, seed=4)
    costs = ExecutionCosts(1.0, 2.0, 0.5, 1.0)
    env = PortfolioTradingEnv(markets, window=5, costs=costs, min_trade_fraction=1e-4)
    actions = uniform_actions(env, 150, 3)
    actions[50:60] = env.action_for_weights([0.3, 0.3, 0.3])  # a constant target
    _, _, infos = run_actions(env, actions)
    panel = env.panel
    # The cap and the impact use the volume known at the decision bar.
    known = np.column_stack([decision_volume(panel.volume[:, i], costs.volume_window)
                             for i in range(3)])
    for before, info in itertools.pairwise(infos):
        t = info["bar"] - 1
        current = before["weights"]
        moved = np.abs(info["target_weights"] - current) > 1e-4
        np.testing.assert_array_equal(info["traded_shares"] != 0, moved)
        expected = sum(fill_costs(q, p, v, s, costs).total for q, p, v, s in zip(
            info["traded_shares"], panel.open[t + 1], known[t], panel.sigma[t], strict=True))
        assert info["cost"] == pytest.approx(expected, rel=1e-12, abs=0)
    # A constant target still trades: prices moved the weights away from it.
    assert all(infos[k]["cost"] > 0 for k in range(52, 61))


def test_participation_cap_limits_fills_and_is_reported() -> None:
    """The cap is 10% of the mean volume of the 20 bars up to the decision bar;
    a thin fill bar, unknown at t, caps nothing."""
    n = 40
    thin = np.full(n, 1.0e6)
    thin[:21] = 1000.0  # thin up to and including the decision bar 20
    thin[30] = 0.0  # nothing fills on a bar without volume
    markets = [flat_market("A", n, 10.0, volume=thin), flat_market("B", n, 10.0)]
    env = PortfolioTradingEnv(markets, window=3, allow_short=True,
                              costs=ExecutionCosts(participation_limit=0.1))
    env.reset(options={"start_bar": 20})
    *_, info = env.step(np.array([-0.5, 0.5]))
    np.testing.assert_array_equal(info["capped"], [True, False])
    assert info["traded_shares"][0] == pytest.approx(-100.0)  # 10% of 1000 shares
    assert info["order_shares"][0] == pytest.approx(-0.5e6 / 10.0)
    assert info["unfilled_shares"][0] == pytest.approx(-0.5e6 / 10.0 + 100.0)
    assert info["unfilled_shares"][1] == 0.0
    np.testing.assert_allclose(info["unfilled_notional"], np.abs(info["unfilled_shares"]) * 10.0)
    assert info["traded_shares"][1] == pytest.approx(0.5e6 / 10.0)
    for _ in range(5):  # the known volume rises as liquid bars enter the window
        *_, info = env.step(np.array([-0.5, 0.5]))
    assert not info["capped"].any()
    np.testing.assert_allclose(info["weights"], [-0.5, 0.5], atol=0.01)
    env.reset(options={"start_bar": 29})
    *_, info = env.step(np.array([0.5, 0.5]))
    assert info["capped"][0] and info["traded_shares"][0] == 0.0
    assert info["traded_shares"][1] > 0
    thin = np.full(n, 1.0e6)
    thin[21] = 1000.0  # a thin fill bar
    env = PortfolioTradingEnv([flat_market("A", n, 10.0, volume=thin), flat_market("B", n, 10.0)],
                              window=3, allow_short=True,
                              costs=ExecutionCosts(participation_limit=0.1))
    env.reset(options={"start_bar": 20})
    *_, info = env.step(np.array([-0.5, 0.5]))
    assert not info["capped"].any() and not info["unfilled_shares"].any()


def test_close_at_end_ends_the_book_in_cash() -> None:
    markets = random_panel(2, 120, seed=6)
    env = PortfolioTradingEnv(markets, window=5, allow_short=True, close_at_end=True,
                              costs=ExecutionCosts(participation_limit=1e-4))
    env.reset()
    done = False
    while not done:
        *_, terminated, truncated, info = env.step(np.array([0.5, -0.5]))
        done = terminated or truncated
    assert info["bar"] == env.last_bar
    np.testing.assert_array_equal(info["target_weights"], 0.0)
    np.testing.assert_array_equal(info["shares"], 0.0)
    assert not info["capped"].any() and info["cost"] > 0


# ------------------------------------------------------------------ N = 1 against single asset
@pytest.mark.parametrize("allow_short", [False, True])
def test_one_symbol_reproduces_the_single_asset_env(allow_short: bool) -> None:
    market = random_market(400, seed=3)
    costs = ExecutionCosts(2.0, 5.0, 1.0, 0.002)  # a tight cap: many fills are partial
    for fill in ("next_open", "next_close"):
        single = SingleAssetTradingEnv(market, window=5, costs=costs, fill=fill)
        book = PortfolioTradingEnv([market], window=5, costs=costs, fill=fill,
                                   allow_short=allow_short)
        obs_single, _ = single.reset()
        obs_book, _ = book.reset()
        np.testing.assert_array_equal(obs_single, obs_book)
        rng = np.random.default_rng(0)
        capped = 0
        while True:
            w = rng.uniform(-1.0 if allow_short else 0.0, 1.0)
            if rng.random() < 0.2:  # hold the current position now and then
                w = min(max(float(obs_single[-4]), 0.0 if not allow_short else -1.0), 1.0)
            action = np.array([w]) if allow_short else np.array([2 * w - 1, 1 - 2 * w])
            obs_single, r_single, term_s, trunc_s, info_s = single.step(np.array([w]))
            obs_book, r_book, term_b, trunc_b, info_b = book.step(action)
            capped += info_s["capped"]
            assert info_b["equity"] == pytest.approx(info_s["equity"], rel=1e-9)
            assert info_b["cash"] == pytest.approx(info_s["cash"], rel=1e-9, abs=1e-6)
            assert r_book == pytest.approx(r_single, rel=1e-9, abs=1e-12)
            assert info_b["cost"] == pytest.approx(info_s["cost"], rel=1e-9, abs=1e-9)
            np.testing.assert_allclose(obs_book, obs_single, rtol=1e-6, atol=1e-7)
            assert (term_b, trunc_b) == (term_s, trunc_s)
            if term_s or trunc_s:
                break
        assert capped > 50 and info_b["bar"] == 399


# ------------------------------------------------------------------ leakage
def test_observation_at_t_ignores_every_bar_after_t() -> None:
    n, cut = 200, 120
    base = random_panel(2, n, seed=5)
    rng = np.random.default_rng(9)
    future = []
    for market in base:
        changed = {}
        for key in ("open", "close", "volume"):
            values = getattr(market, key).copy()
            values[cut + 1:] *= rng.uniform(0.5, 1.5, n - cut - 1)
            changed[key] = values
        changed["high"] = np.maximum(market.high, np.maximum(changed["open"], changed["close"]))
        changed["low"] = np.minimum(market.low, np.minimum(changed["open"], changed["close"]))
        features = market.features.copy()
        features[cut + 1:] = rng.normal(size=(n - cut - 1, N_FEAT))
        predictions = market.predictions.copy()
        predictions[cut + 1:] = np.array([0.0, 0.0, 1.0, 0.05, 1.0])
        future.append(random_market(n, symbol=market.symbol, features=features,
                                    predictions=predictions, **changed))
    actions = uniform_actions(PortfolioTradingEnv(base, window=8), cut, 2)
    runs = [run_actions(PortfolioTradingEnv(m, window=8), actions)[0] for m in (base, future)]
    start = 7
    for k in range(cut - start + 1):  # observation k is the one made at bar start + k
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert not np.array_equal(runs[0][cut - start + 1], runs[1][cut - start + 1])


def test_label_like_columns_can_never_enter() -> None:
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2020-01-01", periods=40, tz="UTC"),
        "symbol": "X", "open": 10.0, "high": 11.0, "low": 9.0,
        "close": np.linspace(10, 12, 40), "volume": 1e4,
        "ret_1": 0.25, "fwd_return": 777.0, "label": 5.0,
    })
    for leak in ("fwd_return", "label"):
        with pytest.raises(ValueError, match="label-like"):
            MarketArrays.from_frame(frame, ["ret_1", leak])
        with pytest.raises(ValueError, match="label-like"):
            MarketArrays.from_frame(frame, ["ret_1"], prediction_columns=[leak])
    markets = [MarketArrays.from_frame(frame, ["ret_1"]),
               MarketArrays.from_frame(frame.assign(symbol="Y"), ["ret_1"])]
    env = PortfolioTradingEnv(markets, window=2, obs_clip=None)
    obs, _ = env.reset()
    assert not np.isin([777.0, 5.0], obs).any()
    assert not [name for name in env.observation_names if "fwd" in name or "label" in name]


# ------------------------------------------------------------------ calendars
def test_mismatched_calendars_are_refused_naming_the_first_mismatch() -> None:
    a = random_market(100, symbol="A")
    shifted = STAMPS[:100].copy()
    shifted[37:] = STAMPS[38:101]
    b = random_market(100, symbol="B", timestamps=shifted)
    with pytest.raises(ValueError, match=r"timestamps differ at bar 37: B has 2020-02-08"):
        PortfolioTradingEnv([a, b], window=3)
    with pytest.raises(ValueError, match="C has 90 bars but A has 100"):
        PortfolioTradingEnv([a, random_market(90, symbol="C")], window=3)
    no_stamps = MarketArrays(symbol="D", open=a.open, high=a.high, low=a.low, close=a.close,
                             volume=a.volume, features=a.features, feature_names=a.feature_names)
    with pytest.raises(ValueError, match="no timestamps"):
        PortfolioTradingEnv([a, no_stamps], window=3)
    with pytest.raises(ValueError, match="duplicate symbol"):
        PortfolioTradingEnv([a, a], window=3)
    with pytest.raises(TypeError, match="sequence of MarketArrays"):
        PortfolioTradingEnv(a, window=3)


def test_align_markets_keeps_common_bars_and_reports_losses(caplog) -> None:
    a = random_market(100, symbol="A")
    keep_b = np.ones(100, bool)
    keep_b[[10, 50, 51]] = False
    b = random_market(100, seed=1, symbol="B")
    b = MarketArrays(symbol="B", open=b.open[keep_b], high=b.high[keep_b], low=b.low[keep_b],
                     close=b.close[keep_b], volume=b.volume[keep_b],
                     features=b.features[keep_b], feature_names=b.feature_names,
                     predictions=b.predictions[keep_b], sigma=b.sigma[keep_b],
                     timestamps=STAMPS[2:102][keep_b])  # B starts 2 days later
    assert alignment_losses([a, b]) == {"A": 5, "B": 2}
    with caplog.at_level(logging.WARNING, logger="tradingrl.envs.panel"):
        aligned = align_markets([a, b])
    assert "'A': 5" in caplog.text and "'B': 2" in caplog.text
    assert [len(m) for m in aligned] == [95, 95]
    np.testing.assert_array_equal(aligned[0].timestamps, aligned[1].timestamps)
    rows = np.isin(a.timestamps, aligned[0].timestamps)
    np.testing.assert_array_equal(aligned[0].close, a.close[rows])
    np.testing.assert_array_equal(aligned[0].sigma, a.sigma[rows])  # past-only, kept as is
    np.testing.assert_array_equal(aligned[0].features, a.features[rows])
    env = PortfolioTradingEnv(aligned, window=3)
    run_actions(env, uniform_actions(env, 20, 0))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tradingrl.envs.panel"):
        same = align_markets(aligned)
    assert same[0] is aligned[0] and not caplog.text


# ------------------------------------------------------------------ determinism and episodes
def test_same_seed_same_trajectory() -> None:
    def run(seed: int) -> tuple[list, list, list]:
        env = make_synthetic_portfolio_env(n_symbols=3, random_start=True, max_steps=200)
        return run_actions(env, uniform_actions(env, 200, 4), seed=seed)

    first, second = run(12), run(12)
    for a, b in zip(first[0], second[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert first[1] == second[1]
    for a, b in zip(first[2], second[2], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert run(13)[2][0]["bar"] != first[2][0]["bar"]


def test_episode_ends_at_data_end_ruin_and_max_steps() -> None:
    markets = random_panel(2, 60)
    env = PortfolioTradingEnv(markets, window=5, max_steps=10)
    assert len(run_actions(env, np.zeros((100, 3)))[2]) == 1 + 10
    for end_of_data in ("terminate", "truncate"):
        env = PortfolioTradingEnv(markets, window=5, end_bar=30, end_of_data=end_of_data)
        env.reset()
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            _, _, terminated, truncated, info = env.step(np.zeros(3))
            steps += 1
        assert (terminated, truncated) == (end_of_data == "terminate", end_of_data == "truncate")
        assert info["bar"] == 29 and steps == 29 - 4
        with pytest.raises(RuntimeError):
            env.step(np.zeros(3))
    env = PortfolioTradingEnv(markets, window=30, random_start=True, min_episode_steps=20)
    starts = {env.reset(seed=s)[1]["bar"] for s in range(200)}
    assert min(starts) >= 29 and max(starts) <= 59 - 20 and len(starts) > 5
    with pytest.raises(ValueError):
        env.reset(options={"start_bar": 28})
    # A short into a price that triples wipes the account out: terminated.
    close = np.full(40, 10.0)
    close[21:] = 30.0
    crash = [flat_market("A", 40, 10.0, close=close, open=np.concatenate([[10.0], close[:-1]])),
             flat_market("B", 40, 10.0)]
    env = PortfolioTradingEnv(crash, window=3, allow_short=True, costs=ExecutionCosts.zero())
    env.reset(options={"start_bar": 20})
    obs, reward, terminated, truncated, info = env.step(np.array([-1.0, 0.0]))
    assert terminated and info["equity"] < 0 and math.isfinite(reward) and reward < -20
    assert env.observation_space.contains(obs)


# ------------------------------------------------------------------ risk hook
def test_risk_fn_sees_only_the_past_and_changes_the_weights() -> None:
    markets = random_panel(2, 100)
    seen = []

    def halve(weights: np.ndarray, context: dict) -> np.ndarray:
        seen.append(context)
        context["state"]["calls"] = context["state"].get("calls", 0) + 1
        return 0.5 * weights

    env = PortfolioTradingEnv(markets, window=5, risk_fn=halve, risk_lookback=10)
    env.reset(options={"start_bar": 30})
    *_, info = env.step(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_allclose(info["requested_weights"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(info["target_weights"], [1 / 3, 1 / 6])
    context = seen[0]
    assert context["bar"] == 30 and context["equity"] == env.initial_cash
    assert context["symbols"] == ("S0", "S1") and not context["weights"].any()
    expected = np.diff(np.log(np.column_stack([m.close[20:31] for m in markets])), axis=0)
    np.testing.assert_allclose(context["returns"], expected, rtol=1e-12)
    np.testing.assert_allclose(context["confidence"], [m.predictions[30, 4] for m in markets])
    np.testing.assert_allclose(context["expected_return"],
                               [m.predictions[30, 3] for m in markets])
    env.step(np.array([1.0, 0.0, -1.0]))
    assert seen[-1]["state"]["calls"] == 2
    np.testing.assert_allclose(seen[-1]["weights"], info["weights"])
    env.reset()
    assert seen[-1]["state"] == {}
    env = PortfolioTradingEnv(markets, window=5, risk_fn=lambda w, c: w - 0.5)
    env.reset()
    with pytest.raises(ValueError, match="risk_fn weights"):
        env.step(np.array([1.0, 0.0, -1.0]))


def test_risk_layer_hook_keeps_executed_weights_within_max_position() -> None:
    from tradingrl.risk import RiskLimits

    limits = RiskLimits(max_position=0.3, vol_target=0.10, var_limit=0.02, drawdown_limit=0.2)
    env = make_synthetic_portfolio_env(n_symbols=3, allow_short=True,
                                       risk_fn=portfolio_risk_layer_hook(limits),
                                       risk_lookback=60)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    closes = env.panel.close
    requested, executed, targets = [], [], []
    for _ in range(300):
        action = np.zeros(3, np.float32)
        action[rng.integers(3)] = rng.choice([-1.0, 1.0])  # all in on one symbol
        before = info
        _, _, terminated, truncated, info = env.step(action)
        requested.append(np.abs(info["requested_weights"]).max())
        targets.append(np.abs(info["target_weights"]).max())
        t = info["bar"] - 1  # the decision bar: the book just after the fill, at t's prices
        executed.append(np.abs(info["shares"] * closes[t] / before["equity"]).max())
        if terminated or truncated:
            break
    assert max(requested) == 1.0
    assert max(targets) <= 0.3 + 1e-12
    assert max(executed) <= 0.3 + 1e-6
    assert max(executed) > 0.05  # limited, not simply flat


def test_risk_layer_hook_sizes_by_each_symbols_confidence() -> None:
    from tradingrl.risk import RiskLimits

    markets = random_panel(2, 120)
    predictions = markets[1].predictions.copy()
    predictions[:, 4] = 0.0  # no confidence at all in S1
    markets[1] = random_market(120, seed=1, symbol="S1", predictions=predictions)
    limits = RiskLimits(vol_target=None, var_limit=None, drawdown_limit=None,
                        confidence_sizing=True)
    env = PortfolioTradingEnv(markets, window=3, risk_fn=portfolio_risk_layer_hook(limits))
    _, _, infos = run_actions(env, np.tile([1.0, 1.0, -1.0], (50, 1)))
    for info in infos[1:]:
        t = info["bar"] - 1
        np.testing.assert_allclose(info["target_weights"],
                                   [0.5 * markets[0].predictions[t, 4], 0.0], rtol=1e-6)
    no_confidence = [MarketArrays(symbol=m.symbol, open=m.open, high=m.high, low=m.low,
                                  close=m.close, volume=m.volume, features=m.features,
                                  feature_names=m.feature_names,
                                  prediction_names=("p_down", "p_flat", "p_up"),
                                  timestamps=m.timestamps) for m in markets]
    env = PortfolioTradingEnv(no_confidence, window=3, risk_fn=portfolio_risk_layer_hook(limits))
    env.reset()
    with pytest.raises(ValueError, match="confidence"):
        env.step(np.array([1.0, 1.0, -1.0]))
