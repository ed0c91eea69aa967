"""Stage train_model: data/features -> models/cnn_lstm, reports/model_metrics.json,
reports/model_plots; one MLflow run (nested runs for Optuna trials) and a new
version of the registered model ``cnn-lstm`` tagged with code and data hashes.

A killed run resumes from models/cnn_lstm_checkpoints/last.ckpt when the stage
reruns with the same params and data (a fingerprint file says which).

Optuna search (``search.n_trials > 0``) scores trials on one purged
chronological hold-out (``search.cv: holdout``) or by combinatorial purged CV
(``search.cv: cpcv``, layout in ``search.cpcv``): then each trial also gets
the Sharpe ratios of the supervised position on every CPCV backtest path,
traded on data/validated's bars with ``train_agent.costs``. The final model
is fitted on the hold-out split either way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from tasks._common import (
    REPO_ROOT,
    fingerprint,
    flat_params,
    load_params,
    prepare_resumable,
    run_stage,
    write_json,
)
from tradingrl.models.train import (
    MlflowTrialLogger,
    TrainSettings,
    build_datamodule,
    fit_model,
    score_models,
    search_hyperparameters,
    search_in_parallel,
    search_summary,
)
from tradingrl.parallel import runner_from_env
from tradingrl.tracking import provenance_tags, tracking_uri, use_experiment, workspace_root

REGISTERED_MODEL = "cnn-lstm"
FEATURES = REPO_ROOT / "data" / "features"
VALIDATED = REPO_ROOT / "data" / "validated"


def search_cv_from_params(search: dict[str, Any]) -> tuple[str, Any]:
    """(cv, CPCVSettings or None) from the ``search`` section; a bad value is a
    one-line ValueError naming its params.yaml key. ``cv`` defaults to holdout."""
    from tradingrl.models.cpcv_search import CPCVSettings, check_cv

    try:
        cv = check_cv(search.get("cv", "holdout"))
    except ValueError as error:
        raise ValueError(f"train_model.search.{error}") from None
    if cv != "cpcv":
        return cv, None
    if "cpcv" not in search:
        raise ValueError("train_model.search.cpcv is missing (n_groups, n_test_groups, "
                         "embargo_bars) while train_model.search.cv is cpcv")
    try:
        return cv, CPCVSettings.from_dict(search["cpcv"])
    except ValueError as error:
        raise ValueError(f"train_model.search.{error}") from None


STORAGE_ENV = "TRADINGRL_OPTUNA_STORAGE"


def optuna_storage(search: dict[str, Any], repo_root: Path) -> str:
    """The Optuna study's RDB URL: $TRADINGRL_OPTUNA_STORAGE, else
    ``search.storage``, else ``sqlite:///<repo>/optuna.db``. A URL with a
    password in params is refused (params are logged to MLflow): put it in
    the environment variable or the database's own password file."""
    import re

    in_params = search.get("storage")
    if in_params and re.search(r"://[^/@]*:[^/@]*@", str(in_params)):
        raise ValueError(f"train_model.search.storage holds a password; params are logged to "
                         f"MLflow, so set the URL in ${STORAGE_ENV} (or use ~/.pgpass)")
    return (os.environ.get(STORAGE_ENV) or in_params
            or f"sqlite:///{workspace_root(repo_root) / 'optuna.db'}")


def settings_from_params(params: dict[str, Any]) -> TrainSettings:
    uncertainty, baselines = params["uncertainty"], params["baselines"]
    return TrainSettings(
        window=params["window"],
        val_fraction=params["val_fraction"],
        batch_size=params["batch_size"],
        max_epochs=params["max_epochs"],
        patience=params["patience"],
        limit_train_batches=params["limit_train_batches"],
        seed=params["seed"],
        model=dict(params["model"]),
        mc_samples=uncertainty["mc_samples"],
        ensemble_size=uncertainty["ensemble_size"],
        temperature_scaling=uncertainty["temperature_scaling"],
        logreg_max_rows=baselines["logreg_max_rows"],
    )


def main(
    params: dict[str, Any] | None = None,
    features_dir: Path = FEATURES,
    out_dir: Path = REPO_ROOT / "models" / "cnn_lstm",
    checkpoint_root: Path = REPO_ROOT / "models" / "cnn_lstm_checkpoints",
    reports_dir: Path = REPO_ROOT / "reports",
    repo_root: Path = REPO_ROOT,
    validated_dir: Path = VALIDATED,
    costs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults).
    ``costs``: the backtest costs of the CPCV search (None: params.yaml's
    ``train_agent.costs``, read only when the search runs with cv cpcv).
    Returns the report written to reports/model_metrics.json."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    params = params if params is not None else load_params("train_model")
    settings = settings_from_params(params)
    search = params["search"]
    cv, cpcv_settings = search_cv_from_params(search)
    use_cpcv = search["n_trials"] > 0 and cv == "cpcv"
    frame = pd.read_parquet(features_dir / "features.parquet")
    feature_names = json.loads((features_dir / "feature_list.json").read_text())["features"]
    datamodule = build_datamodule(frame, feature_names, settings)
    cpcv_search = None
    if use_cpcv:
        from tradingrl.envs.costs import ExecutionCosts
        from tradingrl.models.cpcv_search import CPCVSearch

        costs = costs if costs is not None else load_params("train_agent")["costs"]
        cpcv_search = CPCVSearch(
            frame, feature_names, pd.read_parquet(validated_dir / "ohlcv.parquet"),
            cpcv_settings, env={"costs": ExecutionCosts(**costs)})
    del frame

    tags = provenance_tags(repo_root, "data/features")
    run_key = fingerprint(params, tags["data_dvc_md5"])
    experiment_id = use_experiment(repo_root, params["experiment"])
    with mlflow.start_run(run_name="train_model", tags=tags) as run:
        mlflow.log_params(flat_params({"train_model": params}))
        mlflow.log_dict(datamodule.split_info, "split_info.json")

        study = None
        if search["n_trials"] > 0:
            log_trial = MlflowTrialLogger(tracking_uri(repo_root), experiment_id,
                                          run.info.run_id, dict(tags))

            # CPCV trials also depend on the backtest costs: a study of its own.
            study_key = (run_key if cpcv_search is None else
                         fingerprint({"train_model": params, "costs": costs},
                                     tags["data_dvc_md5"]))
            search_kwargs = {
                "datamodule": datamodule, "settings": settings, "n_trials": search["n_trials"],
                "storage": optuna_storage(search, repo_root),
                "study_name": f"cnn-lstm-{study_key}", "timeout_s": search["timeout_s"],
                "max_epochs": search["max_epochs"], "on_trial": log_trial, "cv": cv,
                "cpcv": cpcv_search}
            # On a Dask task runner (pipelines.yaml, through the training flow)
            # one worker per Dask worker process shares the study.
            runner = runner_from_env()
            workers = (runner.max_workers or 2) if runner and runner.kind == "dask" else 1
            if workers > 1:
                print(f"train_model: Optuna search with {workers} workers on task runner dask")
                best_model_params, study = search_in_parallel(search_kwargs, workers=workers,
                                                              runner=runner)
            else:
                best_model_params, study = search_hyperparameters(**search_kwargs)
            del cpcv_search
            settings = TrainSettings(**{**asdict(settings), "model": best_model_params})
        search_report = search_summary(study, cv, cpcv_settings)
        trials = search_report["trials"]
        mlflow.log_params({f"final.{k}": v for k, v in settings.model.items()})

        models, val_losses = [], []
        for member in range(settings.ensemble_size):
            checkpoint_dir = checkpoint_root / f"member-{member}"
            prepare_resumable(checkpoint_dir, run_key)
            logger = MLFlowLogger(
                tracking_uri=tracking_uri(repo_root), run_id=run.info.run_id,
                prefix=f"member{member}" if settings.ensemble_size > 1 else "",
            )
            model, val_loss, _ = fit_model(
                datamodule, settings, seed=settings.seed + member,
                checkpoint_dir=checkpoint_dir, logger=logger,
                progress_bar=params.get("progress_bar", True),
            )
            models.append(model)
            val_losses.append(val_loss)

        scored = score_models(models, datamodule, settings)
        report = {
            "split": datamodule.split_info,
            "best_val_loss": val_losses,
            "temperatures": scored["temperatures"],
            "windows_calibration": scored["windows_calibration"],
            "windows_scored": scored["windows_scored"],
            "scored_from": scored["scored_from"],
            "mc_passes": scored["mc_passes"],
            "metrics": scored["metrics"],
            "beats_baselines": scored["beats_baselines"],
            "search": search_report,
            "model": settings.model,
            "mlflow_run_id": run.info.run_id,
        }
        for name, values in scored["metrics"].items():
            mlflow.log_metrics({f"val.{name}.{k}": v for k, v in values.items()
                                if isinstance(v, (int, float)) and v is not None})
        mlflow.log_metric("search.n_trials", len(trials))

        out_dir.mkdir(parents=True, exist_ok=True)
        plots = reports_dir / "model_plots"
        plots.mkdir(parents=True, exist_ok=True)
        _save_model_dir(out_dir, models, datamodule, settings, scored, feature_names, report)
        from tradingrl.models.metrics import save_diagnostic_plots

        save_diagnostic_plots(
            scored["prediction"].probs, scored["y"],
            calibration_path=plots / "calibration.png", confusion_path=plots / "confusion.png",
        )
        mlflow.log_artifacts(str(plots), "plots")
        mlflow.log_artifacts(str(out_dir), "cnn_lstm")
        version = _register(models[0], datamodule, run.info.run_id, tags)
        report["registered"] = {"name": REGISTERED_MODEL, "version": version}
        write_json(reports_dir / "model_metrics.json", report)
        mlflow.log_artifact(str(reports_dir / "model_metrics.json"))

    net = report["metrics"]["cnn_lstm"]
    print(
        f"train_model: val balanced accuracy {net['balanced_accuracy']:.3f}, log loss "
        f"{net['log_loss']:.3f}, beats baselines: {report['beats_baselines']}; "
        f"{REGISTERED_MODEL} v{version} (experiment {experiment_id})"
    )
    return report


def _save_model_dir(out_dir, models, datamodule, settings, scored, feature_names, report) -> None:
    import torch

    for member, model in enumerate(models):
        torch.save(
            {"state_dict": model.state_dict(), "hparams": dict(model.hparams)},
            out_dir / f"model-{member}.pt",
        )
    datamodule.scaler.save(out_dir / "scaler.json")
    write_json(out_dir / "feature_list.json", {"features": list(feature_names)})
    write_json(out_dir / "config.json", {
        "window": settings.window,
        "ensemble_size": len(models),
        "mc_samples": settings.mc_samples,
        "temperatures": scored["temperatures"],
        "model": settings.model,
        "split": report["split"],
    })


def _register(model, datamodule, run_id: str, tags: dict[str, str]) -> str:
    """Register the first member as a new version of ``cnn-lstm``."""
    import numpy as np

    from tradingrl.models.export import log_and_register

    example = datamodule.val_dataset[0][0].numpy()[None, ...].astype(np.float32)
    return log_and_register(model, example, name=REGISTERED_MODEL, tags={**tags, "run_id": run_id})


if __name__ == "__main__":
    run_stage(main)
