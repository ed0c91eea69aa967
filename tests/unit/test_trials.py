"""The deflated Sharpe ratio counts every configuration evaluated on the same
data and fold plan (the MLflow history of evaluate runs), not only this run's
seeds: a second configuration raises N, a new data hash starts a new count,
a rerun of the same configuration adds nothing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tradingrl.evaluation.record import count_trials, deflated_sharpe_of_seeds
from tradingrl.evaluation.trials import (
    trial_config,
    trial_family,
    trial_history,
    trial_tags,
)

FOLDS = [{"index": 1, "test_start": "2020-01-01", "test_end": "2020-06-30"}]
SEEDS = 3


@pytest.fixture()
def store(tmp_path):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("trials", artifact_location=str(tmp_path / "art"))
    return client, experiment


def _evaluate_run(client, experiment, family, config, sharpes, *, status="FINISHED"):
    run = client.create_run(experiment, run_name="evaluate",
                            tags=trial_tags(family, config, len(sharpes), sharpes))
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def test_another_configuration_on_the_same_data_raises_the_trial_count(store):
    client, experiment = store
    family = trial_family("md5-of-the-bars", FOLDS)
    ppo = trial_config(train_agent={"algorithm": "ppo"}, code="c1")
    sac = trial_config(train_agent={"algorithm": "sac"}, code="c1")
    first = _evaluate_run(client, experiment, family, ppo, [0.01, 0.02, -0.01])

    history = trial_history(client, experiment, family, sac)
    assert [(h["config"], h["run_id"], h["n_trials"]) for h in history] == [(ppo, first, 3)]
    counted = count_trials({"optuna_trials": 0, "rl_seeds": SEEDS, "n_trials": SEEDS},
                           [0.03, 0.0, 0.01], history)
    assert counted["n_trials"] >= 2 * SEEDS and counted["this_run"] == SEEDS
    assert counted["trial_sharpes"] == [0.03, 0.0, 0.01, 0.01, 0.02, -0.01]
    assert "1 other configurations" in counted["source"]

    # The same configuration rerun: its own earlier run is not another trial.
    assert trial_history(client, experiment, family, ppo) == []
    # A new data hash (or fold plan) starts a new count.
    assert trial_history(client, experiment, trial_family("other-bars", FOLDS), sac) == []
    assert trial_history(client, experiment, trial_family("md5-of-the-bars", FOLDS * 2),
                         sac) == []


def test_failed_runs_and_repeated_trials_are_not_counted(store):
    client, experiment = store
    family = trial_family("bars", FOLDS)
    a, b, c = (trial_config(code=name) for name in "abc")
    _evaluate_run(client, experiment, family, a, [0.01, 0.02], status="FAILED")
    _evaluate_run(client, experiment, family, a, [0.01, 0.03])
    _evaluate_run(client, experiment, family, b, [0.01, 0.03])  # the same trials again
    history = trial_history(client, experiment, family, c)
    assert [h["config"] for h in history] == [a]
    # This run's own trials recorded under another configuration are not counted twice.
    counted = count_trials({"n_trials": 2}, [0.01, 0.03], history)
    assert counted["n_trials"] == 2 and counted["history"] == []


def test_more_trials_deflate_the_same_returns_more():
    rng = np.random.default_rng(0)
    policy = SimpleNamespace(log_return=rng.normal(0.0006, 0.01, 750))
    alone = count_trials({"n_trials": SEEDS}, [0.05, 0.06, 0.04], [])
    history = [{"config": f"c{k}", "run_id": str(k), "n_trials": SEEDS,
                "sharpe_per_period": [0.02 * k, -0.01, 0.0]} for k in range(4)]
    with_history = count_trials({"n_trials": SEEDS}, [0.05, 0.06, 0.04], history)
    first = deflated_sharpe_of_seeds(policy, alone["trial_sharpes"], alone["n_trials"])
    later = deflated_sharpe_of_seeds(policy, with_history["trial_sharpes"],
                                     with_history["n_trials"])
    assert (first["n_trials"], later["n_trials"]) == (3, 15)
    assert later["sr0"] > first["sr0"] and later["dsr"] < first["dsr"]
    expected = max(float(np.var(with_history["trial_sharpes"], ddof=1)), 1 / 749)
    assert later["sr_variance"] == pytest.approx(expected)
