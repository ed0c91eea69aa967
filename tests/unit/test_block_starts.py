"""Block starts: an evaluation block's (and a validation span's) first decisions
have the history a decision in the middle of the data has. The bars before the
block are known then (past-only): the observation window, the risk layer's
returns and the known volume use them; trading starts at the block's first bar.

First the leakage guard: nothing after a decision bar (its fill bar and every
later bar, the block's bars for the decision before the block) changes that
decision. Then: the first decision is no longer forced flat, and it is the
decision an environment over the symbol's whole history makes on the same bar
(the served policy's; test_trading_policy checks served == that environment).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradingrl.agents.data import (
    build_agent_table,
    fit_agent_scaler,
    history_lookback,
    span_markets,
)
from tradingrl.agents.training import rollout_policy
from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.envs import SingleAssetTradingEnv
from tradingrl.envs.decision import env_kwargs_from_config
from tradingrl.evaluation.books import block_env
from tradingrl.evaluation.policy_eval import first_decision_bar

FEATURES = ["ret_1", "level"]
PREDS = ["p_down", "p_flat", "p_up", "expected_return", "confidence"]
ENV = {"window": 10, "initial_cash": 1_000_000, "fill": "next_open", "reward_mode": "none",
       "risk_lambda": 0.1, "dsr_eta": 0.01, "max_steps": None, "random_start": False,
       "min_episode_steps": 1, "end_of_data": "terminate", "risk_lookback": 60,
       "action_mode": "target", "residual_scale": 1.0, "no_trade_band": 0.0}
COSTS = {"commission_bps": 1.0, "spread_bps": 2.0, "impact_coef": 0.5,
         "participation_limit": 0.1, "volume_window": 20}
RISK = {"enabled": True, "forecast_horizon_bars": 5, "max_position": 1.0,
        "max_gross_leverage": 1.0, "allow_short": True, "vol_target": 0.25,
        "bars_per_year": 252, "var_limit": 0.03, "kelly_fraction": None,
        "confidence_sizing": False, "min_history": 20, "drawdown_limit": 0.25,
        "cooldown_bars": 5, "drawdown_reset": None}  # params.yaml's train_agent.risk


class ObservationPolicy:
    """A deterministic policy whose action depends on the whole observation."""

    def predict(self, obs, deterministic=True):
        return np.array([np.tanh(0.3 * float(np.sum(obs)))], dtype=np.float32), None


def _table(bars: pd.DataFrame) -> pd.DataFrame:
    close = bars["close"]
    features = bars[["timestamp", "symbol"]].assign(
        ret_1=np.log(close).groupby(bars["symbol"]).diff().fillna(0.0), level=close / 100.0)
    features = features.groupby("symbol").tail(350)
    predicted = features.groupby("symbol").tail(300)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=len(predicted))
    predictions = predicted[["timestamp", "symbol"]].assign(
        p_down=p[:, 0], p_flat=p[:, 1], p_up=p[:, 2],
        expected_return=rng.normal(0, 0.01, len(predicted)), confidence=rng.random(len(predicted)))
    table, _ = build_agent_table(features, bars, predictions, FEATURES, PREDS)
    return table


@pytest.fixture(scope="module")
def world():
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=400, seed=11))
    bars = bars.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    table = _table(bars)
    days = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    scaler = fit_agent_scaler(table, FEATURES, days[0], days[149])
    env = block_env(env_kwargs_from_config(ENV, COSTS, RISK, "single_asset"))
    return bars, table, days, scaler, env


def _block(table, scaler, env, start, end):
    return span_markets(table, scaler, PREDS, start=start, end=end,
                        lookback=history_lookback(env))


def test_history_lookback_covers_window_risk_returns_and_known_volume(world):
    *_, env = world
    assert history_lookback(env) == 61  # risk_lookback 60 returns need 61 closes
    assert history_lookback({**env, "window": 80}) == 80


def test_nothing_after_a_decision_bar_changes_that_decision(world):
    """Perturb every bar after decision bar k (prices, volume, features,
    predictions, sigma): the decisions at bars <= k are unchanged. k = the
    first decision (the bar before the block: the whole block is perturbed)
    and a later one."""
    _, table, days, scaler, env = world
    start, end = days[200], days[260]
    base = {m.symbol: m for m in _block(table, scaler, env, start, end)}
    rollouts = {s: rollout_policy(m, ObservationPolicy(), env) for s, m in base.items()}
    rng = np.random.default_rng(3)
    for offset in (0, 7):
        cut = days[199 + offset]  # the decision bar
        later = (table["timestamp"] > cut).to_numpy()
        changed = table.copy()
        shock = np.where(later, rng.uniform(0.7, 1.4, len(table)), 1.0)
        for column in ("open", "high", "low", "close"):
            changed[column] = changed[column] * shock
        changed.loc[later, "volume"] = 10.0
        changed.loc[later, "sigma"] = 0.3
        changed.loc[later, FEATURES] = rng.normal(size=(int(later.sum()), len(FEATURES)))
        changed.loc[later, "expected_return"] = 0.05
        changed.loc[later, "confidence"] = 1.0
        for market in _block(changed, scaler, env, start, end):
            ours, theirs = rollouts[market.symbol], rollout_policy(market, ObservationPolicy(),
                                                                   env)
            assert ours["decision_bar"][0] == market.history_bars - 1  # the bar before the block
            done = offset + 1  # the steps decided at bars <= cut
            for key in ("action", "requested_target", "target"):
                np.testing.assert_array_equal(ours[key][:done], theirs[key][:done], err_msg=key)
            assert not np.array_equal(ours["equity"][offset:], theirs["equity"][offset:])


def test_first_decision_of_a_block_is_not_forced_flat(world):
    _, table, days, scaler, env = world
    for market in _block(table, scaler, env, days[200], days[260]):
        assert market.history_bars == 61
        first = first_decision_bar(market, env["window"])
        assert first == 60 and pd.Timestamp(market.timestamps[first + 1]) == \
            days[200].tz_localize(None)
        trader = SingleAssetTradingEnv(market, **env)
        trader.reset()
        assert trader.bar == first
        *_, info = trader.step(np.array([1.0]))
        assert info["target"] != 0.0
        assert "insufficient_history" not in trader._risk_state["binding"]
        # Today's slice (only the observation window before the block) went flat.
        short = span_markets(table, scaler, PREDS, start=days[200], end=days[260],
                             lookback=env["window"])
        old = SingleAssetTradingEnv(next(m for m in short if m.symbol == market.symbol), **env)
        old.reset()
        *_, old_info = old.step(np.array([1.0]))
        assert old_info["target"] == 0.0
        assert "insufficient_history" in old._risk_state["binding"]


def test_block_start_decisions_equal_the_whole_history_decisions(world):
    """The block's first decisions equal, bit for bit, those of an environment
    over the symbol's whole history started at the same bar with a flat, new
    account: what serving computes (test_trading_policy: served == env)."""
    _, table, days, scaler, env = world
    whole = {m.symbol: m for m in span_markets(table, scaler, PREDS, start=days[0],
                                               end=days[260], lookback=0)}
    for market in _block(table, scaler, env, days[200], days[260]):
        full = whole[market.symbol]
        bar = int(np.flatnonzero(full.timestamps == market.timestamps[market.history_bars - 1])[0])
        a = SingleAssetTradingEnv(market, **env)
        b = SingleAssetTradingEnv(full, **{**env, "close_at_end": False})
        obs_a, _ = a.reset()
        obs_b, _ = b.reset(options={"start_bar": bar})
        np.testing.assert_array_equal(obs_a, obs_b)
        for _ in range(5):
            action = ObservationPolicy().predict(obs_a)[0]
            obs_a, *_, info_a = a.step(action)
            obs_b, *_, info_b = b.step(action)
            np.testing.assert_array_equal(obs_a, obs_b)
            for key in ("requested_target", "target", "traded_shares", "equity"):
                assert info_a[key] == info_b[key], key
