"""``drift_flow`` under a temporary Prefect server (``prefect_test_harness``)
with a small champion in a throwaway SQLite MLflow store.

The champion: a synthetic market (8 symbols, params.yaml's generator, seed 7),
the features stage's table, an untrained seeded CNN+LSTM and PPO agent saved
in the pipeline's layouts (tests/unit/test_trading_policy.py's helpers),
bundled with the reference window promote builds (its last 252 sessions),
registered as ``trading-policy`` and made ``champion``, its ``oos_sharpe`` tag
the Sharpe ratio its decisions earned over all 1330 bars of its data it can
decide on (a stand-in for the walk-forward evaluation promote records).

The checks use the repository's params.yaml ``monitoring`` thresholds
unchanged. Another seed of the same generator must not call for retraining;
the same seed with three times the volatility and a strong drift must, for
the features; with a training deployment served, retraining starts it; with
none and trigger "subflow", training_flow runs once as a subflow.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from prefect import flow

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))  # the bundle helpers of test_trading_policy

from test_trading_policy import (
    AGENT_PARAMS,
    FEATURES_PARAMS,
    RISK_LIMITS,
    _env_kwargs,
    _markets,
    _save_trend_model,
    _write_agent_dir,
)

# Bars per symbol of every synthetic market here: the champion's own data and
# each newest window's source (the window is its last 252 sessions plus 170
# bars of history: 120 warm-up, 19 for the trend window, 31 risk closes).
N_BARS = 1500
SAME_REGIME = {"seed": 11}
SHIFTED_REGIME = {"seed": 11, "annual_vol": 0.75, "market_drift": 0.6, "trend_drift": 1.0}
VOLATILITY_FEATURES = {"rv_5", "rv_10", "rv_20", "rv_60", "parkinson_vol_20",
                       "garman_klass_vol_20", "atr_14", "range_hl", "kc_wband", "dc_wband"}


@flow(name="training")
def stand_in_training(repo_root: str = "") -> str:
    """Stands in for training_flow as a served deployment (nothing runs it)."""
    return repo_root


def _repo_root(tmp: Path) -> Path:
    """A checkout's files drift_flow reads: params.yaml (the synthetic source
    made small), pipelines.yaml and the flow files it names."""
    root = tmp / "repo"
    (root / "flows").mkdir(parents=True)
    for name in ("training.py", "monitoring.py"):
        shutil.copy2(REPO / "flows" / name, root / "flows" / name)
    shutil.copy2(REPO / "pipelines.yaml", root / "pipelines.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["source"] = "synthetic"
    params["ingest"]["synthetic"] = {"n_symbols": 8, "n_bars": N_BARS, "start": "2010-01-04",
                                     "seed": 7}
    params["features"] = {**params["features"], **FEATURES_PARAMS}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _champion_bundle(tmp: Path, params: dict) -> SimpleNamespace:
    """Models, bundle with its reference window, and the Sharpe ratio its
    decisions earned over its data (what promote would record as oos_sharpe)."""
    import torch
    from stable_baselines3 import PPO

    from tradingrl.agents.data import build_agent_table, fit_agent_scaler
    from tradingrl.agents.training import build_env
    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.labels import LabelSpec
    from tradingrl.models.predict import TrendModel
    from tradingrl.monitoring import live_performance, read_env_config, replay_decisions
    from tradingrl.monitoring.decisions import backtest_env, reference_start
    from tradingrl.monitoring.reference import reference_table
    from tradingrl.registry.bundle import build_policy_bundle
    from tradingrl.registry.policy import TradingPolicy

    bars = generate_market(SyntheticMarketConfig(**params["ingest"]["synthetic"]))
    table, _ = build_feature_table(bars, LabelSpec(**FEATURES_PARAMS["label"]),
                                   warmup_bars=FEATURES_PARAMS["warmup_bars"])
    cnn_dir = _save_trend_model(tmp / "cnn_lstm", table, dropout=0.0, mc_samples=1)
    predictions = TrendModel.load(cnn_dir).predict(table)
    agent_table, _ = build_agent_table(table, bars, predictions, AGENT_PARAMS["features"],
                                       AGENT_PARAMS["prediction_columns"])
    stamps = np.sort(agent_table["timestamp"].unique())
    scaler = fit_agent_scaler(agent_table, AGENT_PARAMS["features"], stamps[0],
                              stamps[len(stamps) // 2])
    markets = _markets(table, bars, predictions, scaler)
    env = build_env(markets[min(markets)], _env_kwargs(RISK_LIMITS))
    agent = PPO("MlpPolicy", env, seed=0, n_steps=64, batch_size=32, device="cpu",
                policy_kwargs={"net_arch": [16, 16]})
    with torch.no_grad():  # untrained heads act near 0; spread the actions over [-1, 1]
        agent.policy.action_net.weight.mul_(300.0)
    agent.save(tmp / "agent.zip")
    agent_dir = _write_agent_dir(tmp / "agent", tmp / "agent.zip", scaler,
                                 int(env.observation_space.shape[0]), RISK_LIMITS)
    pieces = (cnn_dir, agent_dir, FEATURES_PARAMS, tmp / "bundle")
    bundle = build_policy_bundle(*pieces)
    reference = reference_table(bundle, bars, table,
                                int(params["monitoring"]["reference_sessions"]))
    bundle = build_policy_bundle(*pieces, overwrite=True, reference=reference)
    policy = TradingPolicy.load(bundle)
    replayed = replay_decisions(policy, read_env_config(bundle), bars, table,
                                start=reference_start(table, policy.manifest, N_BARS))
    earned = live_performance(replayed.rows, replayed.markets, env=backtest_env(replayed.env),
                              oos_sharpe=None)
    return SimpleNamespace(bundle=bundle, bars=bars, reference=reference,
                           oos_sharpe=earned.live_sharpe)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The Prefect harness, the MLflow store with the champion, the repo root."""
    import mlflow
    import torch
    from prefect.testing.utilities import prefect_test_harness

    from tradingrl.registry.pyfunc import log_trading_policy

    tmp = tmp_path_factory.mktemp("drift_flow")
    root = _repo_root(tmp)
    params = yaml.safe_load((root / "params.yaml").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    champion = _champion_bundle(tmp, params)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.create_experiment("promote", artifact_location=(tmp / "art").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        first = min(champion.bars["symbol"].unique())
        example = champion.bars[champion.bars["symbol"] == first].tail(200)
        with mlflow.start_run(run_name="promote"):
            version = log_trading_policy(champion.bundle, example, name="trading-policy",
                                         tags={"oos_sharpe": str(champion.oos_sharpe)})
        mlflow.MlflowClient().set_registered_model_alias("trading-policy", "champion", version)
        with prefect_test_harness(server_startup_timeout=120):
            yield SimpleNamespace(root=root, params=params, champion=champion, version=version,
                                  tracking_uri=uri)
    mlflow.set_tracking_uri(previous)
    torch.set_num_threads(threads)


def _mlflow_run(uri: str, run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(uri).get_run(run_id)


def test_no_champion_is_recorded_and_nothing_runs(world, monkeypatch, tmp_path):
    from flows.monitoring import drift_flow

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    record = drift_flow(repo_root=str(world.root), source_overrides=SHIFTED_REGIME)
    assert record["decision"] == "no_champion" and record["retrain_due"] is False
    assert record["reasons"] == ["no champion: nothing to compare"]
    assert record["trigger"] == {"mode": "auto", "action": "none"}
    saved = json.loads((Path(record["report_dir"]) / "decision.json").read_text())
    assert saved["decision"] == "no_champion"
    assert _mlflow_run(uri, record["mlflow_run_id"]).data.tags["drift.decision"] == "no_champion"

    # A registered model whose every version was refused: only a challenger.
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    client.create_registered_model("trading-policy")
    version = client.create_model_version("trading-policy", str(tmp_path), run_id=None)
    client.set_registered_model_alias("trading-policy", "challenger", version.version)
    record = drift_flow(repo_root=str(world.root), source_overrides=SHIFTED_REGIME)
    assert record["decision"] == "no_champion" and record["retrain_due"] is False


def test_the_bundle_carries_its_reference_window(world):
    from tradingrl.registry.bundle import read_manifest

    manifest = read_manifest(world.champion.bundle)
    reference = manifest["reference"]
    assert reference["file"] == "reference.parquet" and reference["symbols"] == 8
    assert reference["sessions"] == world.params["monitoring"]["reference_sessions"] == 252
    assert reference["rows"] == 8 * 252 == len(world.champion.reference)
    assert "reference.parquet" in manifest["files_sha256"]
    saved = pd.read_parquet(world.champion.bundle / "reference.parquet")
    assert {"p_up", "p_down", "confidence", "expected_return", "target", "rsi_14"} <= set(saved)
    # Every decision but each symbol's last has a target (the last has no fill bar yet).
    assert saved["target"].isna().sum() == 8
    assert saved["timestamp"].max() == world.champion.bars["timestamp"].max()


def test_another_seed_of_the_reference_regime_does_not_retrain(world):
    from flows.monitoring import drift_flow

    record = drift_flow(repo_root=str(world.root), source_overrides=SAME_REGIME, trigger="none")
    assert record["decision"] == "no_retrain" and record["retrain_due"] is False
    assert record["fired"] == []
    assert [c["name"] for c in record["checks"]] == [
        "feature_drift", "prediction_drift", "performance_decay"]
    assert all(c["checked"] for c in record["checks"])  # every rule had what it needs
    assert len(record["reasons"]) == 3 and record["reasons"][0].startswith("feature drift:")
    feature = record["feature_drift"]
    assert feature["n_columns"] == 85 and feature["rows_current"] == 8 * 252
    assert feature["share"] < world.params["monitoring"]["drift_share_threshold"]
    assert record["performance"]["matured_bars"] == 251
    assert record["champion"]["version"] == world.version
    assert record["window"]["sessions"] == record["window"]["window_bars"] == 252
    assert record["trigger"] == {"mode": "none", "action": "none"}

    out = Path(record["report_dir"])
    assert out.parent == world.root / "reports" / "drift"
    assert json.loads((out / "decision.json").read_text())["decision"] == "no_retrain"
    assert (out / "drift.html").stat().st_size > 100_000
    assert (out / "prediction_drift.html").is_file()
    assert not (world.root / "data").exists()  # nothing written where DVC keeps its data
    run = _mlflow_run(world.tracking_uri, record["mlflow_run_id"])
    assert run.info.run_name == "drift_check"
    assert run.data.tags["drift.decision"] == "no_retrain"
    assert run.data.metrics["feature_drift.share"] == pytest.approx(feature["share"])


def test_a_shifted_regime_calls_for_retraining_for_its_features(world):
    from mlflow import MlflowClient

    from flows.monitoring import drift_flow

    record = drift_flow(repo_root=str(world.root), source_overrides=SHIFTED_REGIME,
                        trigger="none")
    assert record["decision"] == "retrain" and record["retrain_due"] is True
    assert "feature_drift" in record["fired"]
    feature = record["feature_drift"]
    assert feature["share"] >= world.params["monitoring"]["drift_share_threshold"]
    # The right reason: the volatility features moved (three times the volatility).
    assert VOLATILITY_FEATURES <= set(feature["drifted_columns"])
    assert record["reasons"][0].startswith(f"feature drift: {feature['count']} of 85 columns")
    assert record["trigger"] == {"mode": "none", "action": "none"}  # a dry run starts nothing
    run = _mlflow_run(world.tracking_uri, record["mlflow_run_id"])
    assert run.data.tags["drift.decision"] == "retrain"
    assert "feature_drift" in run.data.tags["drift.fired"]
    logged = MlflowClient(world.tracking_uri).list_artifacts(run.info.run_id, "drift")
    assert {"drift/drift.html", "drift/decision.json"} <= {a.path for a in logged}


def test_retraining_starts_the_served_training_deployment(world):
    from prefect.client.orchestration import get_client

    from flows.monitoring import drift_flow, training_deployment_name

    name = training_deployment_name(world.root)
    assert name == "training/weekly-retraining"  # pipelines.yaml's training deployment
    deployment_id = stand_in_training.to_deployment(name=name.split("/")[1]).apply()
    try:
        record = drift_flow(repo_root=str(world.root), source_overrides=SHIFTED_REGIME)
        started = record["trigger"]
        assert started["mode"] == "auto" and started["action"] == "deployment"
        assert started["deployment"] == name

        async def flow_run(run_id: str):
            async with get_client() as client:
                return await client.read_flow_run(run_id)

        run = asyncio.run(flow_run(started["flow_run_id"]))
        assert run.deployment_id == deployment_id
        assert "drift-triggered" in run.tags
        saved = json.loads((Path(record["report_dir"]) / "decision.json").read_text())
        assert saved["trigger"]["flow_run_id"] == started["flow_run_id"]
        tags = _mlflow_run(world.tracking_uri, record["mlflow_run_id"]).data.tags
        assert tags["drift.training_flow_run_id"] == started["flow_run_id"]
    finally:
        async def delete():
            async with get_client() as client:
                await client.delete_deployment(deployment_id)

        asyncio.run(delete())


def test_without_a_deployment_training_runs_once_as_a_subflow(world, monkeypatch):
    from flows import monitoring

    calls = []

    @flow(name="training")
    def training_stand_in(repo_root: str = "") -> list:
        calls.append(repo_root)
        return []

    monkeypatch.setattr(monitoring, "training_flow", training_stand_in)
    record = monitoring.drift_flow(repo_root=str(world.root), source_overrides=SHIFTED_REGIME,
                                   trigger="subflow")
    assert calls == [str(world.root)]
    assert record["trigger"]["action"] == "subflow" and record["trigger"]["state"] == "Completed"
