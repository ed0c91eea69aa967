"""Evaluation == serving at a block's start: the first decision of an
evaluation block (the bar before the block, its market cut the way
``evaluate_fold`` cuts it) is the served policy's decision on the same bar
for a flat, new account: the same observation, requested target and
risk-checked target. Uses test_trading_policy's small real setup."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.unit.test_trading_policy import (  # noqa: F401  (fixtures)
    AGENT_FEATURES,
    PREDICTIONS,
    RISK_LIMITS,
    _env_kwargs,
    _one_torch_thread,
    _window,
    _window_predictions,
    world,
)
from tradingrl.agents.data import build_agent_table, history_lookback, span_markets
from tradingrl.agents.training import rollout_policy
from tradingrl.evaluation.books import block_env


def test_first_decision_of_a_block_is_the_served_decision(world):  # noqa: F811
    policy = world.policies["limits"]
    symbols = sorted(world.bars["symbol"].unique())
    first = world.table.groupby("symbol")["timestamp"].transform("min")
    stamps = np.sort(world.table.loc[world.table["timestamp"] > first.max(), "timestamp"]
                     .unique())
    env = block_env(_env_kwargs(RISK_LIMITS))
    served_flat = 0
    for k in (60, 150, 240):
        block_start, decision = pd.Timestamp(stamps[k]), pd.Timestamp(stamps[k - 1])
        predictions = _window_predictions(world, [(s, decision) for s in symbols])
        table, _ = build_agent_table(world.table, world.bars, predictions, AGENT_FEATURES,
                                     PREDICTIONS)
        markets = span_markets(table, world.scaler, PREDICTIONS, start=block_start,
                               end=pd.Timestamp(stamps[k + 20]), lookback=history_lookback(env))
        decisions, observations = policy.decide_with_observations(
            _window(world.bars, end=decision))
        served = decisions.set_index("symbol")
        for market in markets:
            rollout = rollout_policy(market, policy.agent, env)
            bar = int(rollout["decision_bar"][0])
            assert pd.Timestamp(market.timestamps[bar], tz="UTC") == decision
            row = served.loc[market.symbol]
            assert rollout["requested_target"][0] == row["requested_target"]
            assert rollout["target"][0] == row["target"]
            served_flat += row["target"] == 0.0
            action, _ = policy.agent.predict(observations[market.symbol], deterministic=True)
            assert float(np.clip(action[0], -1, 1)) == rollout["requested_target"][0]
    assert served_flat < 2 * 3  # the served decisions are not all flat
