"""The train_model stage on a tiny feature table: outputs, metrics with
baselines, MLflow run + nested Optuna trials, a registered and loadable
`cnn-lstm` version tagged with provenance, and checkpoint resume (only of an
interrupted run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.train_model import main
from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features.build import build_feature_table
from tradingrl.features.labels import LabelSpec

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PARAMS = {
    "experiment": "test-train-model",
    "seed": 3,
    "window": 20,
    "val_fraction": 0.25,
    "batch_size": 64,
    "max_epochs": 2,
    "patience": 2,
    "limit_train_batches": 1.0,
    "progress_bar": False,
    "model": {"conv_channels": 8, "conv_kernel_size": 3, "conv_blocks": 1, "lstm_hidden": 8,
              "lstm_layers": 1, "dropout": 0.2, "lr": 0.003, "weight_decay": 0.0001,
              "return_loss_weight": 0.5},
    "uncertainty": {"mc_samples": 5, "ensemble_size": 2, "temperature_scaling": True,
                    "min_calibration_windows": 20},  # a tiny market (default 200)
    "search": {"n_trials": 2, "max_epochs": 1, "timeout_s": 120},
    "baselines": {"logreg_max_rows": 5000},
}
# The search stays before the first out-of-fold block of this plan.
WALK_FORWARD = {"initial_fraction": 0.4, "n_folds": 4, "mode": "expanding",
                "train_timestamps": None, "embargo_timestamps": 0}


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    bars = generate_market(SyntheticMarketConfig(n_symbols=3, n_bars=420, seed=5))
    table, report = build_feature_table(bars, LabelSpec(horizon=5), warmup_bars=120)
    features_dir = root / "data" / "features"
    features_dir.mkdir(parents=True)
    table.to_parquet(features_dir / "features.parquet", index=False)
    (features_dir / "feature_list.json").write_text(json.dumps({"features": report["features"]}))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    paths = {
        "features_dir": features_dir,
        "out_dir": root / "models" / "cnn_lstm",
        "checkpoint_root": root / "models" / "cnn_lstm_checkpoints",
        "reports_dir": root / "reports",
        "repo_root": root,
    }
    result = main(PARAMS, repo_root=root, walk_forward=WALK_FORWARD)
    assert (root / "mlartifacts").is_dir()  # artifacts beside the store, not in the cwd
    yield root, paths, result, uri
    mp.undo()


def test_outputs_and_metrics_against_baselines(stage):
    _, paths, _, _ = stage
    written = json.loads((paths["reports_dir"] / "model_metrics.json").read_text())
    assert written["metrics"].keys() == {"cnn_lstm", "cnn_lstm_uncalibrated", "baseline_prior", "baseline_logreg"}
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "brier", "ece", "rank_ic"):
        assert name in written["metrics"]["cnn_lstm"]
    same_rows = {m["n_samples"] for m in written["metrics"].values()}
    assert len(same_rows) == 1  # network and baselines scored on the same windows
    assert len(written["temperatures"]) == 2 and min(written["temperatures"]) > 0
    assert written["mc_passes"] == 10  # 5 MC passes x 2 ensemble members
    assert (paths["out_dir"] / "model-1.pt").is_file()
    assert set(written["beats_baselines"]) == {"balanced_accuracy", "log_loss"}
    for name in ("model-0.pt", "scaler.json", "feature_list.json", "config.json"):
        assert (paths["out_dir"] / name).is_file()
    assert (paths["reports_dir"] / "model_plots" / "calibration.png").stat().st_size > 1000
    assert written["split"]["rows_purged"] >= 0 and written["split"]["windows_val"] > 0


def test_registered_version_is_tagged_and_loadable(stage):
    import mlflow
    from mlflow import MlflowClient

    _, paths, report, uri = stage
    mlflow.set_tracking_uri(uri)
    version = MlflowClient().get_model_version("cnn-lstm", report["registered"]["version"])
    assert version.tags["run_id"] == report["mlflow_run_id"]
    assert {"git_commit", "data_dvc_md5", "data_path"} <= set(version.tags)
    model = mlflow.pyfunc.load_model(f"models:/cnn-lstm/{version.version}")
    x = np.zeros((2, PARAMS["window"], len(json.loads((paths["out_dir"] / "feature_list.json").read_text())["features"])), np.float32)
    assert model.predict(x).shape == (2, 4)
    # The pinned requirements it was logged with (not inferred: tradingrl/tracking.py).
    from importlib import metadata

    requirements = Path(mlflow.pyfunc.get_model_dependencies(
        f"models:/cnn-lstm/{version.version}")).read_text().split()
    assert f"torch=={metadata.version('torch')}" in requirements
    assert f"mlflow=={metadata.version('mlflow')}" in requirements


def test_optuna_trials_are_nested_runs_and_counted(stage):
    import mlflow

    _, _, report, uri = stage
    mlflow.set_tracking_uri(uri)
    assert report["search"]["n_trials"] == 2
    runs = mlflow.search_runs(experiment_names=[PARAMS["experiment"]],
                              filter_string=f"tags.mlflow.parentRunId = '{report['mlflow_run_id']}'")
    assert len(runs) == 2


def test_rerun_resumes_only_an_interrupted_run_and_a_finished_one_retrains(stage):
    import mlflow

    from tradingrl.resume import FINISHED_FILE

    _, paths, first, uri = stage
    mlflow.set_tracking_uri(uri)
    root = paths["checkpoint_root"]

    def trial_runs(report):
        return len(mlflow.search_runs(
            experiment_names=[PARAMS["experiment"]],
            filter_string=f"tags.mlflow.parentRunId = '{report['mlflow_run_id']}'"))

    stamp = (root / "member-0" / "fingerprint").read_text()
    assert (root / "member-0" / "last.ckpt").is_file() and (root / FINISHED_FILE).is_file()
    # The stage finished: a rerun (what dvc repro -f asks for) searches and
    # trains anew, and the same inputs give the same numbers.
    forced = main(PARAMS, repo_root=paths["repo_root"], walk_forward=WALK_FORWARD)
    assert trial_runs(forced) == 2
    assert forced["metrics"]["cnn_lstm"] == first["metrics"]["cnn_lstm"]
    assert int(forced["registered"]["version"]) == int(first["registered"]["version"]) + 1

    # Killed after training (the stage did not finish): the rerun resumes:
    # the study's stored trials are not run again, training runs no further
    # epoch, and the same best weights are scored again.
    (root / FINISHED_FILE).unlink()
    resumed = main(PARAMS, repo_root=paths["repo_root"], walk_forward=WALK_FORWARD)
    assert (root / "member-0" / "fingerprint").read_text() == stamp
    assert trial_runs(resumed) == 0
    assert resumed["metrics"]["cnn_lstm_uncalibrated"] == forced["metrics"]["cnn_lstm_uncalibrated"]


def test_saved_model_predicts_from_the_past_only(stage):
    import pandas as pd

    from tradingrl.models.predict import PREDICTION_COLUMNS, TrendModel

    _, paths, _, _ = stage
    model = TrendModel.load(paths["out_dir"], seed=1)
    frame = pd.read_parquet(paths["features_dir"] / "features.parquet")
    first = model.predict(frame)
    assert list(first.columns) == ["timestamp", "symbol", *PREDICTION_COLUMNS]
    np.testing.assert_allclose(first[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0, rtol=1e-6)
    assert first["confidence"].between(0, 1).all()
    # One prediction per row with a full window of its own symbol behind it.
    assert len(first) == len(frame) - frame["symbol"].nunique() * (PARAMS["window"] - 1)

    # Rewrite every feature after a cut: predictions at or before it stay.
    cut = frame["timestamp"].sort_values().iloc[len(frame) // 2]
    changed = frame.copy()
    later = changed["timestamp"] > cut
    feature_cols = json.loads((paths["out_dir"] / "feature_list.json").read_text())["features"]
    changed.loc[later, feature_cols] = changed.loc[later, feature_cols].to_numpy()[::-1]
    second = model.predict(changed)
    before = first["timestamp"] <= cut
    pd.testing.assert_frame_equal(first[before], second[before])
    assert not np.allclose(first.loc[~before, "p_up"], second.loc[~before, "p_up"])
