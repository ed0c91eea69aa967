"""Two worker processes on one Optuna study in SQLite (RDB storage): both
add trials to the same study, the total stops at ``n_trials``, and their
samplers do not propose the same configurations."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# A worker: a tiny feature table and model, then search_hyperparameters on the
# shared study once both workers are ready (so they really run side by side).
WORKER = r"""
import sys, time
from pathlib import Path
from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features.build import build_feature_table
from tradingrl.features.labels import LabelSpec
from tradingrl.models.fit import TrainSettings, build_datamodule
from tradingrl.models.search import search_hyperparameters

worker, storage, folder = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=300, seed=4))
table, _ = build_feature_table(bars, LabelSpec(horizon=5), warmup_bars=120)
settings = TrainSettings(
    window=8, val_fraction=0.25, batch_size=64, max_epochs=1, patience=1, seed=3,
    limit_train_batches=2, mc_samples=1,
    model={"conv_channels": 4, "conv_blocks": 1, "lstm_hidden": 8, "dropout": 0.1})
datamodule = build_datamodule(table, ["ret_1", "ret_5", "rv_20", "rsi_14"], settings)
(folder / f"ready-{worker}").touch()
deadline = time.monotonic() + 120
while not all((folder / f"ready-{k}").exists() for k in (0, 1)):
    if time.monotonic() > deadline:
        raise SystemExit("the other worker never got ready")
    time.sleep(0.05)
search_hyperparameters(datamodule, settings, n_trials=8, storage=storage,
                       study_name="shared", max_epochs=1, worker=worker)
"""


def test_two_workers_share_one_sqlite_study(tmp_path: Path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # The storage's schema and the study exist before the workers start (two
    # processes creating a fresh database at once race on its schema).
    optuna.create_study(storage=storage, study_name="shared", direction="minimize")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(k), storage, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k in (0, 1)]
    start = time.monotonic()
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]

    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    by_worker: dict[str, list[int]] = {}
    for trial in finished:
        by_worker.setdefault(trial.user_attrs["worker"].split(":")[0], []).append(trial.number)
    assert sorted(by_worker) == ["0", "1"], by_worker  # both sets of trials are there
    assert 8 <= len(finished) <= 9  # the total stops at n_trials (one extra per other worker)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
    # Distinct sampler seeds: the workers' first proposals differ.
    first = {w: study.trials[numbers[0]].params for w, numbers in by_worker.items()}
    assert first["0"] != first["1"]
    assert time.monotonic() - start < 600


def test_search_workers_on_a_dask_task_runner_share_the_study(tmp_path: Path, monkeypatch):
    """The stage's route with pipelines.yaml's dask runner: two search workers
    as Prefect tasks on a local Dask cluster, one study, every trial a child
    run of the stage's MLflow run, logged from the worker that ran it."""
    import mlflow
    from prefect.testing.utilities import prefect_test_harness

    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.labels import LabelSpec
    from tradingrl.models.fit import TrainSettings, build_datamodule
    from tradingrl.models.search import MlflowTrialLogger, search_in_parallel
    from tradingrl.orchestration import TaskRunnerSettings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("search", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(experiment).info.run_id
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=300, seed=4))
    table, _ = build_feature_table(bars, LabelSpec(horizon=5), warmup_bars=120)
    settings = TrainSettings(
        window=8, val_fraction=0.25, batch_size=64, max_epochs=1, patience=1, seed=3,
        limit_train_batches=2, mc_samples=1,
        model={"conv_channels": 4, "conv_blocks": 1, "lstm_hidden": 8, "dropout": 0.1})
    kwargs = {"datamodule": build_datamodule(table, ["ret_1", "ret_5", "rv_20", "rsi_14"], settings),
              "settings": settings, "n_trials": 6, "storage": f"sqlite:///{tmp_path / 'o.db'}",
              "study_name": "dask", "max_epochs": 1,
              "on_trial": MlflowTrialLogger(uri, experiment, parent, {"stage": "train_model"})}
    with prefect_test_harness(server_startup_timeout=120):
        best, study = search_in_parallel(
            kwargs, workers=2, runner=TaskRunnerSettings(kind="dask", max_workers=2))

    finished = [t for t in study.trials if t.state.is_finished()]
    assert 6 <= len(finished) <= 7
    workers = {t.user_attrs["worker"].split(":")[0] for t in finished}
    assert workers == {"0", "1"}
    pids = {t.user_attrs["worker"].split(":")[2] for t in finished}
    assert str(os.getpid()) not in pids  # the trials ran in the Dask worker processes
    children = client.search_runs([experiment],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_name for r in children) == sorted(
        f"trial-{t.number}" for t in finished if t.state == optuna.trial.TrialState.COMPLETE)
    assert {r.data.tags["optuna.worker"].split(":")[0] for r in children} == {"0", "1"}
    assert best == {**settings.model, **study.best_params}
