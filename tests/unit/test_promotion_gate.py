"""The promotion gate: each check passes and fails where it should, and a
refusal lists exactly the failed checks' reasons."""

from __future__ import annotations

import copy

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
