"""beats_champion like for like: the champion's real bundle replayed after its
training end with the challenger's costs and risk settings, both Sharpe
ratios on exactly the same bars.

The champion is a small real bundle (test_trading_policy's helpers: an
untrained seeded CNN+LSTM and a PPO agent whose actions span [-1, 1]) built
from the first 60% of a synthetic market, so its training end is there; the
challenger's out-of-fold book is a curves.parquet-shaped frame over the
later bars, in two folds, whose returns the tests choose.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tradingrl.registry.comparison import ChampionComparison, training_end
from tradingrl.registry.gate import NOT_COMPARABLE, GateThresholds, champion_check, run_gate

THRESHOLDS = GateThresholds(min_dsr=0.95, min_sharpe_margin=0.1, max_drawdown=0.25,
                            min_comparable_bars=60)
EVALUATION = {
    "policy": {"overall": {"sharpe": 1.4, "max_drawdown": 0.12},
               "dsr": {"dsr": 0.97, "n_trials": 3}},
    "baselines": {"buy_and_hold": {"overall": {"sharpe": 0.8}}},
    "best_baseline": "buy_and_hold",
    "folds": [{"test": {"start": "2015-01-01", "end": "2016-01-01"}}],
}


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    import torch
    from stable_baselines3 import PPO
    from test_trading_policy import (
        AGENT_FEATURES,
        FEATURES_PARAMS,
        PREDICTIONS,
        RISK_LIMITS,
        _env_kwargs,
        _markets,
        _save_trend_model,
        _write_agent_dir,
    )

    from tradingrl.agents.data import build_agent_table, fit_agent_scaler
    from tradingrl.agents.training import build_env
    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.labels import LabelSpec
    from tradingrl.models.predict import TrendModel
    from tradingrl.monitoring.reference import build_reference_bundle

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("comparison")
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=500, seed=11))
    table, _ = build_feature_table(bars, LabelSpec(**FEATURES_PARAMS["label"]),
                                   warmup_bars=FEATURES_PARAMS["warmup_bars"])
    sessions = pd.DatetimeIndex(np.sort(table["timestamp"].unique()))
    cut = sessions[int(0.4 * len(sessions))]
    cnn_dir = _save_trend_model(root / "cnn_lstm", table, dropout=0.0, mc_samples=1)
    predictions = TrendModel.load(cnn_dir).predict(table)
    agent_table, _ = build_agent_table(table, bars, predictions, AGENT_FEATURES, PREDICTIONS)
    stamps = np.sort(agent_table["timestamp"].unique())
    scaler = fit_agent_scaler(agent_table, AGENT_FEATURES, stamps[0], stamps[len(stamps) // 2])
    env = build_env(_markets(table, bars, predictions, scaler)["SYN000"],
                    _env_kwargs(RISK_LIMITS))
    agent = PPO("MlpPolicy", env, seed=0, n_steps=64, batch_size=32, device="cpu",
                policy_kwargs={"net_arch": [16, 16]})
    with torch.no_grad():  # untrained heads act near 0; spread the actions over [-1, 1]
        agent.policy.action_net.weight.mul_(300.0)
    agent.save(root / "agent.zip")
    agent_dir = _write_agent_dir(root / "agent", root / "agent.zip", scaler,
                                 int(env.observation_space.shape[0]), RISK_LIMITS)
    # The champion learnt from the bars up to the cut only (labels end 5 bars later).
    early = table[table["timestamp"] <= cut]
    bundle = build_reference_bundle(cnn_dir, agent_dir, FEATURES_PARAMS, root / "champion",
                                    bars=bars[bars["timestamp"] <= early["t1"].max()],
                                    features=early, sessions=20)
    yield SimpleNamespace(root=root, bars=bars, table=table, bundle=bundle, cut=cut,
                          env_config=json.loads((agent_dir / "env_config.json").read_text()),
                          symbols=sorted(bars["symbol"].unique()))
    torch.set_num_threads(threads)


def _curves(fills: pd.DatetimeIndex, log_returns: np.ndarray) -> pd.DataFrame:
    """A curves.parquet-shaped policy series over ``fills`` in two folds (and a
    baseline row set that must be ignored)."""
    half = len(fills) // 2
    policy = pd.DataFrame({"series": "policy", "fold": np.where(np.arange(len(fills)) < half, 1, 2),
                           "timestamp": fills, "log_return": log_returns})
    other = policy.assign(series="buy_and_hold", log_return=0.5)
    return pd.concat([policy, other], ignore_index=True)


def _fills_after(champion, end) -> pd.DatetimeIndex:
    sessions = pd.DatetimeIndex(np.sort(champion.table["timestamp"].unique()))
    return sessions[sessions > end]


def _compare(champion, curves, *, env_config=None, min_bars=60, bundle=None):
    from tradingrl.monitoring.reference import champion_comparison

    return champion_comparison(bundle or champion.bundle, "1",
                               challenger_env_config=env_config or champion.env_config,
                               curves=curves, bars=champion.bars, features=champion.table,
                               symbols=champion.symbols, min_bars=min_bars, bars_per_year=252)


def _returns_with_sharpe(n: int, sharpe: float, seed: int = 0) -> np.ndarray:
    """Log returns whose annualised Sharpe (of the simple returns) is about ``sharpe``."""
    noise = np.random.default_rng(seed).standard_normal(n)
    noise = (noise - noise.mean()) / noise.std(ddof=1)
    return np.log1p(0.01 * noise + 0.01 * sharpe / np.sqrt(252))


@pytest.fixture(scope="module")
def replayed(champion):
    """The champion's comparison against a challenger book of zero drift."""
    from tradingrl.registry.bundle import read_manifest

    end, _ = training_end(read_manifest(champion.bundle, check_code=False))
    fills = _fills_after(champion, end)
    found = _compare(champion, _curves(fills, _returns_with_sharpe(len(fills), 0.0)))
    return SimpleNamespace(end=end, fills=fills, comparison=found)


def test_the_bundle_records_its_training_end_with_label_ends(champion):
    from tradingrl.registry.bundle import read_manifest

    manifest = read_manifest(champion.bundle, check_code=False)
    early = champion.table[champion.table["timestamp"] <= champion.cut]
    end, source = training_end(manifest)
    assert source == "policy.json training.end"
    assert end == pd.Timestamp(early["t1"].max()) > champion.cut  # labels looked 5 bars on
    assert manifest["training"]["sources"]["data_end"] == end.isoformat()


def test_the_champion_is_replayed_on_the_same_bars_after_its_training_end(champion, replayed):
    found = replayed.comparison
    assert found.comparable, found.reason
    assert found.n_bars == len(replayed.fills)  # every later bar, both folds
    assert pd.Timestamp(found.first) == replayed.fills[0] > replayed.end
    assert pd.Timestamp(found.last) == replayed.fills[-1]
    assert found.champion_sharpe is not None and found.challenger_sharpe is not None
    assert found.symbols == champion.symbols
    assert found.replay["costs"] == champion.env_config["costs"]
    assert found.replay["risk"] == champion.env_config["risk"]
    assert found.replay["code_differs"] == []


def test_a_champion_worse_on_those_bars_is_beaten_and_a_better_one_is_not(champion, replayed):
    theirs = replayed.comparison.champion_sharpe
    n = len(replayed.fills)
    better = _compare(champion, _curves(replayed.fills, _returns_with_sharpe(n, theirs + 1.0)))
    worse = _compare(champion, _curves(replayed.fills, _returns_with_sharpe(n, theirs - 1.0)))
    assert better.champion_sharpe == pytest.approx(theirs)  # the same replay, whatever ours
    assert better.challenger_sharpe > theirs > worse.challenger_sharpe
    check = champion_check(better)
    assert check.passed and check.status == "passed"
    assert f"on the same {n} bars" in check.detail
    check = champion_check(worse)
    assert not check.passed and check.status == "failed"
    passed, checks = run_gate(EVALUATION, THRESHOLDS, worse)
    assert not passed and [c.name for c in checks if not c.passed] == ["beats_champion"]


def test_the_champion_trades_with_the_challengers_costs(champion, replayed):
    costly = json.loads(json.dumps(champion.env_config))
    costly["costs"]["commission_bps"] = 200.0
    curves = _curves(replayed.fills, _returns_with_sharpe(len(replayed.fills), 0.0))
    found = _compare(champion, curves, env_config=costly)
    assert found.replay["costs"]["commission_bps"] == 200.0
    assert found.champion_sharpe < replayed.comparison.champion_sharpe


def test_bars_before_the_champions_training_end_are_not_compared(champion, replayed):
    sessions = pd.DatetimeIndex(np.sort(champion.table["timestamp"].unique()))
    earlier = sessions[(sessions > champion.cut - pd.Timedelta(days=60))]
    found = _compare(champion, _curves(earlier, _returns_with_sharpe(len(earlier), 0.0)))
    assert found.comparable and found.n_bars == len(replayed.fills)
    assert pd.Timestamp(found.first) > replayed.end


def test_too_few_bars_out_of_sample_for_both_are_not_comparable(champion, replayed):
    n = len(replayed.fills)
    found = _compare(champion, _curves(replayed.fills, _returns_with_sharpe(n, 5.0)),
                     min_bars=n + 1)
    assert not found.comparable and found.n_bars == n and found.min_bars == n + 1
    assert found.training_end == replayed.end.isoformat()
    assert f"{n} bars" in found.reason and replayed.end.isoformat() in found.reason
    passed, checks = run_gate(EVALUATION, THRESHOLDS, found)
    check = checks[-1]
    assert passed and check.name == "beats_champion"
    assert check.passed and check.status == NOT_COMPARABLE  # blocks nothing, beat nothing
    assert "not comparable" in check.detail and replayed.end.isoformat() in check.detail


def test_a_challenger_book_with_no_sharpe_ratio_fails(champion, replayed):
    flat = _compare(champion, _curves(replayed.fills, np.zeros(len(replayed.fills))))
    assert flat.comparable and flat.challenger_sharpe is None
    check = champion_check(flat)
    assert not check.passed and "undefined" in check.detail


@pytest.mark.parametrize(("ours", "theirs"), [(None, 0.5), (1.0, None), (float("nan"), 0.5),
                                              (1.0, float("nan")), (None, None)])
def test_missing_or_nan_figures_fail_never_pass(ours, theirs):
    found = ChampionComparison(version="4", comparable=True, reason="", n_bars=200, min_bars=126,
                               training_end="2020-01-01T00:00:00+00:00",
                               challenger_sharpe=ours, champion_sharpe=theirs)
    check = champion_check(found)
    assert not check.passed and check.status == "failed"


def test_no_champion_passes_as_before():
    check = champion_check(None)
    assert check.passed and check.status == "passed" and check.detail == "no champion yet"
