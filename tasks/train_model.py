"""Stage train_model: data/features -> models/recipe.json, models/cnn_lstm,
reports/model_metrics.json, reports/model_plots; one MLflow run (nested runs
for Optuna trials) and a new version of the registered model ``cnn-lstm``
tagged with code and data hashes.

The recipe (training settings and model kwargs; the Optuna search, when on,
selects them on the bars before the first out-of-fold block only) is what
every walk-forward fold model is fitted with (stage predict_oof reads
models/recipe.json); models/cnn_lstm is the same recipe refitted on all the
data, the served model (``served: final_refit`` in its config and tags).

The work is :func:`tradingrl.models.train.train_trend_model`. A killed run
resumes from models/cnn_lstm_checkpoints/member-<m>/last.ckpt, and its Optuna
study from the trials already stored, when the stage reruns with the same
code, params and data (a fingerprint file says which); a rerun after the
stage finished (``dvc repro -f``) trains and searches anew
(:mod:`tradingrl.resume`). With
``search.cv: cpcv`` each Optuna trial is scored by
:class:`tradingrl.evaluation.cpcv_search.CPCVSearch`, which also trades the
supervised position on data/validated's bars with ``train_agent.costs``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl import headline
from tradingrl.models.fit import TrainSettings
from tradingrl.models.search import MlflowTrialLogger, SearchSettings, drop_study
from tradingrl.params import flat_params, load_params
from tradingrl.registry.champion import TREND_MODEL
from tradingrl.resume import (
    code_hash,
    file_md5,
    fingerprint,
    finish_resumable,
    prepare_resumable,
)
from tradingrl.stage import run_stage, write_json
from tradingrl.tracking import (
    log_data_inputs,
    log_to_parent,
    provenance_tags,
    stage_run,
    tracking_uri,
    use_experiment,
    workspace_root,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(params: dict[str, Any] | None = None, repo_root: Path = REPO_ROOT,
         costs: dict[str, Any] | None = None,
         walk_forward: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults).
    ``costs``: the CPCV search's backtest costs (None: params.yaml's
    ``train_agent.costs``, read only when the search runs with cv cpcv).
    ``walk_forward``: the fold plan whose first out-of-fold block the search
    must stay before (None: params.yaml's ``walk_forward``)."""
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    from tradingrl.models.export import log_and_register
    from tradingrl.models.metrics import save_diagnostic_plots
    from tradingrl.models.train import save_trend_model, train_trend_model
    from tradingrl.parallel import runner_from_env
    from tradingrl.splits.walk_forward import folds_from_params, purge_labels

    params_file = repo_root / "params.yaml"
    params = params if params is not None else load_params("train_model", params_file)
    walk_forward = (walk_forward if walk_forward is not None
                    else load_params("walk_forward", params_file))
    settings = TrainSettings.from_params(params)
    search = SearchSettings.from_params(params["search"])
    features_dir = repo_root / "data" / "features"
    out_dir, reports = repo_root / "models" / "cnn_lstm", repo_root / "reports"
    frame = pd.read_parquet(features_dir / "features.parquet")
    features_md5 = file_md5(features_dir / "features.parquet")
    feature_names = json.loads((features_dir / "feature_list.json").read_text())["features"]
    # The search sees only the bars before the first out-of-fold block (labels
    # that end inside it purged): the walk-forward judges the rest.
    first = folds_from_params(frame["timestamp"], walk_forward)[0]
    search_frame = None
    if search.n_trials > 0:
        search_frame, _ = purge_labels(frame.loc[first.train_mask(frame["timestamp"])],
                                       first.test_start)
    scorer = None
    if search.uses_cpcv:
        from tradingrl.envs.costs import ExecutionCosts
        from tradingrl.evaluation.cpcv_search import CPCVSearch

        costs = costs if costs is not None else load_params("train_agent", params_file)["costs"]
        scorer = CPCVSearch(search_frame, feature_names,
                            pd.read_parquet(repo_root / "data" / "validated" / "ohlcv.parquet"),
                            search.cpcv, env={"costs": ExecutionCosts(**costs)})

    tags = provenance_tags(repo_root, "data/features")
    code = code_hash("train_model")
    run_key = fingerprint({"train_model": params, "walk_forward": walk_forward},
                          tags["data_dvc_md5"], code)
    # CPCV trials also depend on the backtest costs: a study of their own.
    study_key = run_key if scorer is None else fingerprint(
        {"train_model": params, "walk_forward": walk_forward, "costs": costs},
        tags["data_dvc_md5"], code)
    checkpoint_root = repo_root / "models" / "cnn_lstm_checkpoints"
    storage = search.storage_url(workspace_root(repo_root) / "optuna.db")
    if not prepare_resumable(checkpoint_root, run_key) and search.n_trials > 0:
        # A clean start searches anew: trials an earlier run stored under this
        # study's name are not reused.
        drop_study(storage, f"cnn-lstm-{study_key}")
    # On a Dask task runner (pipelines.yaml, through the training flow) one
    # search worker per Dask worker process shares the study.
    runner = runner_from_env()
    workers = (runner.max_workers or 2) if runner and runner.kind == "dask" else 1
    if search.n_trials > 0 and workers > 1:
        print(f"train_model: Optuna search with {workers} workers on task runner dask")
    uri = tracking_uri(repo_root)
    experiment_id = use_experiment(repo_root, params["experiment"])
    with stage_run(repo_root, experiment_id, "train_model", tags) as run:
        mlflow.log_params(flat_params({"train_model": params}))
        log_data_inputs(repo_root, ["data/features", "data/validated"], "training")
        trained = train_trend_model(
            frame, feature_names, settings, search, search_frame=search_frame,
            first_block_start=first.test_start, checkpoint_root=checkpoint_root, run_key=run_key,
            storage=storage,
            study_name=f"cnn-lstm-{study_key}", scorer=scorer,
            on_trial=MlflowTrialLogger(uri, experiment_id, run.info.run_id, dict(tags)),
            member_logger=lambda member: MLFlowLogger(
                tracking_uri=uri, run_id=run.info.run_id,
                prefix=f"member{member}" if settings.ensemble_size > 1 else ""),
            workers=workers, runner=runner, progress_bar=params.get("progress_bar", True))
        del scorer, search_frame
        trained_to = frame["timestamp"].max().isoformat()
        del frame
        mlflow.log_dict(trained.datamodule.split_info, "split_info.json")
        report = {**trained.report(), "trained_to": trained_to, "mlflow_run_id": run.info.run_id}
        mlflow.log_params({f"final.{k}": v for k, v in trained.settings.model.items()})
        for name, values in report["metrics"].items():
            mlflow.log_metrics({f"val.{name}.{k}": v for k, v in values.items()
                                if isinstance(v, (int, float)) and v is not None})
        mlflow.log_metric("search.n_trials", len(report["search"]["trials"]))

        save_trend_model(out_dir, trained.models, trained.datamodule.scaler, trained.settings,
                         trained.scored["temperatures"], feature_names, report["split"],
                         served="final_refit", trained_to=trained_to)
        # What it was trained from, for promote's provenance check.
        config = json.loads((out_dir / "config.json").read_text())
        config["inputs_md5"] = {"data/features/features.parquet": features_md5}
        write_json(out_dir / "config.json", config)
        # The recipe the walk-forward's fold models are fitted with (predict_oof).
        write_json(repo_root / "models" / "recipe.json", report["recipe"])
        plots = reports / "model_plots"
        plots.mkdir(parents=True, exist_ok=True)
        save_diagnostic_plots(trained.scored["prediction"].probs, trained.scored["y"],
                              calibration_path=plots / "calibration.png",
                              confusion_path=plots / "confusion.png")
        mlflow.log_artifacts(str(plots), "plots")
        mlflow.log_artifacts(str(out_dir), "cnn_lstm")
        # The first member is the registered model (one tensor-in, tensor-out network).
        version = log_and_register(trained.models[0], trained.example_input(),
                                   name=TREND_MODEL, tags={
                                       **tags, "run_id": run.info.run_id, "served": "final_refit",
                                       "trained_to": trained_to,
                                       "calibration_failed": str(trained.calibration["failed"])})
        report["registered"] = {"name": TREND_MODEL, "version": version}
        write_json(reports / "model_metrics.json", report)
        log_to_parent(headline.write(repo_root, "train_model", report), "train_model")
        mlflow.log_artifact(str(reports / "model_metrics.json"))
    finish_resumable(checkpoint_root)

    net = report["metrics"]["cnn_lstm"]
    calibration = report["calibration"]
    print(f"train_model: final refit to {trained_to[:10]}, own-validation balanced accuracy "
          f"{net['balanced_accuracy']:.3f}, log loss {net['log_loss']:.3f}, beats baselines: "
          f"{report['beats_baselines']}; temperature "
          f"{', '.join(f'{t:.2f}' for t in calibration['temperatures'])}"
          f"{' (calibration FAILED: at a search bound)' if calibration['failed'] else ''}; "
          f"{TREND_MODEL} v{version} (experiment {experiment_id})")
    return report


if __name__ == "__main__":
    run_stage(main)
