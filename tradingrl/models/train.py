"""Fit, calibrate and score the CNN+LSTM on a feature table.

The pieces the ``train_model`` stage strings together, each testable alone:

- :func:`fit_model`: one Lightning fit with early stopping on ``val_loss``
  and checkpoints (``last.ckpt`` resumes a killed run), returning the best
  weights;
- :func:`score_models`: temperature on validation logits, MC-dropout /
  ensemble predictions, metrics, and the two baselines on the same windows;
- :func:`search_hyperparameters`: an Optuna TPE study with Lightning pruning.

Everything arrives as arguments (paths included); nothing reads params.yaml.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradingrl.models.data import IGNORE_INDEX, FeatureWindowDataModule


@dataclass(frozen=True)
class TrainSettings:
    """Training knobs (bars, epochs, batches); ``model`` holds CNNLSTM kwargs."""

    window: int = 60
    val_fraction: float = 0.2
    batch_size: int = 256
    max_epochs: int = 8
    patience: int = 3
    limit_train_batches: float | int = 1.0
    seed: int = 42
    model: dict[str, Any] = field(default_factory=dict)
    mc_samples: int = 20
    ensemble_size: int = 1
    temperature_scaling: bool = True
    logreg_max_rows: int = 200_000


def build_datamodule(frame, feature_names, settings: TrainSettings) -> FeatureWindowDataModule:
    datamodule = FeatureWindowDataModule(
        frame,
        feature_names,
        window=settings.window,
        val_fraction=settings.val_fraction,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    # Bar times of every row (UTC, naive datetime64) to order windows in time.
    datamodule.row_times = frame["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    datamodule.setup("fit")
    return datamodule


def _fit(
    datamodule: FeatureWindowDataModule,
    settings: TrainSettings,
    *,
    seed: int,
    checkpoint_dir: Path,
    resume: bool = True,
    logger: Any = False,
    callbacks: list[Any] | None = None,
    max_epochs: int | None = None,
    progress_bar: bool = True,
):
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

    from tradingrl.models.cnn_lstm import CNNLSTM

    L.seed_everything(seed, workers=True)
    model = CNNLSTM(
        n_features=len(datamodule.feature_names),
        class_weights=datamodule.class_weights(),
        **settings.model,
    )
    all_callbacks: list[Any] = [
        EarlyStopping(monitor="val_loss", mode="min", patience=settings.patience),
        *(callbacks or []),
    ]
    best = ModelCheckpoint(
        dirpath=checkpoint_dir, filename="best", monitor="val_loss", mode="min", save_last=True
    )
    all_callbacks.append(best)
    if progress_bar:
        all_callbacks.append(RichProgressBar())
    trainer = L.Trainer(
        max_epochs=max_epochs or settings.max_epochs,
        accelerator="auto",
        devices=1,
        deterministic=True,
        logger=logger,
        callbacks=all_callbacks,
        limit_train_batches=settings.limit_train_batches,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        enable_checkpointing=True,
        default_root_dir=str(checkpoint_dir),
    )
    last = checkpoint_dir / "last.ckpt"
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if resume and last.is_file() else None)
    if best.best_model_path:
        model = CNNLSTM.load_from_checkpoint(best.best_model_path, map_location="cpu")
    model.eval()
    score = best.best_model_score
    return model, (float(score) if score is not None else float("nan")), trainer.current_epoch


def fit_model(datamodule, settings: TrainSettings, *, checkpoint_dir: Path | None = None, **kwargs):
    """Train one CNNLSTM; return (best model in eval mode, best val_loss,
    epochs run). With ``checkpoint_dir`` a ``last.ckpt`` there is resumed
    (the caller deletes it when the inputs changed); without, checkpoints go
    to a temporary folder that is removed afterwards."""
    if checkpoint_dir is not None:
        return _fit(datamodule, settings, checkpoint_dir=checkpoint_dir, **kwargs)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tradingrl-ckpt-") as scratch:
        return _fit(datamodule, settings, checkpoint_dir=Path(scratch), resume=False, **kwargs)


def score_models(
    models: list,
    datamodule: FeatureWindowDataModule,
    settings: TrainSettings,
) -> dict[str, Any]:
    """Validation metrics of the network (MC dropout, ensemble, temperature)
    and of the baselines, on the same validation windows.

    The validation span is cut in two by window end time: the temperature is
    fit on the earlier half ("calibration") and every metric is computed on
    the later half ("scored"), so calibration is not graded on the data it
    was fit to. Early stopping did see the whole validation span."""
    from tradingrl.models.baselines import logistic_regression_baseline, prior_baseline
    from tradingrl.models.data import WindowDataset
    from tradingrl.models.metrics import classification_metrics
    from tradingrl.models.uncertainty import collect_logits, fit_temperature, predict_dataset

    whole = datamodule.val_dataset
    train = datamodule.train_dataset
    end_times = datamodule.row_times[whole.ends]
    middle = np.sort(end_times)[len(end_times) // 2]
    calibration_ends, scored_ends = whole.ends[end_times < middle], whole.ends[end_times >= middle]
    if calibration_ends.size == 0 or scored_ends.size == 0:
        raise ValueError("validation span too short to split into calibration and scored halves")

    def windows(ends: np.ndarray) -> WindowDataset:
        return WindowDataset(whole.features, whole.targets, whole.returns, ends, whole.window)

    calibration, val = windows(calibration_ends), windows(scored_ends)
    mc = settings.mc_samples > 1 and any(m.hparams.dropout > 0 for m in models)
    samples = settings.mc_samples if mc else 1
    temperatures = [1.0] * len(models)
    if settings.temperature_scaling:
        # Fit T to the same kind of prediction it will scale (MC-averaged when MC is on).
        temperatures = [
            fit_temperature(*collect_logits(m, calibration, mc_samples=samples if mc else 0,
                                            seed=settings.seed))
            for m in models
        ]
    result = predict_dataset(
        models, val, samples=samples, mc_dropout=mc, temperature=temperatures, seed=settings.seed,
    )
    pred, y, realised = result.prediction, result.y, result.realised_return
    uncalibrated = predict_dataset(models, val, samples=1, mc_dropout=False, temperature=1.0)

    # Baselines see the last bar of the same windows, scaled the same way.
    def last_bars(dataset) -> tuple[np.ndarray, np.ndarray]:
        return dataset.features[dataset.ends], dataset.targets[dataset.ends]

    x_train, y_train = last_bars(train)
    x_val, y_val = last_bars(val)
    keep = y_train != IGNORE_INDEX
    prior = prior_baseline(y_train[keep], len(y_val))
    logreg = logistic_regression_baseline(
        x_train[keep], y_train[keep], x_val,
        max_train_rows=settings.logreg_max_rows, seed=settings.seed,
    )
    realised_val = val.returns[val.ends]
    if not np.array_equal(y_val, y):  # the loader must keep dataset order
        raise AssertionError("validation predictions are not aligned with their windows")
    metrics = {
        "cnn_lstm": classification_metrics(pred.probs, y, pred.expected_return, realised),
        "cnn_lstm_uncalibrated": classification_metrics(
            uncalibrated.prediction.probs, y, uncalibrated.prediction.expected_return, realised
        ),
        "baseline_prior": classification_metrics(prior.probs, y_val, prior.score, realised_val),
        "baseline_logreg": classification_metrics(logreg.probs, y_val, logreg.score, realised_val),
    }
    net, best_baseline = metrics["cnn_lstm"], max(
        ("baseline_prior", "baseline_logreg"), key=lambda k: metrics[k]["balanced_accuracy"]
    )
    return {
        "metrics": metrics,
        "windows_calibration": int(calibration_ends.size),
        "windows_scored": int(scored_ends.size),
        "scored_from": str(middle),
        "temperatures": temperatures,
        "mc_passes": pred.n_passes,
        "mean_confidence_mc": float(np.mean(pred.confidence)),
        "beats_baselines": {
            "balanced_accuracy": net["balanced_accuracy"] > metrics[best_baseline]["balanced_accuracy"],
            "log_loss": net["log_loss"] < min(
                metrics["baseline_prior"]["log_loss"], metrics["baseline_logreg"]["log_loss"]
            ),
        },
        "prediction": pred,
        "y": y,
    }


def search_hyperparameters(
    datamodule: FeatureWindowDataModule,
    settings: TrainSettings,
    *,
    n_trials: int,
    storage: str,
    study_name: str,
    timeout_s: float | None = None,
    max_epochs: int = 3,
    on_trial: Callable[..., None] | None = None,
    cv: str = "holdout",
    cpcv: Any = None,
    worker: int = 0,
) -> tuple[dict[str, Any], Any]:
    """Optuna TPE search of the model's sizes and rates, minimising one of
    two scores (``cv``):

    - ``"holdout"``: val_loss of one fit on ``datamodule``'s purged
      chronological split, with median pruning through Lightning (per epoch);
      ``on_trial(trial, params, val_loss)`` after each completed trial.
    - ``"cpcv"``: mean test log loss over the combinatorial purged CV splits
      of ``cpcv`` (a :class:`tradingrl.models.cpcv_search.CPCVSearch`; one
      fit per split, ``datamodule`` unused), median pruning on the running
      mean after each split. The path Sharpe ratios' mean/std/min/max, the
      paths' Sharpe ratios and n_paths are stored as the trial's user
      attributes (:data:`tradingrl.models.cpcv_search.USER_ATTRS`), and
      ``on_trial(trial, params, value, summary)`` gets the whole CPCV summary.

    The study lives in ``storage`` (an RDB URL: SQLite by default,
    PostgreSQL for several workers) and is resumed when it exists. Several
    processes may run this on one study at once, each with its own ``worker``
    number: ``n_trials`` is the study's total (finished trials of every
    worker count; a worker stops when the total is reached, so the study may
    end up to one trial per worker over it), each worker's sampler draws from
    its own seed (``settings.seed`` + 7919 * worker: the same seed would
    propose the same first configurations in every worker), and every trial
    records its ``worker`` (number, host, pid) as a user attribute. Returns
    (best model kwargs merged over settings.model, study)."""
    import optuna

    from tradingrl.models.cpcv_search import check_cv

    check_cv(cv)
    if cv == "cpcv" and cpcv is None:
        raise ValueError("cv='cpcv' needs cpcv= (a tradingrl.models.cpcv_search.CPCVSearch)")

    if isinstance(worker, bool) or not isinstance(worker, int) or worker < 0:
        raise ValueError(f"worker must be an int >= 0, got {worker!r}")
    worker_id = f"{worker}:{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id)
        params = {
            "conv_channels": trial.suggest_categorical("conv_channels", [16, 32, 64]),
            "conv_kernel_size": trial.suggest_categorical("conv_kernel_size", [3, 5, 7]),
            "lstm_hidden": trial.suggest_categorical("lstm_hidden", [32, 64, 128]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        }
        trial_settings = TrainSettings(**{**asdict(settings), "model": {**settings.model, **params}})
        if cv == "cpcv":
            return _cpcv_objective(trial, params, trial_settings, cpcv, settings.seed + trial.number,
                                   max_epochs, on_trial)
        from optuna_integration import PyTorchLightningPruningCallback

        _, val_loss, _ = fit_model(
            datamodule, trial_settings, seed=settings.seed + trial.number,
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_loss")],
            max_epochs=max_epochs, progress_bar=False,
        )
        if on_trial is not None:
            on_trial(trial, params, val_loss)
        return val_loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed + 7919 * worker),
        pruner=optuna.pruners.MedianPruner(n_warmup_steps=1),
        load_if_exists=True,
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                optuna.trial.TrialState.FAIL)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if n_trials > done:
        study.optimize(objective, n_trials=n_trials - done, timeout=timeout_s,
                       callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=finished)])
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return dict(settings.model), study
    return {**settings.model, **study.best_params}, study


def _cpcv_objective(trial: Any, params: dict[str, Any], settings: TrainSettings, cpcv: Any,
                    seed: int, max_epochs: int,
                    on_trial: Callable[..., None] | None) -> float:
    from tradingrl.models.cpcv_search import user_attrs_of

    value, summary = cpcv.evaluate(settings, seed=seed, max_epochs=max_epochs, trial=trial)
    for name, attr in user_attrs_of(summary).items():
        trial.set_user_attr(name, attr)
    if on_trial is not None:
        on_trial(trial, params, value, summary)
    return value


def search_summary(study: Any, cv: str = "holdout", cpcv: Any = None) -> dict[str, Any]:
    """The "search" section of reports/model_metrics.json: n_trials, cv, the
    CPCV layout (``cpcv``: CPCVSettings, with cv "cpcv") and per trial its
    number, state, value and params, plus with CPCV its path Sharpe summary
    read back from the trial's user attributes
    (:func:`tradingrl.models.cpcv_search.trial_cpcv_record`)."""
    from tradingrl.models.cpcv_search import check_cv, trial_cpcv_record

    check_cv(cv)
    trials = []
    for t in study.trials if study is not None else []:
        record = {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
        if cv == "cpcv":
            record["cpcv"] = trial_cpcv_record(t.user_attrs)
        trials.append(record)
    out: dict[str, Any] = {"n_trials": len(trials), "cv": cv}
    if cv == "cpcv" and cpcv is not None:
        out["cpcv"] = asdict(cpcv)
    out["trials"] = trials
    return out


@dataclass(frozen=True)
class MlflowTrialLogger:
    """``on_trial`` callback of :func:`search_hyperparameters`: one MLflow run
    per finished trial, a child of ``parent_run_id`` (through the
    ``mlflow.parentRunId`` tag, so it works from any process: a search worker
    on another machine or a Dask worker logs into the same parent run)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str] = field(default_factory=dict)

    def __call__(self, trial: Any, params: dict[str, Any], value: float,
                 cpcv_summary: dict[str, Any] | None = None) -> None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        run = client.create_run(self.experiment_id, run_name=f"trial-{trial.number}",
                                tags={**self.tags, "mlflow.parentRunId": self.parent_run_id,
                                      "optuna.worker": str(trial.user_attrs.get("worker", ""))})
        run_id = run.info.run_id
        try:
            for key, param in params.items():
                client.log_param(run_id, key, param)
            if cpcv_summary is None:
                client.log_metric(run_id, "val_loss", value)
            else:
                from tradingrl.models.cpcv_search import log_cpcv_trial

                log_cpcv_trial(client, run_id, value, cpcv_summary)
        finally:
            client.set_terminated(run_id)


def search_in_parallel(search_kwargs: dict[str, Any], *, workers: int,
                       runner: Any | None) -> tuple[dict[str, Any], Any]:
    """:func:`search_hyperparameters` with ``workers`` worker processes on one
    study (``search_kwargs`` holds its arguments, without ``worker``): the
    study is created first (two processes creating a fresh database race on
    its schema), the workers run as pieces of :func:`tradingrl.parallel.map_parallel`
    on ``runner`` (on Dask: in parallel; otherwise one after another, each
    stopping at the study's ``n_trials``), then the study's best is returned
    as by :func:`search_hyperparameters`."""
    import optuna

    from tradingrl.parallel import map_parallel

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    optuna.create_study(storage=search_kwargs["storage"], study_name=search_kwargs["study_name"],
                        direction="minimize", load_if_exists=True)
    map_parallel(search_worker, [{**search_kwargs, "worker": k} for k in range(workers)],
                 settings=runner, name="optuna-worker")
    return search_hyperparameters(**{**search_kwargs, "worker": 0})


def search_worker(**kwargs: Any) -> int:
    """One search worker (a piece for another process): runs
    :func:`search_hyperparameters` and returns how many trials the study has
    finished (the study object itself stays behind: it holds a database
    connection)."""
    _, study = search_hyperparameters(**kwargs)
    return len([t for t in study.trials if t.state.is_finished()])
