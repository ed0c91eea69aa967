"""Serving a portfolio agent (``env_kind: portfolio``): the bundle and
:class:`TradingPolicy` decide the weights over all its symbols at once, and
the decision is the one :class:`PortfolioTradingEnv` makes at that bar (the
env that trained and judged it): same observation bit for bit, same
requested weights, same risk-checked weights, for a new all-cash account and
for an account carried through 25 bars of trading."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_trading_policy import (
    AGENT_FEATURES,
    AGENT_PARAMS,
    FEATURES_PARAMS,
    PREDICTIONS,
    RISK_LIMITS,
    _one_torch_thread,  # noqa: F401 (the autouse fixture, used by name)
    _save_trend_model,
    _window,
)

from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features.build import build_feature_table
from tradingrl.features.labels import LabelSpec
from tradingrl.registry.bundle import build_policy_bundle, read_manifest
from tradingrl.registry.inputs import PortfolioAccountState
from tradingrl.registry.policy import TradingPolicy

N_SYMBOLS = 3


# The residual action: each symbol's sleeve adjusts p_up - p_down (action 0:
# the supervised baseline's weights), as params.yaml ships the action.
RESIDUAL_ENV = {**AGENT_PARAMS["env"], "action_mode": "residual"}
ENVS = {"target": AGENT_PARAMS["env"], "residual": RESIDUAL_ENV}


def _env_kwargs(mode="target"):
    from tradingrl.envs.decision import env_kwargs_from_config

    return env_kwargs_from_config(ENVS[mode], AGENT_PARAMS["costs"], RISK_LIMITS, "portfolio")


def _markets(world, predictions):
    from tradingrl.agents.data import build_agent_table, span_markets

    table, _ = build_agent_table(world.table, world.bars, predictions, AGENT_FEATURES,
                                 PREDICTIONS)
    return span_markets(table, world.scaler, PREDICTIONS, start=table["timestamp"].min(),
                        end=table["timestamp"].max(), lookback=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch
    from stable_baselines3 import PPO

    from tradingrl.agents.data import build_agent_table, fit_agent_scaler
    from tradingrl.envs.portfolio import PortfolioTradingEnv
    from tradingrl.models.predict import TrendModel

    root = tmp_path_factory.mktemp("portfolio_policy")
    bars = generate_market(SyntheticMarketConfig(n_symbols=N_SYMBOLS, n_bars=400, seed=5))
    bars = bars.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    table, _ = build_feature_table(bars, LabelSpec(**FEATURES_PARAMS["label"]),
                                   warmup_bars=FEATURES_PARAMS["warmup_bars"])
    cnn_dir = _save_trend_model(root / "cnn_lstm", table, dropout=0.0, mc_samples=1)
    trend = TrendModel.load(cnn_dir)
    predictions = trend.predict(table)
    agent_table, _ = build_agent_table(table, bars, predictions, AGENT_FEATURES, PREDICTIONS)
    stamps = np.sort(agent_table["timestamp"].unique())
    scaler = fit_agent_scaler(agent_table, AGENT_FEATURES, stamps[0], stamps[len(stamps) // 2])
    world = SimpleNamespace(root=root, bars=bars, table=table, trend=trend,
                            predictions=predictions, scaler=scaler)
    markets = _markets(world, predictions)
    world.symbols = [m.symbol for m in markets]
    world.bundles, world.policies, world.agent_dirs, world.env_configs = {}, {}, {}, {}
    world.cnn_dir = cnn_dir
    for mode, env_params in ENVS.items():
        env = PortfolioTradingEnv(markets, **_env_kwargs(mode))
        agent = PPO("MlpPolicy", env, seed=0, n_steps=64, batch_size=32, device="cpu",
                    policy_kwargs={"net_arch": [16, 16]})
        with torch.no_grad():  # untrained heads act near 0; spread the weights
            agent.policy.action_net.weight.mul_(300.0)
        agent_dir = root / f"agent_{mode}"
        agent_dir.mkdir()
        agent.save(agent_dir / "agent.zip")
        scaler.save(agent_dir / "scaler.json")
        env_config = {
            "algorithm": "ppo", "env_kind": "portfolio",
            "observation_size": int(env.observation_space.shape[0]),
            "action_shape": list(env.action_space.shape), "features": AGENT_FEATURES,
            "prediction_columns": PREDICTIONS, "symbols": world.symbols,
            "env": env_params, "costs": AGENT_PARAMS["costs"], "risk": RISK_LIMITS,
            "spans": {}, "chosen_seed": 0}
        (agent_dir / "env_config.json").write_text(json.dumps(env_config))
        world.bundles[mode] = build_policy_bundle(cnn_dir, agent_dir, FEATURES_PARAMS,
                                                  root / f"bundle_{mode}")
        world.policies[mode] = TradingPolicy.load(world.bundles[mode])
        world.agent_dirs[mode], world.env_configs[mode] = agent_dir, env_config
    # The target-weights agent, for the tests that need one.
    world.agent_dir, world.env_config = world.agent_dirs["target"], world.env_configs["target"]
    world.bundle, world.policy = world.bundles["target"], world.policies["target"]
    return world


def _served_predictions(world, t):
    """The batch predictions with bar t of every symbol predicted from its
    window alone, as serving predicts it (batching changes the last bits;
    tests/unit/test_trading_policy.py)."""
    predictions = world.predictions.copy()
    for symbol in world.symbols:
        part = world.table[world.table["symbol"] == symbol].reset_index(drop=True)
        one = world.trend.predict(part, rows=(part["timestamp"] == t).to_numpy())
        hit = (predictions["symbol"] == symbol) & (predictions["timestamp"] == t)
        predictions.loc[hit, one.columns[2:]] = one.iloc[0, 2:].to_numpy()
    return predictions


def _env_at(world, t, start=None, mode="target"):
    """A portfolio env on the markets with t's predictions as served, reset
    at ``start`` (default: t's bar), and t's bar index."""
    from tradingrl.envs.portfolio import PortfolioTradingEnv

    markets = _markets(world, _served_predictions(world, t))
    i = int(np.flatnonzero(markets[0].timestamps == t.tz_localize(None).to_datetime64())[0])
    env = PortfolioTradingEnv(markets, **_env_kwargs(mode))
    obs, _ = env.reset(options={"start_bar": i if start is None else start})
    return env, obs, i


def test_the_bundle_records_a_portfolio_agent(world):
    manifest = read_manifest(world.bundle)
    agent = manifest["agent"]
    assert agent["env_kind"] == "portfolio"
    assert agent["symbols"] == world.symbols == manifest["input"]["symbols"]
    assert agent["allow_short"] is False and agent["max_gross_leverage"] == 1.0
    # N x (window 5 x 12 features + 5 predictions + a weight) + cash, PnL, drawdown
    assert agent["observation_size"] == N_SYMBOLS * (5 * 12 + 5 + 1) + 3


@pytest.mark.parametrize("mode", ["target", "residual"])
def test_new_account_decision_equals_the_environment(world, mode):
    """For an all-cash account at bar t the policy's observation is the
    env's bit for bit, its requested weights are the env's map of the agent's
    action (target weights, or the residual adjustment of p_up - p_down),
    and its risk-checked weights are the env's ``target_weights``."""
    policy = world.policies[mode]
    stamps = np.sort(world.table["timestamp"].unique())
    bindings, checked = set(), 0
    for t in (pd.Timestamp(stamps[k]) for k in (80, 150, 200, -2)):
        decisions, observations = policy.decide_with_observations(_window(world.bars, end=t))
        env, obs_env, i = _env_at(world, t, mode=mode)
        assert i >= AGENT_PARAMS["env"]["risk_lookback"]
        np.testing.assert_array_equal(observations["portfolio"], obs_env)
        action, _ = policy.agent.predict(obs_env, deterministic=True)
        assert len(action) == (N_SYMBOLS if mode == "residual" else N_SYMBOLS + 1)
        _, _, _, _, info = env.step(action)
        assert list(decisions["symbol"]) == world.symbols
        assert (decisions["timestamp"] == t).all()
        np.testing.assert_array_equal(decisions["requested_target"], info["requested_weights"])
        np.testing.assert_array_equal(decisions["target"], info["target_weights"])
        assert decisions["risk_binding"].iloc[0] == ",".join(env._risk_state["binding"])
        bindings.add(decisions["risk_binding"].iloc[0])
        checked += 1
    assert checked == 4
    assert bindings - {""}  # the risk layer really changed some weights


def test_carried_account_equals_the_environment_after_trading(world):
    """Step the env with the agent for 25 bars, hand its book and risk state
    to the policy: the same observation and weights as the env's next step."""
    stamps = np.sort(world.table["timestamp"].unique())
    start, steps = 60, 25
    markets = _markets(world, world.predictions)
    t = pd.Timestamp(markets[0].timestamps[start + steps]).tz_localize("UTC")
    assert t in set(pd.DatetimeIndex(stamps))
    env, obs, _ = _env_at(world, t, start=start)
    for _ in range(steps):
        action, _ = world.policy.agent.predict(obs, deterministic=True)
        obs, _, _, _, info = env.step(action)
    assert env.bar == start + steps
    weights = env.weights
    assert np.abs(weights).sum() > 0.1 and info["drawdown"] >= 0.0  # a real book is carried
    risk_state = env._risk_state["risk_state"]
    account = PortfolioAccountState(
        weights=dict(zip(world.symbols, weights.tolist(), strict=True)),
        cash_fraction=env._cash / env.equity, unrealised_pnl=float(obs[-2]),
        drawdown=float(obs[-1]), equity=env.equity, peak_equity=risk_state.peak_equity,
        breaker_active=risk_state.breaker_active, bars_since_trip=risk_state.bars_since_trip)
    action, _ = world.policy.agent.predict(obs, deterministic=True)
    _, _, _, _, info = env.step(action)

    decisions, observations = world.policy.decide_with_observations(
        _window(world.bars, end=t), account)
    np.testing.assert_array_equal(observations["portfolio"], obs)
    np.testing.assert_array_equal(decisions["requested_target"], info["requested_weights"])
    np.testing.assert_array_equal(decisions["target"], info["target_weights"])
    assert decisions["risk_peak_equity"].iloc[0] == env._risk_state["risk_state"].peak_equity


def test_requests_without_every_symbol_or_one_last_bar_are_refused(world):
    bars = world.bars
    with pytest.raises(ValueError, match=r"exactly its symbols .* lacks \['SYN002'\]"):
        world.policy.decide(bars[bars["symbol"] != "SYN002"])
    late = bars[~((bars["symbol"] == "SYN001")
                  & (bars["timestamp"] == bars["timestamp"].max()))]
    with pytest.raises(ValueError, match="their last bars differ"):
        world.policy.decide(late)
    with pytest.raises(ValueError, match=r"unknown portfolio account field\(s\) \['SYN000'\]"):
        world.policy.decide(bars, {"SYN000": {"position": 0.5, "cash_fraction": 0.5}})
    with pytest.raises(ValueError, match="weights given for symbol"):
        world.policy.decide(bars, {"weights": {"OTHER": 0.1}})
    with pytest.raises(ValueError, match="sum to 1"):
        world.policy.decide(bars, {"weights": {"SYN000": 0.5}, "cash_fraction": 0.9})


def test_a_bundle_without_the_symbols_or_with_a_residual_action_is_refused(world, tmp_path):
    for change, message in (({"symbols": None}, "must list its symbols"),
                            ({"env": {**AGENT_PARAMS["env"], "no_trade_band": 0.1}},
                             "no no-trade band"),
                            ({"action_shape": [N_SYMBOLS]}, "action_shape"),
                            ({"env": RESIDUAL_ENV}, "action_shape"),
                            ({"env": {**AGENT_PARAMS["env"], "allow_short": True}},
                             "does not pass to the portfolio env")):
        agent_dir = tmp_path / f"agent_{len(list(tmp_path.iterdir()))}"
        shutil.copytree(world.agent_dir, agent_dir)
        (agent_dir / "env_config.json").write_text(json.dumps({**world.env_config, **change}))
        with pytest.raises(ValueError, match=message):
            build_policy_bundle(world.cnn_dir, agent_dir, FEATURES_PARAMS,
                                tmp_path / "bundle")


def test_reference_replay_trades_the_book_the_policy_serves(world):
    """The promote stage's reference window for a portfolio bundle: one book
    over all symbols from an all-cash start; its first decision is the
    served one for that account (batch predictions: equal up to float
    noise), every later one keeps the action's reach (long-only, gross <= 1)."""
    from tradingrl.monitoring.decisions import read_env_config, reference_window
    from tradingrl.monitoring.reference import build_reference_bundle

    bundle = build_reference_bundle(world.cnn_dir, world.agent_dir, FEATURES_PARAMS,
                                    world.root / "bundle_reference", bars=world.bars,
                                    features=world.table, sessions=60)
    reference = pd.read_parquet(bundle / "reference.parquet")
    assert sorted(reference["symbol"].unique()) == world.symbols
    stamps = np.sort(reference["timestamp"].unique())
    assert len(stamps) == 60
    decided = reference[reference["timestamp"] < stamps[-1]]
    assert decided["target"].notna().all() and reference.loc[
        reference["timestamp"] == stamps[-1], "target"].isna().all()
    gross = decided.groupby("timestamp")["target"].sum()
    assert (decided["target"] >= 0.0).all() and (gross <= 1.0 + 1e-9).all()
    assert decided["target"].std() > 0.01  # the weights move: a real book

    served = world.policy.decide(_window(world.bars, end=pd.Timestamp(stamps[0])))
    first = decided[decided["timestamp"] == stamps[0]].set_index("symbol").loc[world.symbols]
    np.testing.assert_allclose(served["target"], first["target"], atol=1e-5)
    # The replay again, from the bundle: the same rows.
    again = reference_window(TradingPolicy.load(bundle), read_env_config(bundle), world.bars,
                             world.table, sessions=60)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), reference.reset_index(drop=True),
                                  check_dtype=False)


def test_registered_pyfunc_decides_the_book_with_its_account(world, tmp_path):
    """Registered as the promote stage registers it (input example: every
    symbol's last min_history_bars bars), the MLflow pyfunc answers what the
    policy answers, the book's account travelling in the ``account`` JSON
    parameter; a breaker the account has tripped sends the book to cash."""
    import mlflow

    from tradingrl.registry.promotion import example_window
    from tradingrl.registry.pyfunc import log_trading_policy, serving_input, serving_output

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        experiment = mlflow.create_experiment("policy",
                                              artifact_location=(tmp_path / "art").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        example = example_window(world.bars, world.policy.manifest)
        assert sorted(example["symbol"].unique()) == world.symbols
        with mlflow.start_run():
            version = log_trading_policy(world.bundle, example)
        model = mlflow.pyfunc.load_model(f"models:/trading-policy/{version}")
        window = serving_input(_window(world.bars, n=200))
        pd.testing.assert_frame_equal(model.predict(window),
                                      serving_output(world.policy.decide(window)))
        account = {"weights": {"SYN000": 0.3, "SYN002": 0.2}, "unrealised_pnl": -0.02,
                   "drawdown": 0.3, "equity": 0.7, "peak_equity": 1.0}
        served = model.predict(window, params={"account": json.dumps(account)})
        pd.testing.assert_frame_equal(served,
                                      serving_output(world.policy.decide(window, account)))
        assert served["target"].tolist() == [0.0] * N_SYMBOLS
        assert served["requested_target"].abs().sum() > 0.0
        assert set(served["risk_binding"]) == {"drawdown_breaker"}
    finally:
        mlflow.set_tracking_uri(previous)


def test_an_untrained_residual_portfolio_agent_is_the_supervised_baseline(world):
    """Action 0 in the residual portfolio env requests, bar for bar, the
    weights of the portfolio ``supervised`` baseline (each symbol's 1/N
    sleeve at p_up - p_down, long-only clipped at 0), and trades its book:
    equal up to the float32 rounding of the baseline's own action encoding."""
    from tradingrl.evaluation.books import BaselineSettings
    from tradingrl.evaluation.portfolio_books import (
        baseline_weights,
        block_portfolio_env,
        rollout_book,
        weights_act,
    )

    markets = _markets(world, world.predictions)
    residual = block_portfolio_env(markets, _env_kwargs("residual"))
    target = block_portfolio_env(markets, _env_kwargs("target"))
    first, n_steps = target.first_bar, target.last_bar - target.first_bar
    sma = [np.ones(len(m)) for m in markets]
    supervised = weights_act(baseline_weights(markets, first, n_steps, sma, BaselineSettings(),
                                              fold=1)["supervised"])
    zero = np.zeros(N_SYMBOLS, dtype=np.float32)
    residual.reset()
    target.reset()
    moved = 0.0
    for _ in range(n_steps - 1):  # the last step closes the block
        _, _, _, _, ours = residual.step(zero)
        _, _, _, _, theirs = target.step(supervised(None, target))
        np.testing.assert_allclose(ours["requested_weights"], theirs["requested_weights"],
                                   atol=1e-6)
        np.testing.assert_allclose(ours["target_weights"], theirs["target_weights"], atol=1e-6)
        moved += float(np.abs(ours["requested_weights"]).sum())
    assert moved > 0.1 * n_steps / N_SYMBOLS  # the signal really positions the book
    books = [rollout_book(block_portfolio_env(markets, _env_kwargs(mode)), act)
             for mode, act in (("residual", lambda obs, env: zero), ("target", supervised))]
    np.testing.assert_allclose(books[0].log_return, books[1].log_return, atol=1e-7)


def test_a_portfolio_champion_is_replayed_as_one_book_block_by_block(world):
    """The promotion gate's champion comparison with a portfolio champion
    (trained up to a cut): each fold of the challenger's book is matched by
    the champion's one portfolio book over the same fill bars, starting in
    cash at the fold's first fill and ending in cash at its last."""
    from tradingrl.monitoring.reference import build_reference_bundle, champion_comparison
    from tradingrl.registry.comparison import book_sharpe

    table = world.table
    sessions = pd.DatetimeIndex(np.sort(table["timestamp"].unique()))
    early = table[table["timestamp"] <= sessions[int(0.5 * len(sessions))]]
    champion = build_reference_bundle(
        world.cnn_dir, world.agent_dirs["residual"], FEATURES_PARAMS,
        world.root / "champion_residual", bars=world.bars[world.bars["timestamp"]
                                                          <= early["t1"].max()],
        features=early, sessions=20)
    fills = sessions[sessions > early["t1"].max()][:-1]
    half = len(fills) // 2
    challenger = np.random.default_rng(0).normal(0.0, 0.01, len(fills))
    curves = pd.DataFrame({"series": "policy", "timestamp": fills, "log_return": challenger,
                           "fold": np.where(np.arange(len(fills)) < half, 1, 2)})
    result = champion_comparison(champion, "1", challenger_env_config=world.env_configs[
        "residual"], curves=curves, bars=world.bars, features=table, symbols=world.symbols,
        min_bars=40, bars_per_year=252)
    assert result.comparable, result.reason
    assert result.n_bars == len(fills) and result.symbols == world.symbols
    assert result.challenger_sharpe == book_sharpe(challenger, 252)
    assert result.champion_sharpe is not None and result.champion_sharpe != 0.0
