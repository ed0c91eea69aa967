"""The agent search (tradingrl/agents/search.py): which settings it may
search, how departures apply, that the best trial's settings train every
seed, that a rerun reads the trials back unchanged, and that its trials
multiply the deflated Sharpe ratio's trial count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_agents import TRAIN_KWARGS, planted_market, tiny_settings
from tradingrl.agents.search import AgentSearchSettings, apply_departures, search_agent
from tradingrl.agents.training import seed_dir, train_seeds
from tradingrl.evaluation.record import trial_count

SPACE = {"learning_rate": {"choices": [1e-5, 3e-3]},
         "algorithm_kwargs.gamma": {"low": 0.0, "high": 0.9}}


@pytest.mark.parametrize(("space", "message"), [
    ({"env.no_trade_band": {"low": 0.0, "high": 0.1}}, "only the learner's settings"),
    ({"total_timesteps": {"low": 1, "high": 2}}, "only the learner's settings"),
    ({"learning_rate": {"low": 0.1, "high": 0.01}}, "give low < high"),
    ({"learning_rate": {"choices": []}}, "choices takes a non-empty list"),
    ({}, "space is empty"),
])
def test_settings_refuse_what_cannot_be_searched(space, message) -> None:
    with pytest.raises(ValueError, match=message):
        AgentSearchSettings(n_trials=2, space=space)


def test_no_search_section_means_no_search() -> None:
    assert not AgentSearchSettings.from_params(None).enabled
    assert AgentSearchSettings.from_params({"n_trials": 3, "space": SPACE}).n_trials == 3


def test_departures_apply_to_their_own_places() -> None:
    settings = tiny_settings()
    changed = apply_departures(settings, {"learning_rate": 0.01, "algorithm_kwargs.gamma": 0.3,
                                          "policy_kwargs.log_std_init": -2.0})
    assert changed.learning_rate == 0.01
    assert changed.algorithm_kwargs == {**settings.algorithm_kwargs, "gamma": 0.3}
    assert changed.policy_kwargs == {**settings.policy_kwargs, "log_std_init": -2.0}
    assert settings.learning_rate == 3e-4 and "gamma" not in settings.algorithm_kwargs


def test_best_trial_trains_every_seed_and_a_rerun_reads_the_trials_back(tmp_path: Path) -> None:
    train, val = planted_market(300, 1), planted_market(120, 2)
    settings = tiny_settings(seeds=(0, 1), total_timesteps=256)
    search = AgentSearchSettings(n_trials=3, timesteps=192, seed=4, space=SPACE)
    results = train_seeds(train, val, settings, out_dir=tmp_path, env_kwargs=TRAIN_KWARGS,
                          search=search)
    found = results.search
    assert found.n_trials == 3 and [t["number"] for t in found.trials] == [0, 1, 2]
    assert all(t["timesteps"] == 192 for t in found.trials)
    best = max(found.trials, key=lambda t: t["score"])
    assert found.departures == best["departures"]
    for agent in results.agents:  # the seeds learn with the best trial's settings
        assert agent.model.learning_rate == found.departures["learning_rate"]
        assert agent.model.gamma == pytest.approx(found.departures["algorithm_kwargs.gamma"])
        assert agent.timesteps == 256
    assert json.loads((seed_dir(tmp_path, 0) / "done.json").read_text())["timesteps"] == 256
    for k in range(3):
        assert (tmp_path / "search" / f"trial_{k}" / "done.json").is_file()

    again = search_agent(train, val, settings, search, out_dir=tmp_path / "search",
                         env_kwargs=TRAIN_KWARGS)
    assert again.to_json() == found.to_json()


def test_search_trials_multiply_the_trial_count() -> None:
    report = {"search": {"n_trials": 4}}
    assert trial_count(3, report) == {"optuna_trials": 4, "agent_search_trials": 0,
                                      "rl_seeds": 3, "n_trials": 12}
    assert trial_count(3, report, agent_trials=5)["n_trials"] == 60
    assert trial_count(2, {}, agent_trials=5)["n_trials"] == 10
