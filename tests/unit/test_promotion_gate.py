"""The promotion gate: each check passes and fails where it should, and a
refusal lists exactly the failed checks' reasons."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tradingrl.registry.comparison import ChampionComparison
from tradingrl.registry.gate import (
    NOT_COMPARABLE,
    GateCheck,
    GateThresholds,
    decision_record,
    folds_key,
    run_gate,
)

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


def test_a_losing_policy_never_beats_baselines_that_lost_more():
    """Flat (no trading) has no Sharpe ratio and counts as 0: found by
    benchmarks/bench_null_gate.py, where a policy at Sharpe -0.17 passed
    against buy and hold's -1.14 + 0.1."""
    losing = with_changes(policy__overall__sharpe=-0.17,
                          baselines__buy_and_hold__overall__sharpe=-1.14)
    assert names_failed(losing) == ["beats_baselines"]
    _, checks = run_gate(losing, THRESHOLDS, None)
    assert checks[1].threshold == pytest.approx(0.1) and "flat" in checks[1].detail
    assert names_failed(with_changes(policy__overall__sharpe=0.1,
                                     baselines__buy_and_hold__overall__sharpe=-1.14)) == []


def _comparison(**fields) -> ChampionComparison:
    base = {"version": "2", "comparable": True, "reason": "200 bars", "n_bars": 200,
            "min_bars": 126, "training_end": "2016-06-30T00:00:00+00:00",
            "first": "2016-07-01T00:00:00+00:00", "last": "2017-01-01T00:00:00+00:00",
            "challenger_sharpe": 1.1, "champion_sharpe": 0.9}
    return ChampionComparison(**{**base, **fields})


def test_champion_compared_on_the_same_bars_not_on_the_recorded_sharpe():
    # The challenger's overall Sharpe (1.4) is not what is compared: the
    # Sharpe ratios of both books on the bars out of sample for both are.
    assert names_failed(EVALUATION, _comparison()) == []
    assert names_failed(EVALUATION, _comparison(champion_sharpe=1.1)) == []  # equal passes
    assert names_failed(EVALUATION, _comparison(champion_sharpe=1.2)) == ["beats_champion"]
    _, checks = run_gate(EVALUATION, THRESHOLDS, _comparison(champion_sharpe=1.2))
    detail = checks[-1].detail
    assert "Sharpe 1.100 vs champion v2 1.200 on the same 200 bars" in detail
    assert "2016-07-01..2017-01-01" in detail and "2016-06-30" in detail


def test_not_comparable_records_why_and_leaves_the_decision_to_the_absolute_checks():
    few = _comparison(comparable=False, n_bars=40, reason="40 bars after ...",
                      challenger_sharpe=None, champion_sharpe=None)
    passed, checks = run_gate(EVALUATION, THRESHOLDS, few)
    check = checks[-1]
    assert passed and check.passed and check.status == NOT_COMPARABLE
    assert "40 bars" in check.detail and "need 126" in check.detail
    assert "2016-06-30" in check.detail  # the champion's training end
    record = decision_record(passed, checks)
    assert record["decision"] == "promoted"
    assert record["reasons"][0].startswith("no check failed (beats_champion not comparable)")
    assert record["checks"][-1]["status"] == NOT_COMPARABLE and record["checks"][-1]["passed"]
    # An absolute check still refuses.
    assert names_failed(with_changes(policy__dsr__dsr=0.5), few) == ["dsr"]


@pytest.mark.parametrize("fields", [{"challenger_sharpe": None}, {"champion_sharpe": None},
                                    {"champion_sharpe": float("nan")},
                                    {"challenger_sharpe": float("nan")}])
def test_undefined_sharpe_ratios_fail_the_champion_check(fields):
    assert names_failed(EVALUATION, _comparison(**fields)) == ["beats_champion"]


def test_a_check_status_must_agree_with_passed():
    with pytest.raises(ValueError, match="status"):
        GateCheck("x", False, None, None, "", status=NOT_COMPARABLE)
    assert GateCheck("x", False, None, None, "").status == "failed"


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
                                 {"min_sharpe_margin": float("nan")},
                                 {"min_comparable_bars": 1}, {"min_comparable_bars": 12.5}])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError):
        GateThresholds(**bad)


def test_thresholds_come_from_the_promote_section():
    section = {"experiment": "x", "gate": {"min_dsr": 0.9, "min_sharpe_margin": 0.2,
                                           "max_drawdown": 0.3}}
    assert GateThresholds.from_params(section) == GateThresholds(0.9, 0.2, 0.3)
    section["gate"]["min_comparable_bars"] = 60
    assert GateThresholds.from_params(section).min_comparable_bars == 60


def test_the_shipped_params_hold_a_min_comparable_bars():
    from tradingrl.params import load_params

    shipped = Path(__file__).resolve().parents[2] / "params.yaml"
    thresholds = GateThresholds.from_params(load_params("promote", shipped))
    assert thresholds.min_comparable_bars == 126


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
def _add_inputs(path: Path, inputs: dict) -> None:
    """What train_model / train_agent add to their config: the md5 of their inputs."""
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "inputs_md5": inputs}))


@pytest.fixture(scope="module")
def policy_pieces(tmp_path_factory):
    """A small bundle with its reference window (untrained seeded models in
    the pipeline's layouts, test_trading_policy's helpers), an early bundle
    trained on the first 40% of the sessions (a champion with bars after its
    training end), the data files as the stages write them, and the
    evaluation's inputs record for them."""
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
    from tradingrl.registry.provenance import (
        AGENT_CONFIG_KEYS,
        FEATURES_FILE,
        OOF_FILE,
        VALIDATED_FILE,
        evaluation_inputs,
        files_md5,
    )

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("promote")
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=400, seed=5))
    table, _ = build_feature_table(bars, LabelSpec(**FEATURES_PARAMS["label"]),
                                   warmup_bars=FEATURES_PARAMS["warmup_bars"])
    cnn_dir = _save_trend_model(root / "cnn_lstm", table, dropout=0.0, mc_samples=1)
    predictions = TrendModel.load(cnn_dir).predict(table)
    for name, frame in ((VALIDATED_FILE, bars), (FEATURES_FILE, table), (OOF_FILE, predictions)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(root / name, index=False)
    agent_table, _ = build_agent_table(table, bars, predictions, AGENT_FEATURES,
                                       ["p_down", "p_flat", "p_up", "expected_return",
                                        "confidence"])
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
    md5 = files_md5(root, (OOF_FILE, FEATURES_FILE))
    _add_inputs(agent_dir / "env_config.json", md5)
    _add_inputs(cnn_dir / "config.json", {FEATURES_FILE: md5[FEATURES_FILE]})
    env_config = json.loads((agent_dir / "env_config.json").read_text())
    agent_params = {**{key: env_config[key] for key in AGENT_CONFIG_KEYS}, "seeds": [0]}
    bundle = build_reference_bundle(cnn_dir, agent_dir, FEATURES_PARAMS, root / "bundle",
                                    bars=bars, features=table, sessions=20)
    sessions = pd.DatetimeIndex(np.sort(table["timestamp"].unique()))
    early = table[table["timestamp"] <= sessions[int(0.4 * len(sessions))]]
    early_bundle = build_reference_bundle(
        cnn_dir, agent_dir, FEATURES_PARAMS, root / "early_bundle",
        bars=bars[bars["timestamp"] <= early["t1"].max()], features=early, sessions=20)
    yield SimpleNamespace(root=root, bars=bars, table=table, bundle=bundle,
                          early_bundle=early_bundle, cnn_dir=cnn_dir, agent_dir=agent_dir,
                          env_config=env_config, sessions=sessions,
                          inputs=evaluation_inputs(root, agent_params),
                          data_files={n: root / n for n in (VALIDATED_FILE, FEATURES_FILE)})
    torch.set_num_threads(threads)


def _evaluation(pieces, **changes) -> dict:
    evaluation = {**with_changes(**changes), "trials": {"n_trials": 3},
                  "mlflow_run_id": "evaluation-run", "inputs": copy.deepcopy(pieces.inputs),
                  "config": {"symbols": sorted(pieces.bars["symbol"].unique()),
                             "bars_per_year": 252}}
    return evaluation


def _curves(pieces, sharpe: float) -> pd.DataFrame:
    """A curves.parquet-shaped policy book over the last 60% of the sessions
    with an annualised Sharpe ratio of about ``sharpe``."""
    fills = pieces.sessions[int(0.4 * len(pieces.sessions)) + 1:]
    noise = np.random.default_rng(0).standard_normal(len(fills))
    noise = (noise - noise.mean()) / noise.std(ddof=1)
    return pd.DataFrame({"series": "policy", "fold": 1, "timestamp": fills,
                         "log_return": np.log1p(0.01 * noise + 0.01 * sharpe / np.sqrt(252))})


def _compare(pieces, curves, min_bars=60):
    from tradingrl.monitoring.reference import champion_comparison

    def compare(champion):
        return champion_comparison(champion.bundle_dir, champion.version,
                                   challenger_env_config=pieces.env_config, curves=curves,
                                   bars=pieces.bars, features=pieces.table,
                                   symbols=sorted(pieces.bars["symbol"].unique()),
                                   min_bars=min_bars, bars_per_year=252)
    return compare


@pytest.fixture
def registry(tmp_path):
    """A fresh SQLite MLflow store as mlflow's tracking URI, and an experiment."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "promote", artifact_location=(tmp_path / "art").as_uri()))
    yield uri
    mlflow.set_tracking_uri(previous)


def _promote(pieces, bundle, evaluation, compare=None, thresholds=THRESHOLDS, name=None):
    import mlflow

    from tradingrl.registry.champion import POLICY_MODEL
    from tradingrl.registry.promotion import promote

    with mlflow.start_run() as run:
        result = promote(bundle, pieces.bars, evaluation=evaluation, thresholds=thresholds,
                         tags={"git_commit": "abc"}, decided_by="tester",
                         data_files=pieces.data_files, compare=compare,
                         name=name or POLICY_MODEL)
    return run.info.run_id, result.record


def test_promote_registers_gates_and_moves_the_champion_alias_last(policy_pieces, registry,
                                                                  tmp_path):
    import mlflow
    from mlflow import MlflowClient

    from tradingrl.monitoring.decisions import load_bundle
    from tradingrl.registry.champion import CHALLENGER, CHAMPION, POLICY_MODEL, load_champion
    from tradingrl.registry.promotion import promote

    evaluation = _evaluation(policy_pieces)
    # Beats the baselines; its DSR refuses it. The champion was trained on all
    # the data: no bar is out of sample for both, so beats_champion compares nothing.
    weak = _evaluation(policy_pieces, policy__dsr__dsr=0.5)
    with pytest.raises(RuntimeError, match="active MLflow run"):
        promote(policy_pieces.bundle, policy_pieces.bars, evaluation=evaluation,
                thresholds=THRESHOLDS, tags={}, decided_by="tester",
                data_files=policy_pieces.data_files)
    first_run, first = _promote(policy_pieces, policy_pieces.bundle, evaluation)
    with mlflow.start_run(), pytest.raises(ValueError, match="needs compare="):
        promote(policy_pieces.bundle, policy_pieces.bars, evaluation=weak,
                thresholds=THRESHOLDS, tags={}, decided_by="tester",
                data_files=policy_pieces.data_files)
    second_run, second = _promote(policy_pieces, policy_pieces.bundle, weak,
                                  _compare(policy_pieces, _curves(policy_pieces, 3.0)))
    client = MlflowClient(registry)
    aliases = client.get_registered_model(POLICY_MODEL).aliases
    # Downloaded from the store named, not from mlflow's global one (now another).
    mlflow.set_tracking_uri("sqlite:///" + str(tmp_path / "other.db"))
    champion = load_champion(registry, download_to=tmp_path / "download")

    assert first["decision"] == "promoted" and first["version"] == first["champion"] == "1"
    assert first["previous_champion"] is None and first["mlflow_run_id"] == first_run
    assert first["champion_comparison"] is None
    assert first["thresholds"] == {"min_dsr": 0.95, "min_sharpe_margin": 0.1,
                                   "max_drawdown": 0.25, "min_comparable_bars": 126}
    assert (first["model"], first["decided_by"]) == (POLICY_MODEL, "tester")
    assert second["decision"] == "refused" and second["version"] == "2"
    assert second["champion"] == "1"  # the champion stays
    assert second["previous_champion"] == {"version": "1", "sharpe": 1.4,
                                           "folds_key": folds_key(EVALUATION), "set_by": "gate"}
    assert [c["name"] for c in second["checks"] if not c["passed"]] == ["dsr"]
    beats = second["checks"][-1]
    assert beats["name"] == "beats_champion" and beats["status"] == NOT_COMPARABLE
    comparison = second["champion_comparison"]
    assert comparison["comparable"] is False and comparison["n_bars"] == 0
    assert comparison["training_end"] is not None and comparison["version"] == "1"
    assert aliases == {CHAMPION: 1, CHALLENGER: 2}

    tags = client.get_model_version(POLICY_MODEL, "2").tags
    assert tags["oos_sharpe"] == "1.4" and tags["folds_key"] == folds_key(EVALUATION)
    assert tags["gate.decision"] == "refused" and tags["gate.decided_by"] == "tester"
    assert tags["gate.beats_champion"] == NOT_COMPARABLE
    assert (tags["git_commit"], tags["run_id"], tags["n_trials"]) == ("abc", second_run, "3")
    assert tags["evaluation_run_id"] == "evaluation-run"
    # What a person reads on the version's page in the MLflow UI.
    experiment = client.get_run(second_run).info.experiment_id
    description = client.get_model_version(POLICY_MODEL, "2").description
    assert description.startswith("**Gate: refused**, by tester at ")
    assert "| dsr | failed | 0.5 | 0.95 |" in description
    assert "| max_drawdown | passed |" in description
    assert f"Promote run: [{second_run[:8]}](#/experiments/{experiment}/runs/{second_run})" \
        in description
    assert "Evaluation run: evaluation-run (not in this store)" in description
    assert "Sharpe 1.4 against the best baseline" in description
    assert client.get_model_version(POLICY_MODEL, "1").description.startswith(
        "**Gate: promoted**")
    assert client.get_registered_model(POLICY_MODEL).tags["gate.champion"] == "1"
    run_tags = client.get_run(second_run).data.tags
    assert run_tags["gate.decision"] == "refused" and run_tags["gate.version"] == "2"
    metrics = client.get_run(second_run).data.metrics
    assert metrics["gate.dsr"] == 0.0 and "gate.beats_champion" not in metrics

    # What the drift check downloads: the champion's bundle and its reference window.
    assert (champion.version, champion.oos_sharpe) == ("1", 1.4)
    bundle = load_bundle(champion.bundle_dir)
    assert bundle.manifest["reference"]["sessions"] == 20
    assert len(bundle.reference) == bundle.manifest["reference"]["rows"] == 2 * 20
    assert bundle.policy is not None and bundle.env_config["env_kind"] == "single_asset"


def test_promote_compares_with_a_champion_replayed_on_the_bars_after_its_training_end(
        policy_pieces, registry):
    from mlflow import MlflowClient

    from tradingrl.registry.champion import CHALLENGER, CHAMPION, POLICY_MODEL

    evaluation = _evaluation(policy_pieces)
    _, first = _promote(policy_pieces, policy_pieces.early_bundle, evaluation)
    assert first["decision"] == "promoted"
    # A challenger whose out-of-fold book loses on the bars both never saw.
    _, lost = _promote(policy_pieces, policy_pieces.bundle, evaluation,
                       _compare(policy_pieces, _curves(policy_pieces, -50.0)))
    comparison = lost["champion_comparison"]
    assert lost["decision"] == "refused" and comparison["comparable"] is True
    assert [c["name"] for c in lost["checks"] if not c["passed"]] == ["beats_champion"]
    fills = _curves(policy_pieces, 0.0)["timestamp"]
    end = pd.Timestamp(comparison["training_end"])
    assert comparison["n_bars"] == int((fills > end).sum()) >= 60
    assert comparison["champion_sharpe"] > comparison["challenger_sharpe"]
    assert lost["checks"][-1]["threshold"] == comparison["champion_sharpe"]
    # One that wins there is promoted.
    _, won = _promote(policy_pieces, policy_pieces.bundle, evaluation,
                      _compare(policy_pieces, _curves(policy_pieces, 50.0)))
    assert won["decision"] == "promoted" and won["champion"] == "3"
    assert won["champion_comparison"]["champion_sharpe"] == pytest.approx(
        comparison["champion_sharpe"])
    aliases = MlflowClient(registry).get_registered_model(POLICY_MODEL).aliases
    assert aliases == {CHAMPION: 3, CHALLENGER: 3}
    assert won["previous_champion"]["set_by"] == "gate"
    # A person moves the champion back to v1 (the UI calls the same API): the
    # next decision says the champion it compared with was not the gate's.
    MlflowClient(registry).set_registered_model_alias(POLICY_MODEL, CHAMPION, "1")
    _, after = _promote(policy_pieces, policy_pieces.bundle, evaluation,
                        _compare(policy_pieces, _curves(policy_pieces, -50.0)))
    previous = after["previous_champion"]
    assert (previous["version"], previous["set_by"], previous["gate_champion"]) == ("1", "hand", "3")
    assert "records neither who moves an alias nor when" in previous["set_by_detail"]
    assert after["champion_comparison"]["version"] == "1" and after["champion"] == "1"


def test_promote_refuses_an_agent_trained_on_other_predictions(policy_pieces, registry,
                                                               tmp_path):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from test_trading_policy import FEATURES_PARAMS

    from tradingrl.registry.bundle import build_policy_bundle
    from tradingrl.registry.champion import POLICY_MODEL
    from tradingrl.registry.provenance import OOF_FILE, ProvenanceError

    other = tmp_path / "agent"
    shutil.copytree(policy_pieces.agent_dir, other)
    config = json.loads((other / "env_config.json").read_text())
    config["inputs_md5"][OOF_FILE] = "0" * 32  # trained on other out-of-fold predictions
    (other / "env_config.json").write_text(json.dumps(config))
    bundle = build_policy_bundle(policy_pieces.cnn_dir, other, FEATURES_PARAMS,
                                 tmp_path / "bundle")
    with pytest.raises(ProvenanceError) as refused:
        _promote(policy_pieces, bundle, _evaluation(policy_pieces))
    message = str(refused.value)
    assert "\n" not in message and "env_config.json" in message and OOF_FILE in message
    assert "0" * 32 in message and policy_pieces.inputs["files_md5"][OOF_FILE] in message
    with pytest.raises(MlflowException):  # nothing was registered
        MlflowClient(registry).get_registered_model(POLICY_MODEL)
