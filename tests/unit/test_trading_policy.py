"""trading-policy: what is served is what the environment evaluates.

A small real setup (module fixture): a synthetic market of 2 symbols x 500
bars, the feature table built by the features stage's function, an untrained
seeded CNN+LSTM saved by train_model's own ``save_trend_model``, an untrained
seeded PPO agent (action head scaled up so its actions span [-1, 1] and the
risk rules bind) saved in train_agent's layout with the agent scaler of
``fit_agent_scaler``. The env route is the pipeline's: ``build_agent_table``
-> ``span_markets`` -> ``SingleAssetTradingEnv`` with the keyword arguments
of :func:`tradingrl.envs.decision.env_kwargs_from_config` (risk layer on).

The observation, the action's clip, the risk context and the risk function
are one code path (tradingrl/envs/decision.py, unit-tested in
test_decision.py); the bit-for-bit tests here check what the policy feeds
it: the feature rows, their scaling, the predictions, the returns window and
the account.
"""

from __future__ import annotations

import json
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features.build import build_feature_table
from tradingrl.features.labels import LabelSpec
from tradingrl.features.technical import FEATURE_COLUMNS
from tradingrl.registry.bundle import build_policy_bundle, read_manifest, required_history
from tradingrl.registry.inputs import AccountState
from tradingrl.registry.policy import TradingPolicy

FEATURES_PARAMS = {"warmup_bars": 120,
                   "label": {"horizon": 5, "threshold_mode": "volatility", "threshold": 0.5,
                             "vol_window": 20}}
AGENT_FEATURES = ["ret_1", "ret_5", "ret_20", "rv_20", "rv_ratio_5_60", "sma_ratio_20",
                  "sma_ratio_50", "macd_diff", "rsi_14", "bb_pband", "adx", "log_volume_z20"]
PREDICTIONS = ["p_down", "p_flat", "p_up", "expected_return", "confidence"]
TREND_WINDOW = 20
RISK_LIMITS = {"enabled": True, "forecast_horizon_bars": 5, "max_position": 0.8,
               "max_gross_leverage": 1.0, "allow_short": True, "vol_target": 0.15,
               "bars_per_year": 252, "var_limit": 0.02, "kelly_fraction": None,
               "confidence_sizing": False, "min_history": 20, "drawdown_limit": 0.25,
               "cooldown_bars": 5, "drawdown_reset": None}
# The model's own numbers size the position: confidence scaling and half Kelly.
RISK_MODEL_SIZED = {**RISK_LIMITS, "confidence_sizing": True, "kelly_fraction": 0.5}
AGENT_PARAMS = {  # train_agent's params section, small
    "features": AGENT_FEATURES,
    "prediction_columns": PREDICTIONS,
    "env": {"window": 5, "initial_cash": 1_000_000, "fill": "next_open", "reward_mode": "none",
            "risk_lambda": 0.1, "dsr_eta": 0.01, "max_steps": None, "random_start": False,
            "min_episode_steps": 1, "end_of_data": "terminate", "risk_lookback": 30,
            "action_mode": "target", "residual_scale": 1.0, "no_trade_band": 0.0},
    "costs": {"commission_bps": 1.0, "spread_bps": 2.0, "impact_coef": 0.5,
              "participation_limit": 0.1},
    "risk": RISK_LIMITS,
}
# The residual action with a no-trade band: the action adjusts p_up - p_down
# by up to 0.5 and targets closer than 0.05 to the position are held.
RESIDUAL_ENV = {**AGENT_PARAMS["env"], "action_mode": "residual", "residual_scale": 0.5,
                "no_trade_band": 0.05}
MIN_BARS = 120 + max(TREND_WINDOW, 5, 30 + 1)  # warm-up + the risk layer's 31 closes = 151


def _save_trend_model(out_dir, table, *, dropout, mc_samples, seed=0):
    """An untrained, seeded CNN+LSTM in models/cnn_lstm's layout (train_model's writer)."""
    import torch

    from tradingrl.models.cnn_lstm import CNNLSTM
    from tradingrl.models.data import FeatureScaler
    from tradingrl.models.train import save_trend_model

    torch.manual_seed(seed)
    hparams = {"conv_channels": 8, "conv_kernel_size": 3, "conv_blocks": 1, "lstm_hidden": 8,
               "attention_size": 8, "head_hidden": 8, "dropout": dropout}
    model = CNNLSTM(len(FEATURE_COLUMNS), **hparams).eval()
    # The scaler is fitted on the first 60% of the sessions (a training span).
    cut = np.sort(table["timestamp"].unique())[int(0.6 * table["timestamp"].nunique())]
    scaler = FeatureScaler.fit(table, FEATURE_COLUMNS, rows=(table["timestamp"] < cut).to_numpy())
    out_dir.mkdir(parents=True)
    save_trend_model(out_dir, [model], scaler,
                     SimpleNamespace(window=TREND_WINDOW, mc_samples=mc_samples, model=hparams),
                     [1.3], list(FEATURE_COLUMNS), {})
    return out_dir


def _env_kwargs(risk, env=None):
    from tradingrl.envs.decision import env_kwargs_from_config

    return env_kwargs_from_config(env or AGENT_PARAMS["env"], AGENT_PARAMS["costs"], risk,
                                  "single_asset")


def _write_agent_dir(out_dir, agent_zip, scaler, observation_size, risk, env=None):
    out_dir.mkdir(parents=True)
    shutil.copy2(agent_zip, out_dir / "agent.zip")
    scaler.save(out_dir / "scaler.json")
    (out_dir / "env_config.json").write_text(json.dumps({
        "algorithm": "ppo", "env_kind": "single_asset", "observation_size": observation_size,
        "action_shape": [1], "features": AGENT_FEATURES, "prediction_columns": PREDICTIONS,
        "env": env or AGENT_PARAMS["env"], "costs": AGENT_PARAMS["costs"], "risk": risk,
        "spans": {}, "chosen_seed": 0}))
    return out_dir


def _markets(table, bars, predictions, scaler):
    from tradingrl.agents.data import build_agent_table, span_markets

    agent_table, _ = build_agent_table(table, bars, predictions, AGENT_FEATURES, PREDICTIONS)
    start, end = agent_table["timestamp"].min(), agent_table["timestamp"].max()
    markets = span_markets(agent_table, scaler, PREDICTIONS, start=start, end=end, lookback=0)
    return {m.symbol: m for m in markets}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Single windows are tiny: on a busy 2-core machine two OpenMP threads
    stall them (~200 ms a forward pass, see pyfunc's torch_threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch
    from stable_baselines3 import PPO

    from tradingrl.agents.data import build_agent_table, fit_agent_scaler
    from tradingrl.agents.training import build_env
    from tradingrl.models.predict import TrendModel

    root = tmp_path_factory.mktemp("trading_policy")
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=500, seed=3))
    bars = bars.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    table, _ = build_feature_table(bars, LabelSpec(**FEATURES_PARAMS["label"]),
                                   warmup_bars=FEATURES_PARAMS["warmup_bars"])
    cnn_dir = _save_trend_model(root / "cnn_lstm", table, dropout=0.0, mc_samples=1)
    trend = TrendModel.load(cnn_dir)
    predictions = trend.predict(table)  # the pipeline's batch predictions

    agent_table, _ = build_agent_table(table, bars, predictions, AGENT_FEATURES, PREDICTIONS)
    stamps = np.sort(agent_table["timestamp"].unique())
    scaler = fit_agent_scaler(agent_table, AGENT_FEATURES, stamps[0], stamps[len(stamps) // 2])
    markets = _markets(table, bars, predictions, scaler)
    env = build_env(markets[min(markets)], _env_kwargs(RISK_LIMITS))
    agent = PPO("MlpPolicy", env, seed=0, n_steps=64, batch_size=32, device="cpu",
                policy_kwargs={"net_arch": [16, 16]})
    with torch.no_grad():  # untrained heads act near 0; spread the actions over [-1, 1]
        agent.policy.action_net.weight.mul_(300.0)
    agent.save(root / "agent.zip")
    obs_size = int(env.observation_space.shape[0])

    agent_dirs = {name: _write_agent_dir(root / f"agent_{name}", root / "agent.zip", scaler,
                                         obs_size, risk)
                  for name, risk in (("limits", RISK_LIMITS), ("model_sized", RISK_MODEL_SIZED))}
    bundles = {name: build_policy_bundle(cnn_dir, agent_dir, FEATURES_PARAMS,
                                         root / f"bundle_{name}")
               for name, agent_dir in agent_dirs.items()}
    agent_dirs["residual"] = _write_agent_dir(root / "agent_residual", root / "agent.zip",
                                              scaler, obs_size, RISK_LIMITS, RESIDUAL_ENV)
    bundles["residual"] = build_policy_bundle(cnn_dir, agent_dirs["residual"], FEATURES_PARAMS,
                                              root / "bundle_residual")
    mc_dir = _save_trend_model(root / "cnn_lstm_mc", table, dropout=0.3, mc_samples=6)
    bundles["mc_dropout"] = build_policy_bundle(mc_dir, agent_dirs["limits"], FEATURES_PARAMS,
                                                root / "bundle_mc_dropout")
    return SimpleNamespace(
        root=root, bars=bars, table=table, trend=trend, predictions=predictions, scaler=scaler,
        cnn_dir=cnn_dir, agent_dirs=agent_dirs, bundles=bundles,
        policies={name: TradingPolicy.load(path) for name, path in bundles.items()})


def _window(bars, end=None, n=None, symbols=None):
    """Bars of ``symbols`` (all) with timestamp <= end (all), the last n per symbol."""
    out = bars if end is None else bars[bars["timestamp"] <= end]
    if symbols is not None:
        out = out[out["symbol"].isin(symbols)]
    if n is not None:
        out = out.groupby("symbol", sort=False).tail(n)
    return out.reset_index(drop=True)


def _window_predictions(world, decisions):
    """The pipeline's batch predictions with the rows of ``decisions``
    ((symbol, t) pairs) predicted from their window alone, as serving does:
    only the row at t enters the observation and the risk context at t, and
    batching changes a prediction in its last bits (see the test below)."""
    predictions = world.predictions.copy()
    for symbol, t in decisions:
        part = world.table[world.table["symbol"] == symbol].reset_index(drop=True)
        one = world.trend.predict(part, rows=(part["timestamp"] == t).to_numpy())
        hit = (predictions["symbol"] == symbol) & (predictions["timestamp"] == t)
        assert hit.sum() == 1
        predictions.loc[hit, one.columns[2:]] = one.iloc[0, 2:].to_numpy()
    return predictions


# ---------------------------------------------------------------- serving == evaluation
# The risk context's entries a flat new account shares with the env's (the
# env's bar indexes its market, and its equity is its cash, the policy's 1.0).
SHARED_CONTEXT = ("drawdown", "position", "returns", "sigma", "confidence", "expected_return")


def _recording(risk_fn, contexts):
    """``risk_fn`` that also appends each context it is called with to ``contexts``."""
    def recorded(target, context):
        contexts.append({k: np.array(context[k]) for k in SHARED_CONTEXT})
        return risk_fn(target, context)

    return recorded


@pytest.mark.parametrize("risk_name", ["limits", "model_sized"])
def test_observation_action_and_risk_target_equal_the_environment(world, risk_name,
                                                                  monkeypatch):
    """For a flat new account at bar t, the policy's observation is the env's
    bit for bit, its requested target is the agent's action on it, the risk
    context it builds is the env's and its target is the env's risk-checked
    ``info["target"]``."""
    from tradingrl.envs.single_asset import SingleAssetTradingEnv

    risk = RISK_LIMITS if risk_name == "limits" else RISK_MODEL_SIZED
    policy = world.policies[risk_name]
    served_contexts: list[dict] = []
    monkeypatch.setattr(policy, "risk_fn", _recording(policy.risk_fn, served_contexts))
    symbols = sorted(world.bars["symbol"].unique())
    first = world.table.groupby("symbol")["timestamp"].transform("min")
    candidates = np.sort(world.table.loc[world.table["timestamp"] > first.max(), "timestamp"]
                         .unique())
    # Decision bars with a full risk window in the env's span, and a bar to fill at.
    tested = [pd.Timestamp(t) for t in candidates[[70, 140, 210, 290, -2]]]
    predictions = _window_predictions(world, [(s, t) for t in tested for s in symbols])
    markets = _markets(world.table, world.bars, predictions, world.scaler)

    checked, bindings = 0, set()
    for t in tested:
        served_contexts.clear()
        decisions, observations = policy.decide_with_observations(_window(world.bars, end=t))
        for symbol, served in zip(symbols, served_contexts, strict=True):
            market = markets[symbol]
            i = int(np.flatnonzero(market.timestamps == t.tz_localize(None).to_datetime64())[0])
            assert i >= AGENT_PARAMS["env"]["risk_lookback"]  # a full return window
            env_contexts: list[dict] = []
            kwargs = _env_kwargs(risk)
            env = SingleAssetTradingEnv(market, **{
                **kwargs, "risk_fn": _recording(kwargs["risk_fn"], env_contexts)})
            obs_env, _ = env.reset(options={"start_bar": i})
            action, _ = policy.agent.predict(obs_env, deterministic=True)
            _, _, _, _, info = env.step(action)
            row = decisions.set_index("symbol").loc[symbol]
            assert row["timestamp"] == t
            assert observations[symbol].dtype == np.float32
            np.testing.assert_array_equal(observations[symbol], obs_env)
            for key in SHARED_CONTEXT:
                np.testing.assert_array_equal(served[key], env_contexts[0][key], err_msg=key)
            assert row["requested_target"] == info["requested_target"]
            assert row["target"] == info["target"]
            assert row["risk_binding"] == ",".join(env._risk_state["binding"])
            bindings.add(row["risk_binding"])
            checked += 1
    assert checked == 2 * len(tested)
    if risk_name == "limits":  # the rules really acted on some decisions
        assert bindings - {""}


@pytest.mark.parametrize("name", ["limits", "residual"])
def test_carried_account_and_risk_state_equal_the_environment_after_trading(world, name):
    """Step the env with the agent for 25 bars, then hand its account and
    risk state to the policy: same observation and same target as the env's
    next step; also with the residual action and a no-trade band (the
    policy's bundle carries the env's action rule)."""
    from tradingrl.envs.single_asset import SingleAssetTradingEnv

    env_params = RESIDUAL_ENV if name == "residual" else AGENT_PARAMS["env"]
    policy = world.policies[name]
    symbol = sorted(world.bars["symbol"].unique())[1]
    start, steps = 40, 25
    market = _markets(world.table, world.bars, world.predictions, world.scaler)[symbol]
    t = pd.Timestamp(market.timestamps[start + steps]).tz_localize("UTC")
    predictions = _window_predictions(world, [(symbol, t)])
    markets = _markets(world.table, world.bars, predictions, world.scaler)
    env = SingleAssetTradingEnv(markets[symbol], **_env_kwargs(RISK_LIMITS, env_params))
    obs, _ = env.reset(options={"start_bar": start})
    held = 0
    for _ in range(steps):
        action, _ = policy.agent.predict(obs, deterministic=True)
        obs, _, _, _, info = env.step(action)
        held += info["target"] != info["requested_target"] and info["traded_shares"] == 0.0
    assert env.bar == start + steps
    assert abs(info["position"]) > 0.05 and info["drawdown"] > 0  # a real account is carried
    risk_state = env._risk_state["risk_state"]
    account = AccountState(
        position=float(obs[-4]), cash_fraction=float(obs[-3]), unrealised_pnl=float(obs[-2]),
        drawdown=float(obs[-1]), equity=env.equity, peak_equity=risk_state.peak_equity,
        breaker_active=risk_state.breaker_active, bars_since_trip=risk_state.bars_since_trip)
    action, _ = policy.agent.predict(obs, deterministic=True)
    _, _, _, _, info = env.step(action)

    decisions, observations = policy.decide_with_observations(
        _window(world.bars, end=t, symbols=[symbol]), {symbol: account})
    np.testing.assert_array_equal(observations[symbol], obs)
    assert decisions["requested_target"].iloc[0] == info["requested_target"]
    assert decisions["target"].iloc[0] == info["target"]
    next_state = env._risk_state["risk_state"]
    assert decisions["risk_peak_equity"].iloc[0] == next_state.peak_equity
    if name == "residual":
        assert held > 0  # the band really kept positions


def test_window_and_batch_predictions_differ_only_in_float_noise(world):
    """Why the env route above predicts the decision rows from their window
    alone: the same window in a batch gives the same numbers up to the last
    bits (batched float32 kernels), never more."""
    symbol = min(world.bars["symbol"].unique())
    part = world.table[world.table["symbol"] == symbol].reset_index(drop=True)
    batch = world.predictions[world.predictions["symbol"] == symbol].set_index("timestamp")
    for row in (TREND_WINDOW - 1, 150, len(part) - 1):
        mask = np.zeros(len(part), dtype=bool)
        mask[row] = True
        one = world.trend.predict(part, rows=mask).set_index("timestamp")
        diff = (one[PREDICTIONS] - batch.loc[one.index, PREDICTIONS]).abs().to_numpy()
        assert diff.max() < 1e-6


# ---------------------------------------------------------------- history needed
def test_min_bars_is_the_warmup_plus_the_longest_row_window():
    # 120 warm-up bars, then 31 closes for 30 risk returns outrun the 20-row
    # trend window and the 5-row agent window.
    assert required_history(120, 20, 5, 30) == {
        "min_bars": 151, "min_feature_rows": 31, "warmup_bars": 120,
        "trend_window": 20, "agent_window": 5, "risk_closes": 31}
    assert required_history(120, 60, 10, 60)["min_bars"] == 181  # params.yaml's shapes
    assert required_history(120, 60, 10, None)["min_bars"] == 180  # risk layer off
    assert required_history(100, 8, 12, None)["min_bars"] == 112  # the agent's window rules
    with pytest.raises(ValueError, match="trend_window"):
        required_history(120, 0, 5, 30)


def test_bundle_records_the_history_it_needs_and_risk_off_needs_less(world, tmp_path):
    manifest = read_manifest(world.bundles["limits"])
    assert manifest["min_history_bars"] == MIN_BARS == 151
    assert world.policies["limits"].min_bars == 151
    assert manifest["features"] == {**FEATURES_PARAMS, "columns": list(FEATURE_COLUMNS)}
    assert manifest["trend_model"]["window"] == TREND_WINDOW
    assert manifest["agent"]["window"] == 5 and manifest["agent"]["obs_clip"] == 10.0
    assert manifest["agent"]["observation_size"] == 5 * 12 + 5 + 4
    assert set(manifest["files_sha256"]) == {
        "cnn_lstm/config.json", "cnn_lstm/scaler.json", "cnn_lstm/feature_list.json",
        "cnn_lstm/model-0.pt", "agent/agent.zip", "agent/env_config.json", "agent/scaler.json"}
    agent_dir = tmp_path / "agent_off"
    shutil.copytree(world.agent_dirs["limits"], agent_dir)
    config = json.loads((agent_dir / "env_config.json").read_text())
    config["risk"] = {**config["risk"], "enabled": False}
    (agent_dir / "env_config.json").write_text(json.dumps(config))
    bundle = build_policy_bundle(world.cnn_dir, agent_dir, FEATURES_PARAMS, tmp_path / "b")
    assert read_manifest(bundle)["min_history_bars"] == 120 + TREND_WINDOW  # 140


def test_minimum_history_decides_and_one_bar_less_is_refused(world):
    policy = world.policies["limits"]
    window = _window(world.bars, n=MIN_BARS)
    decisions = policy.decide(window)
    assert list(decisions["symbol"]) == sorted(world.bars["symbol"].unique())
    assert (decisions["timestamp"] == world.bars["timestamp"].max()).all()
    short = _window(world.bars, n=MIN_BARS - 1)
    with pytest.raises(ValueError, match=r"SYN000: 150 bars, the policy needs at least 151 "
                                         r"\(features warm-up 120 \+ the largest of trend_window "
                                         r"20, agent_window 5, risk_closes 31\)"):
        policy.decide(short)


def test_minimum_history_is_close_to_the_full_history(world):
    """With min_bars only, recursive indicators start later than in the
    pipeline; after the warm-up their memory of the start is small. Measured
    over bars 200..500 of both symbols: observation <= 1.9e-3 (scaled units),
    target <= 5.9e-4; bounded here with a margin."""
    policy = world.policies["limits"]
    for end in (230, 340, 499):
        t = world.bars["timestamp"].iloc[end]
        full, obs_full = policy.decide_with_observations(_window(world.bars, end=t))
        short, obs_short = policy.decide_with_observations(_window(world.bars, end=t, n=MIN_BARS))
        for symbol in obs_full:
            assert 0 < np.abs(obs_full[symbol] - obs_short[symbol]).max() < 5e-3
        assert np.abs(full["target"] - short["target"]).max() < 2e-3
        assert np.abs(full["p_up"] - short["p_up"]).max() < 1e-4


def test_a_symbols_decision_does_not_depend_on_the_other_symbols(world):
    """MC dropout draws masks per batch; the policy predicts each symbol's
    window alone (seeded), so adding a symbol changes nothing, and the same
    request gives the same answer twice."""
    policy = world.policies["mc_dropout"]
    window = _window(world.bars, n=200)
    both = policy.decide(window).set_index("symbol")
    alone = policy.decide(_window(window, symbols=["SYN001"])).set_index("symbol")
    pd.testing.assert_series_equal(both.loc["SYN001"], alone.loc["SYN001"])
    pd.testing.assert_frame_equal(policy.decide(window).set_index("symbol"), both)
    assert both.loc["SYN001", "direction_std"] > 0  # MC dropout really sampled


def test_served_prediction_is_the_pipelines_prediction_with_mc_dropout(world):
    """The serving path (feature_block + predict_windows, no frames) gives the
    numbers TrendModel.predict gives on the feature table's row for the same
    bars, bit for bit, MC dropout included (same scaling, passes and seed)."""
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.labels import LabelSpec

    policy = world.policies["mc_dropout"]
    window = _window(world.bars, n=200, symbols=["SYN001"])
    served = policy.decide(window).iloc[0]
    table, _ = build_feature_table(window, LabelSpec(**FEATURES_PARAMS["label"]),
                                   warmup_bars=FEATURES_PARAMS["warmup_bars"])
    last = np.zeros(len(table), dtype=bool)
    last[-1] = True
    expected = policy.trend_model.predict(table, rows=last).iloc[0]
    assert expected["timestamp"] == served["timestamp"]
    for name in PREDICTIONS:
        assert served[name] == expected[name], name
    assert served["direction_std"] > 0  # MC dropout really sampled


# ---------------------------------------------------------------- accounts and the breaker
def test_drawdown_breaker_goes_flat_then_releases_after_the_cooldown(world):
    """Hand-computed with drawdown_limit 0.25, cooldown 5, no reset rule:
    equity 0.7 against a peak of 1.0 trips (0.7 <= 0.75); a tripped breaker
    stays on for bars 1..4 after the trip and releases at the 5th, re-basing
    the peak to the equity at release."""
    policy = world.policies["limits"]
    window = _window(world.bars, n=MIN_BARS, symbols=["SYN001"])
    free = policy.decide(window).iloc[0]
    assert free["target"] != 0
    account = {"position": 0.5, "cash_fraction": 0.5, "drawdown": 0.3, "equity": 0.7,
               "peak_equity": 1.0}
    tripped = policy.decide(window, {"SYN001": account}).iloc[0]
    assert tripped["target"] == 0.0
    assert tripped["risk_binding"] == "drawdown_breaker"
    assert (tripped["risk_breaker_active"], tripped["risk_bars_since_trip"]) == (True, 0)
    assert tripped["risk_peak_equity"] == 1.0
    held = policy.decide(window, {"SYN001": {**account, "breaker_active": True,
                                             "bars_since_trip": 3}}).iloc[0]
    assert (held["target"], held["risk_bars_since_trip"]) == (0.0, 4)
    released = policy.decide(window, {"SYN001": {**account, "breaker_active": True,
                                                 "bars_since_trip": 4}}).iloc[0]
    assert not released["risk_breaker_active"] and released["risk_peak_equity"] == 0.7
    assert released["requested_target"] == free["requested_target"] != 0.0
    assert released["target"] != 0.0
    assert "drawdown_breaker" not in released["risk_binding"]


@pytest.mark.parametrize(("account", "message"), [
    ({"SYN009": {}}, r"account given for symbol\(s\) \['SYN009'\]"),
    ({"SYN000": {"position": 0.5}}, "position \\+ cash_fraction must be 1"),
    ({"SYN000": {"drawdown": 1.0}}, r"drawdown must be in \[0, 1\)"),
    ({"SYN000": {"equity": 0.0}}, "equity must be > 0"),
    ({"SYN000": {"bars_since_trip": 2}}, "0 unless breaker_active"),
    ({"SYN000": {"cash": 1.0}}, r"unknown account field\(s\) \['cash'\]"),
])
def test_bad_accounts_are_refused(world, account, message):
    with pytest.raises(ValueError, match=message):
        world.policies["limits"].decide(_window(world.bars, n=MIN_BARS), account)


def test_account_param_is_a_json_object_string():
    from tradingrl.registry.pyfunc import parse_account_param

    assert parse_account_param(None) is None
    assert parse_account_param({"account": ""}) is None
    assert parse_account_param({"account": '{"A": {"position": 0.5, "cash_fraction": 0.5}}'}) \
        == {"A": {"position": 0.5, "cash_fraction": 0.5}}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_account_param({"account": '{"A": '})
    with pytest.raises(TypeError, match="JSON object of symbol -> account"):
        parse_account_param({"account": "[1, 2]"})
    with pytest.raises(ValueError, match=r"unknown params \['accounts'\]"):
        parse_account_param({"accounts": "{}"})
    # numpy scalars are numbers too (a caller's frame row)
    state = AccountState(position=np.float32(0.25), cash_fraction=np.float64(0.75),
                         bars_since_trip=np.int64(0))
    assert state.position == 0.25
    with pytest.raises(TypeError, match="position must be a number"):
        AccountState(position="0.25")


# ---------------------------------------------------------------- input contract
def _corrupt(bars, how):
    frame = _window(bars, n=MIN_BARS).copy()
    i = 40  # a row of SYN000
    if how == "nan_close":
        frame.loc[i, "close"] = np.nan
    elif how == "negative_volume":
        frame.loc[i, "volume"] = -5.0
    elif how == "high_below_close":
        frame.loc[i, "high"] = frame.loc[i, "close"] * 0.9
    elif how == "duplicate":
        frame.loc[i, "timestamp"] = frame.loc[i - 1, "timestamp"]
    elif how == "unsorted":
        frame.loc[[i - 1, i]] = frame.loc[[i, i - 1]].to_numpy()
    return frame


@pytest.mark.parametrize(("how", "message", "contract_reason"), [
    ("nan_close", r"row 40 \(SYN000\): close nan is missing", "close:missing"),
    ("negative_volume", r"row 40 \(SYN000\): volume must be >= 0", "volume:negative"),
    ("high_below_close", r"row 40 \(SYN000\): high_below_open_or_close",
     "high_below_open_or_close"),
    ("duplicate", r"row 40 \(SYN000\): duplicate_timestamp", "duplicate_timestamp"),
    ("unsorted", r"row 40 \(SYN000\): timestamp_not_increasing", "timestamp_not_increasing"),
])
def test_rows_that_break_the_data_contract_are_refused(world, how, message, contract_reason):
    """Each broken row is refused with the data contract's own reason name,
    and the pipeline's contract (pandera) flags the same row."""
    from tradingrl.data.contract import row_failures

    frame = _corrupt(world.bars, how)
    with pytest.raises(ValueError, match=message):
        world.policies["limits"].decide(frame)
    assert contract_reason in row_failures(frame)[40]


def test_missing_columns_bad_times_and_undefined_last_features_are_refused(world):
    policy = world.policies["limits"]
    window = _window(world.bars, n=MIN_BARS)
    with pytest.raises(ValueError, match="missing required columns: volume"):
        policy.decide(window.drop(columns="volume"))
    as_text = window.assign(timestamp=window["timestamp"].map(pd.Timestamp.isoformat))
    as_text.loc[7, "timestamp"] = "2011-13-45"
    with pytest.raises(ValueError, match="row 7: timestamp '2011-13-45' is missing or not an "
                                         "ISO-8601 time"):
        policy.decide(as_text)
    with pytest.raises(TypeError, match="pandas DataFrame"):
        policy.decide(window.to_numpy())
    # After 20 bars without volume the volume ratios are 0/0: the pipeline
    # drops such rows, so there is nothing to decide at that bar.
    silent = window.copy()
    silent.loc[silent.index[silent["symbol"] == "SYN001"][-20:], "volume"] = 0.0
    with pytest.raises(ValueError, match="SYN001: the last bar .* has undefined features"):
        policy.decide(silent)


def test_string_naive_and_aware_timestamps_give_the_same_decision(world):
    policy = world.policies["limits"]
    window = _window(world.bars, n=MIN_BARS)
    reference = policy.decide(window)
    iso = window.assign(timestamp=[t.isoformat() for t in window["timestamp"]])
    naive = window.assign(timestamp=window["timestamp"].dt.tz_localize(None))
    new_york = window.assign(timestamp=window["timestamp"].dt.tz_convert("America/New_York"))
    for variant in (iso, naive, new_york):
        pd.testing.assert_frame_equal(policy.decide(variant), reference)
    # Symbols interleaved by time (a CSV's natural order) are fine too.
    interleaved = window.sort_values(["timestamp", "symbol"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(policy.decide(interleaved), reference)


# ---------------------------------------------------------------- the bundle
def test_bundle_refuses_changed_files_and_changed_decision_code(world, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(world.bundles["limits"], bundle)
    manifest = json.loads((bundle / "policy.json").read_text())
    manifest["code_sha256"]["features/technical.py"] = "0" * 64
    (bundle / "policy.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"decision code differs .*features/technical.py"):
        TradingPolicy.load(bundle)
    relaxed = TradingPolicy.load(bundle, check_code=False)
    window = _window(world.bars, n=MIN_BARS)
    pd.testing.assert_frame_equal(relaxed.decide(window), world.policies["limits"].decide(window))
    scaler = json.loads((bundle / "agent" / "scaler.json").read_text())
    scaler["mean"][0] += 1e-3
    (bundle / "agent" / "scaler.json").write_text(json.dumps(scaler))
    with pytest.raises(ValueError, match=r"changed or missing since it was built: "
                                         r"\['agent/scaler.json'\]"):
        TradingPolicy.load(bundle, check_code=False)


def test_bundle_refuses_inconsistent_pieces(world, tmp_path):
    with pytest.raises(ValueError, match="exists and is not empty"):
        build_policy_bundle(world.cnn_dir, world.agent_dirs["limits"], FEATURES_PARAMS,
                            world.bundles["limits"])
    again = shutil.copytree(world.bundles["limits"], tmp_path / "again")
    (again / "stale.txt").write_text("from an older build")
    build_policy_bundle(world.cnn_dir, world.agent_dirs["limits"], FEATURES_PARAMS, again,
                        overwrite=True)
    assert not (again / "stale.txt").exists()
    assert read_manifest(again) == read_manifest(world.bundles["limits"])
    with pytest.raises(ValueError, match="warmup_bars must be an int >= 100"):
        build_policy_bundle(world.cnn_dir, world.agent_dirs["limits"],
                            {**FEATURES_PARAMS, "warmup_bars": 50}, tmp_path / "w")
    for change, message in (({"env_kind": "portfolio"}, "must list its symbols"),
                            ({"env_kind": "basket"}, "env_kind must be one of"),
                            ({"observation_size": 70}, "observation_size 70 != window 5 x 12"),
                            ({"features": AGENT_FEATURES[::-1]}, "disagree on the features")):
        agent_dir = tmp_path / f"agent_{len(list(tmp_path.iterdir()))}"
        shutil.copytree(world.agent_dirs["limits"], agent_dir)
        config = json.loads((agent_dir / "env_config.json").read_text())
        (agent_dir / "env_config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ValueError, match=message):
            build_policy_bundle(world.cnn_dir, agent_dir, FEATURES_PARAMS, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the MLflow pyfunc
@pytest.fixture(scope="module")
def registered(world, tmp_path_factory):
    """trading-policy v1 in a throwaway SQLite store (the global tracking URI
    is restored afterwards)."""
    import mlflow

    from tradingrl.registry.pyfunc import log_trading_policy

    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("policy", artifact_location=(root / "art").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        with mlflow.start_run():
            version = log_trading_policy(
                world.bundles["limits"], _window(world.bars, n=MIN_BARS, symbols=["SYN000"]),
                tags={"git_commit": "abc123"})
        yield SimpleNamespace(tracking_uri=uri, version=version,
                              model_uri=f"models:/trading-policy/{version}")
    finally:
        mlflow.set_tracking_uri(previous)


def test_pyfunc_answers_what_the_policy_answers(world, registered):
    import mlflow

    from tradingrl.registry.pyfunc import serving_input, serving_output

    assert registered.version == "1"
    version = mlflow.MlflowClient().get_model_version("trading-policy", "1")
    assert version.tags["min_bars"] == "151" and version.tags["git_commit"] == "abc123"
    assert version.aliases == []  # promotion sets aliases, not logging
    model = mlflow.pyfunc.load_model(registered.model_uri)
    assert [p.name for p in model.metadata.get_params_schema().params] == ["account"]
    policy = world.policies["limits"]
    window = serving_input(_window(world.bars, n=200))
    assert window["timestamp"].map(type).eq(str).all()  # as JSON serving sends them
    pd.testing.assert_frame_equal(model.predict(window), serving_output(policy.decide(window)))
    # 30% below the risk layer's peak: the breaker trips (limit 25%).
    account = {"SYN001": {"position": -0.4, "cash_fraction": 1.4, "unrealised_pnl": 0.01,
                          "drawdown": 0.3, "equity": 0.7, "peak_equity": 1.0}}
    served = model.predict(window, params={"account": json.dumps(account)})
    pd.testing.assert_frame_equal(served, serving_output(policy.decide(window, account)))
    assert served["target"].tolist()[1] == 0.0 != served["requested_target"].tolist()[1]
    assert served["risk_binding"].tolist()[1] == "drawdown_breaker"
    with pytest.raises(ValueError, match="SYN000: 150 bars, the policy needs at least 151"):
        model.predict(serving_input(_window(world.bars, n=150)))


def test_pyfunc_model_config_sets_threads_and_checks_values(registered):
    import mlflow
    import torch

    threads = torch.get_num_threads()
    try:
        mlflow.pyfunc.load_model(registered.model_uri, model_config={"torch_threads": 1})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="torch_threads must be an int >= 1, got 0"):
        mlflow.pyfunc.load_model(registered.model_uri, model_config={"torch_threads": 0})
    with pytest.raises(TypeError, match="check_code must be a bool"):
        mlflow.pyfunc.load_model(registered.model_uri, model_config={"check_code": "no"})


def test_json_dataframe_split_request_is_answered_like_the_server(world, registered):
    """The scoring server's own parsing of a ``dataframe_split`` body with
    params (mlflow.models.validate_serving_input runs it), string times."""
    from mlflow.models import validate_serving_input

    from tradingrl.registry.pyfunc import serving_input, serving_output

    window = serving_input(_window(world.bars, n=MIN_BARS))
    account = {"SYN000": {"position": 0.3, "cash_fraction": 0.7}}
    body = json.dumps({
        "dataframe_split": window.to_dict(orient="split", index=False),
        "params": {"account": json.dumps(account)}})
    answer = validate_serving_input(registered.model_uri, body)
    expected = serving_output(world.policies["limits"].decide(window, account))
    pd.testing.assert_frame_equal(pd.DataFrame(answer), expected)


@pytest.mark.slow
def test_mlflow_models_serve_answers_over_http(world, registered, tmp_path):
    """``mlflow models serve`` (local env, a fresh process running the model's
    bundled tradingrl code) answers a JSON request as the policy does."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from tradingrl.registry.pyfunc import serving_input, serving_output

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    # As from an activated venv: the server execs uvicorn from PATH. The
    # scoring server's request timeout (60 s by default) is raised: beside the
    # pipeline tests on 2 cores the first request, which imports torch and SB3
    # to load the model, once took longer and came back 504.
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri,
           "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "300",
           "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(mlflow_cli), "models", "serve", "-m", registered.model_uri, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("server did not start: "
                                         + (tmp_path / "serve.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        window = serving_input(_window(world.bars, n=MIN_BARS))
        body = json.dumps({"dataframe_split": window.to_dict(orient="split", index=False),
                           "params": {"account": json.dumps({"SYN001": {"position": 0.25,
                                                                       "cash_fraction": 0.75}})}})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.loads(response.read())["predictions"]
        expected = serving_output(world.policies["limits"].decide(
            window, {"SYN001": {"position": 0.25, "cash_fraction": 0.75}}))
        pd.testing.assert_frame_equal(pd.DataFrame(answer), expected)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
