"""Fit, calibrate and score the CNN+LSTM on a feature table.

The pieces the ``train_model`` stage strings together, each testable alone:

- :class:`TrainSettings` (``from_params``: the ``train_model`` section);
- :func:`fit_model`: one Lightning fit with early stopping on ``val_loss``
  and checkpoints (``last.ckpt`` resumes a killed run), returning the best
  weights;
- :func:`score_models`: temperature on validation logits, MC-dropout /
  ensemble predictions, metrics, and the two baselines on the same windows.

The Optuna search over these fits is :mod:`tradingrl.models.search`.
Everything arrives as arguments (paths included); nothing reads params.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradingrl.models.baselines import logistic_regression_baseline, prior_baseline
from tradingrl.models.cnn_lstm import CNNLSTM
from tradingrl.models.data import IGNORE_INDEX, FeatureWindowDataModule, WindowDataset
from tradingrl.models.metrics import classification_metrics
from tradingrl.models.uncertainty import (
    TEMPERATURE_BOUNDS,
    collect_logits,
    fit_temperature,
    predict_dataset,
)


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
    min_calibration_windows: int = 1
    logreg_max_rows: int = 200_000

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainSettings:
        """From params.yaml's ``train_model`` section (its ``uncertainty`` and
        ``baselines`` subsections included; ``search`` and ``experiment`` are
        not training settings)."""
        uncertainty, baselines = params["uncertainty"], params["baselines"]
        return cls(
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
            min_calibration_windows=uncertainty["min_calibration_windows"],
            logreg_max_rows=baselines["logreg_max_rows"],
        )


def recipe_record(settings: TrainSettings, search: dict[str, Any]) -> dict[str, Any]:
    """The recipe as recipe.json holds it: every training setting (the
    model kwargs as the search left them) and where the model kwargs came
    from. :func:`settings_from_recipe` reads it back."""
    return {"settings": asdict(settings),
            "model_from": ("optuna search on the span before the first out-of-fold block"
                           if search.get("n_trials") else "params.yaml train_model.model")}


def settings_from_recipe(recipe: dict[str, Any]) -> TrainSettings:
    """The :class:`TrainSettings` a recipe.json holds."""
    return TrainSettings(**recipe["settings"])


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


def calibration_report(scored: Mapping[str, Any], min_windows: int) -> dict[str, Any]:
    """How the calibration of :func:`score_models` went: each member's
    temperature, whether it stopped at a search bound (a failed calibration),
    the calibration and scored window counts, and the ECE and log loss of
    the calibrated prediction on the scored (held-out) windows. ValueError
    when fewer than ``min_windows`` windows calibrate: a temperature fit on
    a handful of bars is noise."""
    if scored["windows_calibration"] < min_windows:
        raise ValueError(
            f"{scored['windows_calibration']} calibration windows, fewer than the "
            f"{min_windows} train_model.uncertainty.min_calibration_windows asks for: "
            "give the model more data or a larger val_fraction")
    lo, hi = TEMPERATURE_BOUNDS
    at_bound = [bool(t <= lo * 1.001 or t >= hi * 0.999) for t in scored["temperatures"]]
    net = scored["metrics"]["cnn_lstm"]
    return {"temperatures": [float(t) for t in scored["temperatures"]],
            "at_bound": at_bound, "failed": any(at_bound),
            "windows_calibration": int(scored["windows_calibration"]),
            "windows_scored": int(scored["windows_scored"]),
            "ece": net.get("ece"), "log_loss": net.get("log_loss"),
            "mean_confidence": scored["mean_confidence_mc"]}


@dataclass
class FittedRecipe:
    """What :func:`fit_recipe` produced: the ``trend`` model (members, scaler,
    temperatures), its ``datamodule`` (split and windows), the members'
    validation losses, :func:`score_models`' result and the calibration
    report."""

    trend: Any
    datamodule: FeatureWindowDataModule
    val_losses: list[float]
    scored: dict[str, Any]
    calibration: dict[str, Any]
    labels_purged: int


def fit_recipe(
    frame,
    feature_names,
    settings: TrainSettings,
    *,
    purge_from: Any = None,
    checkpoint_dir: Path | None = None,
    member_logger: Any = None,
    progress_bar: bool = False,
) -> FittedRecipe:
    """The one way a trend model is made, for a walk-forward fold and for the
    served model alike: labels ending at or after ``purge_from`` are dropped
    (a fold's test start; None for the final refit on all data); the scaler
    is fit on the training part of the purged chronological split; every
    ensemble member is fit with early stopping on the validation part
    (seeds ``settings.seed + m``, checkpoints in ``checkpoint_dir/member-<m>``);
    the temperatures are fit on the validation part's earlier half and the
    prediction is scored on its later half (:func:`score_models`,
    :func:`calibration_report`; fewer than ``settings.min_calibration_windows``
    calibration windows is a ValueError)."""
    from tradingrl.models.predict import TrendModel
    from tradingrl.splits.walk_forward import purge_labels

    n_purged = 0
    if purge_from is not None:
        frame, n_purged = purge_labels(frame, purge_from)
    datamodule = build_datamodule(frame, feature_names, settings)
    del frame
    models, val_losses = [], []
    for member in range(settings.ensemble_size):
        member_dir = None if checkpoint_dir is None else Path(checkpoint_dir) / f"member-{member}"
        if member_dir is not None:
            member_dir.mkdir(parents=True, exist_ok=True)
        model, val_loss, _ = fit_model(
            datamodule, settings, seed=settings.seed + member, checkpoint_dir=member_dir,
            logger=member_logger(member) if member_logger is not None else False,
            progress_bar=progress_bar)
        models.append(model)
        val_losses.append(float(val_loss))
    scored = score_models(models, datamodule, settings)
    trend = TrendModel(models=models, scaler=datamodule.scaler, feature_names=list(feature_names),
                       window=settings.window, temperatures=list(scored["temperatures"]),
                       mc_samples=settings.mc_samples, seed=settings.seed)
    return FittedRecipe(trend=trend, datamodule=datamodule, val_losses=val_losses, scored=scored,
                        calibration=calibration_report(scored, settings.min_calibration_windows),
                        labels_purged=int(n_purged))
