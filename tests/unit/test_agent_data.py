"""The agent's table and spans: joins keep only predicted bars, sigma uses the
whole past, the scaler sees the training span only, a span's first fill is at
its start; MultiMarketEnv trades one market per episode, reproducibly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from tradingrl.agents.data import build_agent_table, fit_agent_scaler, span_markets
from tradingrl.agents.reference import ConstantPolicy
from tradingrl.agents.training import build_env
from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.envs import SingleAssetTradingEnv, rolling_sigma
from tradingrl.envs.multi import MultiMarketEnv

PREDS = ["p_down", "p_flat", "p_up", "expected_return", "confidence"]


@pytest.fixture(scope="module")
def tables():
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=300, seed=5))
    bars = bars.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    close = bars["close"]
    features = bars[["timestamp", "symbol"]].assign(
        ret_1=np.log(close).groupby(bars["symbol"]).diff().fillna(0.0),
        level=close / 100.0)
    features = features.groupby("symbol").tail(250)  # warm-up rows dropped
    rng = np.random.default_rng(0)
    predicted = features.groupby("symbol").tail(150)  # the out-of-fold span
    p = rng.dirichlet(np.ones(3), size=len(predicted))
    predictions = predicted[["timestamp", "symbol"]].assign(
        p_down=p[:, 0], p_flat=p[:, 1], p_up=p[:, 2],
        expected_return=rng.normal(0, 0.01, len(predicted)), confidence=rng.random(len(predicted)))
    return bars, features, predictions


def test_table_keeps_bars_with_predictions_and_sigma_from_the_whole_history(tables):
    bars, features, predictions = tables
    table, counts = build_agent_table(features, bars, predictions, ["ret_1", "level"], PREDS)
    assert counts["rows"] == len(table) == 300
    for symbol, group in table.groupby("symbol"):
        full = bars[bars["symbol"] == symbol].reset_index(drop=True)
        expected = rolling_sigma(full["close"].to_numpy())[-150:]
        np.testing.assert_allclose(group["sigma"].to_numpy(), expected, rtol=0, atol=0)
        assert group["timestamp"].is_monotonic_increasing


def test_label_like_or_missing_columns_are_refused(tables):
    bars, features, predictions = tables
    with pytest.raises(ValueError, match="label-like"):
        build_agent_table(features.assign(fwd_return=0.0), bars, predictions, ["fwd_return"], PREDS)
    with pytest.raises(ValueError, match="not in"):
        build_agent_table(features, bars, predictions, ["nope"], PREDS)


def test_scaler_uses_the_training_span_only(tables):
    bars, features, predictions = tables
    table, _ = build_agent_table(features, bars, predictions, ["ret_1", "level"], PREDS)
    days = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    scaler = fit_agent_scaler(table, ["ret_1", "level"], days[0], days[99])
    later = table["timestamp"] > days[99]
    changed = table.copy()
    changed.loc[later, "level"] = 1e6
    again = fit_agent_scaler(changed, ["ret_1", "level"], days[0], days[99])
    np.testing.assert_array_equal(scaler.mean, again.mean)
    assert scaler.n_rows == 2 * 100


def test_span_market_first_decision_fills_at_the_span_start(tables):
    bars, features, predictions = tables
    table, _ = build_agent_table(features, bars, predictions, ["ret_1", "level"], PREDS)
    days = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    scaler = fit_agent_scaler(table, ["ret_1", "level"], days[0], days[99])
    window = 7
    markets = span_markets(table, scaler, PREDS, start=days[100], end=days[149], lookback=window)
    assert [m.symbol for m in markets] == sorted(table["symbol"].unique())
    for market in markets:
        assert len(market) == 50 + window
        env = SingleAssetTradingEnv(market, window=window)
        env.reset()
        _, _, _, _, info = env.step(np.array([1.0]))
        assert pd.Timestamp(market.timestamps[info["bar"]], tz="UTC") == days[100]
        row = table[(table["symbol"] == market.symbol) & (table["timestamp"] == days[100])]
        assert info["fill_price"] == row["open"].item()
        np.testing.assert_array_equal(market.predictions[window],
                                      row[PREDS].to_numpy(np.float32)[0])


def test_multi_market_env_is_reproducible_and_trades_one_market_per_episode(tables):
    bars, features, predictions = tables
    table, _ = build_agent_table(features, bars, predictions, ["ret_1", "level"], PREDS)
    days = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    scaler = fit_agent_scaler(table, ["ret_1", "level"], days[0], days[-1])
    markets = span_markets(table, scaler, PREDS, start=days[0], end=days[-1], lookback=0)
    kwargs = {"window": 3, "random_start": True, "max_steps": 10}
    env = build_env(markets, kwargs)
    assert isinstance(env, MultiMarketEnv)
    check_env(env, skip_render_check=True)

    def episodes(seed: int) -> list[tuple[str, int, float]]:
        env = MultiMarketEnv(markets, **kwargs)
        out = []
        obs, info = env.reset(seed=seed)
        for _ in range(6):
            start = info["bar"]
            done, total = False, 0.0
            while not done:
                obs, reward, term, trunc, step = env.step(ConstantPolicy(0.5).predict(obs)[0])
                total += reward
                done = term or trunc
            out.append((step["symbol"], start, total))
            obs, info = env.reset()
        return out

    first, again, other = episodes(1), episodes(1), episodes(2)
    assert first == again
    assert first != other
    assert {s for s, _, _ in first + other} == {m.symbol for m in markets}

    forced = MultiMarketEnv(markets, **kwargs)
    _, info = forced.reset(seed=0, options={"market": 1, "start_bar": 5})
    assert (info["symbol"], info["bar"]) == (markets[1].symbol, 5)
    with pytest.raises(ValueError, match="market"):
        forced.reset(options={"market": 2})


def test_multi_market_env_refuses_markets_with_other_columns(tables):
    bars, features, predictions = tables
    table, _ = build_agent_table(features, bars, predictions, ["ret_1", "level"], PREDS)
    scaler = fit_agent_scaler(table, ["ret_1", "level"], table["timestamp"].min(),
                              table["timestamp"].max())
    a = span_markets(table, scaler, PREDS, start=table["timestamp"].min(),
                     end=table["timestamp"].max(), lookback=0)
    b = span_markets(table, scaler, PREDS[:3], start=table["timestamp"].min(),
                     end=table["timestamp"].max(), lookback=0)
    with pytest.raises(ValueError, match="other feature or prediction"):
        MultiMarketEnv([a[0], b[1]])
