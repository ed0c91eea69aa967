"""The ``train_model`` stage's library call: search, fit, calibrate and score the CNN+LSTM.

:func:`train_trend_model` strings together the Optuna search
(:mod:`tradingrl.models.search`, when ``n_trials > 0``), the fit of every
ensemble member (:func:`tradingrl.models.fit.fit_model`, resumable from its
checkpoint folder) and the scoring against the baselines
(:func:`tradingrl.models.fit.score_models`); :func:`save_trend_model` writes
the folder :class:`tradingrl.models.predict.TrendModel` loads. MLflow runs,
loggers and the trial logger arrive as arguments; nothing here reads params.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tradingrl.models.data import FeatureWindowDataModule
from tradingrl.models.fit import TrainSettings, fit_model, score_models
from tradingrl.models.search import (
    SearchSettings,
    TrialScorer,
    search_hyperparameters,
    search_in_parallel,
    search_summary,
)
from tradingrl.resume import prepare_resumable
from tradingrl.stage import write_json


@dataclass
class TrainedTrendModel:
    """The outcome of :func:`train_trend_model`: the ensemble ``models`` (eval
    mode), the ``settings`` they were fitted with (the search's best model
    kwargs merged in), their best validation losses, the scores of
    :func:`~tradingrl.models.fit.score_models` and the search summary."""

    models: list[Any]
    datamodule: FeatureWindowDataModule
    settings: TrainSettings
    val_losses: list[float]
    scored: dict[str, Any]
    search: dict[str, Any]

    def report(self) -> dict[str, Any]:
        """reports/model_metrics.json's body (the stage adds the run and version)."""
        scored = self.scored
        return {
            "split": self.datamodule.split_info,
            "best_val_loss": self.val_losses,
            "temperatures": scored["temperatures"],
            "windows_calibration": scored["windows_calibration"],
            "windows_scored": scored["windows_scored"],
            "scored_from": scored["scored_from"],
            "mc_passes": scored["mc_passes"],
            "metrics": scored["metrics"],
            "beats_baselines": scored["beats_baselines"],
            "search": self.search,
            "model": self.settings.model,
        }

    def example_input(self) -> np.ndarray:
        """One validation window, (1, window, features) float32: the
        registered model's input example."""
        return self.datamodule.val_dataset[0][0].numpy()[None, ...].astype(np.float32)


def train_trend_model(
    datamodule: FeatureWindowDataModule,
    settings: TrainSettings,
    search: SearchSettings,
    *,
    checkpoint_root: Path,
    run_key: str,
    storage: str,
    study_name: str,
    scorer: TrialScorer | None = None,
    on_trial: Callable[..., None] | None = None,
    member_logger: Callable[[int], Any] | None = None,
    workers: int = 1,
    runner: Any | None = None,
    progress_bar: bool = True,
) -> TrainedTrendModel:
    """Search (``search.n_trials > 0``; ``scorer`` scores CPCV trials,
    ``workers`` > 1 runs that many search workers on ``runner``), then fit
    ``settings.ensemble_size`` members, member m seeded ``settings.seed + m``
    with checkpoints in ``checkpoint_root/member-<m>`` (kept only when stamped
    ``run_key``: a killed fit of the same inputs resumes), logged through
    ``member_logger(m)`` (a Lightning logger, or None), and score them."""
    study = None
    if search.n_trials > 0:
        search_kwargs = {
            "datamodule": datamodule, "settings": settings, "n_trials": search.n_trials,
            "storage": storage, "study_name": study_name, "timeout_s": search.timeout_s,
            "max_epochs": search.max_epochs, "on_trial": on_trial, "cv": search.cv,
            "cpcv": scorer}
        if workers > 1:
            best_model_params, study = search_in_parallel(search_kwargs, workers=workers,
                                                          runner=runner)
        else:
            best_model_params, study = search_hyperparameters(**search_kwargs)
        settings = TrainSettings(**{**asdict(settings), "model": best_model_params})
    summary = search_summary(study, search.cv, search.cpcv)

    models, val_losses = [], []
    for member in range(settings.ensemble_size):
        checkpoint_dir = checkpoint_root / f"member-{member}"
        prepare_resumable(checkpoint_dir, run_key)
        model, val_loss, _ = fit_model(
            datamodule, settings, seed=settings.seed + member, checkpoint_dir=checkpoint_dir,
            logger=member_logger(member) if member_logger is not None else False,
            progress_bar=progress_bar)
        models.append(model)
        val_losses.append(val_loss)
    return TrainedTrendModel(models=models, datamodule=datamodule, settings=settings,
                             val_losses=val_losses,
                             scored=score_models(models, datamodule, settings), search=summary)


def save_trend_model(out_dir: Path, models: Sequence[Any], scaler: Any, settings: TrainSettings,
                     temperatures: Sequence[float], feature_names: Sequence[str],
                     split: dict[str, Any]) -> None:
    """The folder :meth:`tradingrl.models.predict.TrendModel.load` reads:
    ``model-<m>.pt`` per member (state dict and hyperparameters), the fitted
    ``scaler.json``, ``feature_list.json`` and ``config.json`` (window,
    ensemble size, MC passes, temperatures, model kwargs, the split)."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    for member, model in enumerate(models):
        torch.save({"state_dict": model.state_dict(), "hparams": dict(model.hparams)},
                   out_dir / f"model-{member}.pt")
    scaler.save(out_dir / "scaler.json")
    write_json(out_dir / "feature_list.json", {"features": list(feature_names)})
    write_json(out_dir / "config.json", {
        "window": settings.window,
        "ensemble_size": len(models),
        "mc_samples": settings.mc_samples,
        "temperatures": list(temperatures),
        "model": settings.model,
        "split": split,
    })
