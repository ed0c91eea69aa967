"""The promotion gate: each check passes and fails where it should, and a
refusal lists exactly the failed checks' reasons."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from tradingrl.registry.gate import GateThresholds, decision_record, folds_key, run_gate

EVALUATION = {
    "policy": {"overall": {"sharpe": 1.4, "max_drawdown": 0.12},
               "dsr": {"dsr": 0.97, "n_trials": 3}},
    "baselines": {"buy_and_hold": {"overall": {"sharpe": 0.8}},
                  "flat": {"overall": {"sharpe": None}}},
    "best_baseline": "buy_and_hold",
    "folds": [{"test": {"start": "2015-01-01", "end": "2016-01-01"}},
              {"test": {"start": "2016-01-02", "end": "2017-01-01"}}],
}
THRESHOLDS = GateThresholds(min_dsr=0.95, min_sharpe_margin=0.1, max_drawdown=0.25)


def with_changes(**changes) -> dict:
    evaluation = copy.deepcopy(EVALUATION)
    for path, value in changes.items():
        node = evaluation
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return evaluation


def names_failed(evaluation, champion=None) -> list[str]:
    passed, checks = run_gate(evaluation, THRESHOLDS, champion)
    failed = [c.name for c in checks if not c.passed]
    assert passed == (not failed)
    return failed


def test_a_good_challenger_with_no_champion_passes():
    assert names_failed(EVALUATION) == []
    passed, checks = run_gate(EVALUATION, THRESHOLDS, None)
    record = decision_record(passed, checks, version="3")
    assert record["decision"] == "promoted" and record["version"] == "3"
    assert record["reasons"][0].startswith("every check passed")


@pytest.mark.parametrize(("changes", "failed"), [
    ({"policy__dsr__dsr": 0.949}, ["dsr"]),
    ({"policy__dsr": {"dsr": None, "undefined": "zero variance"}}, ["dsr"]),
    ({"policy__overall__sharpe": 0.89}, ["beats_baselines"]),   # 0.8 + 0.1 margin
    ({"policy__overall__sharpe": None}, ["beats_baselines"]),
    ({"policy__overall__max_drawdown": 0.2501}, ["max_drawdown"]),
    ({"policy__overall__max_drawdown": None}, ["max_drawdown"]),
])
def test_each_check_fails_on_its_own(changes, failed):
    assert names_failed(with_changes(**changes)) == failed


def test_margin_is_measured_against_the_best_baseline_exactly():
    assert names_failed(with_changes(policy__overall__sharpe=0.9)) == []


def test_champion_comparison_same_and_other_folds():
    key = folds_key(EVALUATION)
    better = {"version": "2", "sharpe": 1.5, "folds_key": key}
    assert names_failed(EVALUATION, better) == ["beats_champion"]
    equal = {"version": "2", "sharpe": 1.4, "folds_key": key}
    assert names_failed(EVALUATION, equal) == []
    passed, checks = run_gate(EVALUATION, THRESHOLDS, {**better, "folds_key": "other"})
    detail = next(c.detail for c in checks if c.name == "beats_champion")
    assert not passed and "not like for like" in detail


def test_refusal_reasons_list_every_failed_check():
    evaluation = with_changes(policy__dsr__dsr=0.5, policy__overall__max_drawdown=0.4)
    passed, checks = run_gate(evaluation, THRESHOLDS, None)
    record = decision_record(passed, checks)
    assert record["decision"] == "refused"
    assert len(record["reasons"]) == 2
    assert "deflated Sharpe ratio 0.500" in record["reasons"][0]
    assert "maximum drawdown 0.400" in record["reasons"][1]


def test_folds_key_changes_with_the_test_spans():
    moved = with_changes()
    moved["folds"][1]["test"]["end"] = "2017-02-01"
    assert folds_key(moved) != folds_key(EVALUATION)


@pytest.mark.parametrize("bad", [{"min_dsr": 1.5}, {"max_drawdown": 0.0},
                                 {"min_sharpe_margin": float("nan")}])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError):
        GateThresholds(**bad)


def test_thresholds_come_from_the_promote_section():
    section = {"experiment": "x", "gate": {"min_dsr": 0.9, "min_sharpe_margin": 0.2,
                                           "max_drawdown": 0.3}}
    assert GateThresholds.from_params(section) == GateThresholds(0.9, 0.2, 0.3)


# ---------------------------------------------------------------- the champion in the registry
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite MLflow store (tracking and registry), shared: each test
    registers its own model name (creating a store takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"


def _version(uri, name, tags, alias):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, "file:///nowhere", run_id=None, tags=tags)
    client.set_registered_model_alias(name, alias, version.version)
    return version


def test_no_registered_model_or_no_champion_alias_is_no_champion(store):
    from tradingrl.registry.champion import CHALLENGER, POLICY_MODEL, load_champion

    assert load_champion(store) is None  # RESOURCE_DOES_NOT_EXIST: nothing registered
    _version(store, POLICY_MODEL, {"oos_sharpe": "1.0"}, CHALLENGER)  # refused: a challenger
    assert load_champion(store) is None


def test_the_champion_carries_its_gate_record(store):
    from tradingrl.registry.champion import CHALLENGER, CHAMPION, load_champion

    name = "policy-gate-record"
    _version(store, name, {"oos_sharpe": "0.5"}, CHAMPION)
    _version(store, name, {"oos_sharpe": "1.25", "folds_key": "abc"}, CHAMPION)
    _version(store, name, {"oos_sharpe": "9.0"}, CHALLENGER)
    champion = load_champion(store, name=name)
    assert (champion.model, champion.version) == (name, "2")  # a string, from any store
    assert champion.oos_sharpe == 1.25 and champion.folds_key == "abc"
    assert champion.tags == {"oos_sharpe": "1.25", "folds_key": "abc"}
    assert champion.bundle_dir is None  # nothing downloaded unless asked
    assert champion.gate_record() == {"version": "2", "sharpe": 1.25, "folds_key": "abc"}
    passed, checks = run_gate(EVALUATION, THRESHOLDS, champion.gate_record())
    assert passed and "vs champion v2 1.250 on other folds" in checks[-1].detail


@pytest.mark.parametrize("tag", ["nan", "None", "", "inf"])
def test_an_undefined_recorded_sharpe_is_none(store, tag):
    from tradingrl.registry.champion import CHAMPION, load_champion

    name = f"policy-sharpe-{tag or 'empty'}"
    _version(store, name, {"oos_sharpe": tag}, CHAMPION)
    assert load_champion(store, name=name).oos_sharpe is None


def test_a_recorded_sharpe_that_is_not_a_number_is_refused(store):
    from tradingrl.registry.champion import CHAMPION, load_champion

    _version(store, "policy-bad-sharpe", {"oos_sharpe": "high"}, CHAMPION)
    with pytest.raises(ValueError, match="tag oos_sharpe 'high' is not a number"):
        load_champion(store, name="policy-bad-sharpe")


# ---------------------------------------------------------------- promote() on a real bundle
@pytest.fixture(scope="module")
def policy_pieces(tmp_path_factory):
    """A small bundle with its reference window (untrained seeded models in
    the pipeline's layouts, test_trading_policy's helpers) and the bars."""
    import torch
    from stable_baselines3 import PPO
    from test_trading_policy import (
        AGENT_FEATURES,
        FEATURES_PARAMS,
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
    root = tmp_path_factory.mktemp("promote")
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=400, seed=5))
    table, _ = build_feature_table(bars, LabelSpec(**FEATURES_PARAMS["label"]),
                                   warmup_bars=FEATURES_PARAMS["warmup_bars"])
    cnn_dir = _save_trend_model(root / "cnn_lstm", table, dropout=0.0, mc_samples=1)
    predictions = TrendModel.load(cnn_dir).predict(table)
    agent_table, _ = build_agent_table(table, bars, predictions, AGENT_FEATURES,
                                       ["p_down", "p_flat", "p_up", "expected_return",
                                        "confidence"])
    stamps = np.sort(agent_table["timestamp"].unique())
    scaler = fit_agent_scaler(agent_table, AGENT_FEATURES, stamps[0], stamps[len(stamps) // 2])
    env = build_env(_markets(table, bars, predictions, scaler)["SYN000"],
                    _env_kwargs(RISK_LIMITS))
    PPO("MlpPolicy", env, seed=0, n_steps=64, batch_size=32, device="cpu",
        policy_kwargs={"net_arch": [16, 16]}).save(root / "agent.zip")
    agent_dir = _write_agent_dir(root / "agent", root / "agent.zip", scaler,
                                 int(env.observation_space.shape[0]), RISK_LIMITS)
    bundle = build_reference_bundle(cnn_dir, agent_dir, FEATURES_PARAMS, root / "bundle",
                                    bars=bars, features=table, sessions=20)
    yield SimpleNamespace(root=root, bars=bars, bundle=bundle)
    torch.set_num_threads(threads)


def test_promote_registers_gates_and_moves_the_champion_alias_last(policy_pieces,
                                                                  tmp_path):
    import mlflow
    from mlflow import MlflowClient

    from tradingrl.monitoring.decisions import load_bundle
    from tradingrl.registry.champion import CHALLENGER, CHAMPION, POLICY_MODEL, load_champion
    from tradingrl.registry.promotion import promote

    evaluation = {**copy.deepcopy(EVALUATION), "trials": {"n_trials": 3},
                  "mlflow_run_id": "evaluation-run"}
    worse = copy.deepcopy(evaluation)
    worse["policy"]["overall"]["sharpe"] = 1.2  # beats the baselines, not the champion
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment(
            "promote", artifact_location=(tmp_path / "art").as_uri()))
        with pytest.raises(RuntimeError, match="active MLflow run"):
            promote(policy_pieces.bundle, policy_pieces.bars, evaluation=evaluation,
                    thresholds=THRESHOLDS, tags={}, decided_by="tester")
        records = []
        for judged in (evaluation, worse):
            with mlflow.start_run() as run:
                result = promote(policy_pieces.bundle, policy_pieces.bars, evaluation=judged,
                                 thresholds=THRESHOLDS, tags={"git_commit": "abc"},
                                 decided_by="tester")
            records.append((run.info.run_id, result.record))
        client = MlflowClient(uri)
        aliases = client.get_registered_model(POLICY_MODEL).aliases
    finally:
        mlflow.set_tracking_uri(previous)
    # Downloaded from the store named, not from mlflow's global one (now another).
    champion = load_champion(uri, download_to=tmp_path / "download")

    (first_run, first), (second_run, second) = records
    assert first["decision"] == "promoted" and first["version"] == first["champion"] == "1"
    assert first["previous_champion"] is None and first["mlflow_run_id"] == first_run
    assert first["thresholds"] == {"min_dsr": 0.95, "min_sharpe_margin": 0.1,
                                   "max_drawdown": 0.25}
    assert (first["model"], first["decided_by"]) == (POLICY_MODEL, "tester")
    assert second["decision"] == "refused" and second["version"] == "2"
    assert second["champion"] == "1"  # the champion stays
    assert second["previous_champion"] == {"version": "1", "sharpe": 1.4,
                                           "folds_key": folds_key(EVALUATION)}
    assert [c["name"] for c in second["checks"] if not c["passed"]] == ["beats_champion"]
    assert aliases == {CHAMPION: 1, CHALLENGER: 2}

    tags = client.get_model_version(POLICY_MODEL, "2").tags
    assert tags["oos_sharpe"] == "1.2" and tags["folds_key"] == folds_key(EVALUATION)
    assert tags["gate.decision"] == "refused" and tags["gate.decided_by"] == "tester"
    assert (tags["git_commit"], tags["run_id"], tags["n_trials"]) == ("abc", second_run, "3")
    assert tags["evaluation_run_id"] == "evaluation-run"
    run_tags = client.get_run(second_run).data.tags
    assert run_tags["gate.decision"] == "refused" and run_tags["gate.version"] == "2"
    assert client.get_run(second_run).data.metrics["gate.beats_champion"] == 0.0

    # What the drift check downloads: the champion's bundle and its reference window.
    assert (champion.version, champion.oos_sharpe) == ("1", 1.4)
    bundle = load_bundle(champion.bundle_dir)
    assert bundle.manifest["reference"]["sessions"] == 20
    assert len(bundle.reference) == bundle.manifest["reference"]["rows"] == 2 * 20
    assert bundle.policy is not None and bundle.env_config["env_kind"] == "single_asset"
