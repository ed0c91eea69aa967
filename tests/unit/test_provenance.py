"""promote's provenance check: reports/metrics.json must come from the inputs
the bundled trend model and agent were trained on, and from the data promote
reads; any mismatch is refused with one line naming the file."""

from __future__ import annotations

import json

import pytest

from tradingrl.registry.provenance import (
    AGENT_CONFIG_KEYS,
    FEATURES_FILE,
    OOF_FILE,
    VALIDATED_FILE,
    ProvenanceError,
    check_provenance,
    evaluation_inputs,
    value_md5,
)
from tradingrl.resume import file_md5

AGENT_PARAMS = {  # train_agent's section, the keys that matter here and one that the agent omits
    "algorithm": "ppo", "env_kind": "single_asset", "features": ["ret_1", "rsi_14"],
    "prediction_columns": ["p_up", "confidence"],
    "env": {"window": 10, "initial_cash": 1000000, "risk_lookback": 60},
    "costs": {"commission_bps": 1.0, "spread_bps": 2.0, "impact_coef": 0.5},
    "risk": {"enabled": True, "forecast_horizon_bars": 5, "kelly_fraction": None},
    "learning_rate": 0.0003,
}


@pytest.fixture
def repo(tmp_path):
    """Data files, models/cnn_lstm and models/agent as the stages write them
    (their configs carry the inputs' md5), and the evaluation's record."""
    for name, payload in ((OOF_FILE, b"oof"), (FEATURES_FILE, b"features"),
                          (VALIDATED_FILE, b"bars")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(payload)
    md5 = {name: file_md5(tmp_path / name) for name in (OOF_FILE, FEATURES_FILE)}
    cnn, agent = tmp_path / "models" / "cnn_lstm", tmp_path / "models" / "agent"
    cnn.mkdir(parents=True)
    agent.mkdir(parents=True)
    (cnn / "config.json").write_text(json.dumps({
        "window": 20, "inputs_md5": {FEATURES_FILE: md5[FEATURES_FILE]}}))
    # JSON round trip, as train_agent writes its params into env_config.json.
    env_config = json.loads(json.dumps({**{k: AGENT_PARAMS[v] for k, v in AGENT_CONFIG_KEYS.items()},
                                        "observation_size": 29, "inputs_md5": md5}))
    (agent / "env_config.json").write_text(json.dumps(env_config))
    return tmp_path


def _check(repo, evaluation=None, data_files=None):
    evaluation = evaluation or {"inputs": evaluation_inputs(repo, AGENT_PARAMS)}
    data_files = data_files or {n: repo / n for n in (VALIDATED_FILE, FEATURES_FILE)}
    check_provenance(evaluation, repo / "models" / "cnn_lstm", repo / "models" / "agent",
                     data_files)


def _edit(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_the_same_inputs_pass(repo):
    _check(repo)


def test_the_evaluation_records_its_files_and_train_agents_settings(repo):
    inputs = evaluation_inputs(repo, AGENT_PARAMS)
    assert inputs["files_md5"] == {n: file_md5(repo / n)
                                   for n in (OOF_FILE, FEATURES_FILE, VALIDATED_FILE)}
    assert inputs["train_agent_md5"]["section"] == value_md5(AGENT_PARAMS)
    assert inputs["train_agent_md5"]["costs"] == value_md5(AGENT_PARAMS["costs"])
    assert value_md5({"b": 1, "a": [1, 2]}) == value_md5({"a": [1, 2], "b": 1})


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_an_agent_trained_on_other_predictions_is_refused(repo):
    _edit(repo / "models" / "agent" / "env_config.json",
          lambda c: c["inputs_md5"].update({OOF_FILE: "f" * 32}))
    with pytest.raises(ProvenanceError) as refused:
        _check(repo)
    message = _one_line(refused)
    assert "env_config.json" in message and OOF_FILE in message and "f" * 32 in message


def test_a_trend_model_trained_on_other_features_is_refused(repo):
    _edit(repo / "models" / "cnn_lstm" / "config.json",
          lambda c: c["inputs_md5"].update({FEATURES_FILE: "e" * 32}))
    with pytest.raises(ProvenanceError) as refused:
        _check(repo)
    assert "config.json" in _one_line(refused) and FEATURES_FILE in str(refused.value)


def test_an_agent_with_other_costs_than_evaluated_is_refused(repo):
    _edit(repo / "models" / "agent" / "env_config.json",
          lambda c: c["costs"].update({"commission_bps": 5.0}))
    with pytest.raises(ProvenanceError, match=r"env_config.json.*train_agent.costs"):
        _check(repo)


def test_data_changed_since_the_evaluation_is_refused(repo):
    evaluation = {"inputs": evaluation_inputs(repo, AGENT_PARAMS)}
    (repo / VALIDATED_FILE).write_bytes(b"new bars")
    with pytest.raises(ProvenanceError) as refused:
        _check(repo, evaluation)
    assert str(repo / VALIDATED_FILE) in _one_line(refused)


@pytest.mark.parametrize("drop", ["evaluation", "agent", "trend"])
def test_records_from_older_code_are_refused_not_trusted(repo, drop):
    evaluation = None
    if drop == "evaluation":
        evaluation = {"policy": {}}
    elif drop == "agent":
        _edit(repo / "models" / "agent" / "env_config.json", lambda c: c.pop("inputs_md5"))
    else:
        _edit(repo / "models" / "cnn_lstm" / "config.json", lambda c: c.pop("inputs_md5"))
    with pytest.raises(ProvenanceError, match="records no"):
        _check(repo, evaluation)


def test_the_data_promote_reads_must_be_named(repo):
    with pytest.raises(ValueError, match="data_files must hold"):
        _check(repo, data_files={FEATURES_FILE: repo / FEATURES_FILE})


def test_the_promote_stage_refuses_a_stale_evaluation_with_one_line(repo, capsys):
    """tasks/promote.py checks before it builds or registers anything; the
    stage ends with exit 1 and the one-line reason naming the file."""
    from tasks.promote import main
    from tradingrl.stage import run_stage

    stale = {"inputs": evaluation_inputs(repo, AGENT_PARAMS)}
    stale["inputs"]["files_md5"][OOF_FILE] = "a" * 32  # evaluated on other predictions
    (repo / "reports").mkdir()
    (repo / "reports" / "metrics.json").write_text(json.dumps(stale))
    with pytest.raises(SystemExit) as stopped:
        run_stage(lambda: main(params={"experiment": "x", "gate": {}}, features_params={},
                               monitoring_params={}, repo_root=repo))
    assert stopped.value.code == 1
    printed = capsys.readouterr().err.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("error: models/agent/env_config.json")
    assert OOF_FILE in printed[0]
    assert not (repo / "models" / "trading_policy").exists()
