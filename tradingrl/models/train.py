"""The ``train_model`` stage's library call: the recipe's search and the served model's refit.

:func:`train_trend_model` strings together the Optuna search
(:mod:`tradingrl.models.search`, when ``n_trials > 0``; on the data before the
first out-of-fold block only) and the final refit on all data with
:func:`tradingrl.models.fit.fit_recipe`, the recipe every walk-forward fold
model is fitted with too (stage predict_oof reads it from recipe.json): the
served model is the judged procedure, refitted up to the last bar.
:func:`save_trend_model` writes the folder
:class:`tradingrl.models.predict.TrendModel` loads, the recipe with it. MLflow runs,
loggers and the trial logger arrive as arguments; nothing here reads params.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tradingrl.models.data import FeatureWindowDataModule
from tradingrl.models.fit import TrainSettings, build_datamodule, fit_recipe, recipe_record
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
    mode) of the final refit, the ``settings`` they were fitted with (the
    recipe: the search's best model kwargs merged in), their best validation
    losses, the scores of :func:`~tradingrl.models.fit.score_models`, the
    calibration report and the search summary."""

    models: list[Any]
    datamodule: FeatureWindowDataModule
    settings: TrainSettings
    val_losses: list[float]
    scored: dict[str, Any]
    calibration: dict[str, Any]
    search: dict[str, Any]

    def report(self) -> dict[str, Any]:
        """reports/model_metrics.json's body (the stage adds the run and version)."""
        scored = self.scored
        return {
            "served": "final_refit",
            "split": self.datamodule.split_info,
            "best_val_loss": self.val_losses,
            "temperatures": scored["temperatures"],
            "calibration": self.calibration,
            "windows_calibration": scored["windows_calibration"],
            "windows_scored": scored["windows_scored"],
            "scored_from": scored["scored_from"],
            "scores_are": ("the final refit's own validation span (the last val_fraction of "
                           "all data); the out-of-sample verdict is reports/oof_metrics.json"),
            "mc_passes": scored["mc_passes"],
            "metrics": scored["metrics"],
            "beats_baselines": scored["beats_baselines"],
            "search": self.search,
            "model": self.settings.model,
            "recipe": recipe_record(self.settings, self.search),
        }

    def example_input(self) -> np.ndarray:
        """One validation window, (1, window, features) float32: the
        registered model's input example."""
        return self.datamodule.val_dataset[0][0].numpy()[None, ...].astype(np.float32)


def check_search_span(last_bar: Any, first_block_start: Any) -> None:
    """Refuse a search whose holdout (ending at ``last_bar``) reaches the first
    out-of-fold block: its choice would be made on bars the walk-forward
    later judges."""
    import pandas as pd

    last = pd.Timestamp(last_bar)
    if last >= pd.Timestamp(first_block_start):
        raise ValueError(f"the hyperparameter search's holdout reaches {last.date()}, at or "
                         f"after the first out-of-fold block ({pd.Timestamp(first_block_start).date()}): "
                         "a search selects only on data before the blocks it is judged on")


def train_trend_model(
    frame: Any,
    feature_names: Sequence[str],
    settings: TrainSettings,
    search: SearchSettings,
    *,
    search_frame: Any,
    first_block_start: Any,
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
    """Search (``search.n_trials > 0``) on ``search_frame`` only (the feature
    rows before the first out-of-fold block, labels purged at it; a holdout
    reaching ``first_block_start`` is refused), ``scorer`` scoring CPCV
    trials, ``workers`` > 1 running that many search workers on ``runner``;
    then the final refit: :func:`~tradingrl.models.fit.fit_recipe` with the
    recipe (the settings, the search's best model kwargs merged in) on all of
    ``frame``, members checkpointed in ``checkpoint_root/member-<m>`` (kept
    only when stamped ``run_key``: a killed fit of the same inputs resumes),
    logged through ``member_logger(m)`` (a Lightning logger, or None)."""
    study = None
    search_span: dict[str, Any] | None = None
    if search.n_trials > 0:
        check_search_span(search_frame["timestamp"].max(), first_block_start)
        search_datamodule = build_datamodule(search_frame, feature_names, settings)
        search_span = dict(search_datamodule.split_info)
        search_kwargs = {
            "datamodule": search_datamodule, "settings": settings, "n_trials": search.n_trials,
            "storage": storage, "study_name": study_name, "timeout_s": search.timeout_s,
            "max_epochs": search.max_epochs, "on_trial": on_trial, "cv": search.cv,
            "cpcv": scorer}
        if workers > 1:
            best_model_params, study = search_in_parallel(search_kwargs, workers=workers,
                                                          runner=runner)
        else:
            best_model_params, study = search_hyperparameters(**search_kwargs)
        settings = TrainSettings(**{**asdict(settings), "model": best_model_params})
        del search_datamodule
    summary = {**search_summary(study, search.cv, search.cpcv), "span": search_span}

    for member in range(settings.ensemble_size):
        prepare_resumable(checkpoint_root / f"member-{member}", run_key)
    fitted = fit_recipe(frame, feature_names, settings, purge_from=None,
                        checkpoint_dir=checkpoint_root, member_logger=member_logger,
                        progress_bar=progress_bar)
    return TrainedTrendModel(models=fitted.trend.models, datamodule=fitted.datamodule,
                             settings=settings, val_losses=fitted.val_losses,
                             scored=fitted.scored, calibration=fitted.calibration,
                             search=summary)


def save_trend_model(out_dir: Path, models: Sequence[Any], scaler: Any, settings: TrainSettings,
                     temperatures: Sequence[float], feature_names: Sequence[str],
                     split: dict[str, Any], *, served: str = "final_refit",
                     trained_to: str | None = None) -> None:
    """The folder :meth:`tradingrl.models.predict.TrendModel.load` reads:
    ``model-<m>.pt`` per member (state dict and hyperparameters), the fitted
    ``scaler.json``, ``feature_list.json`` and ``config.json`` (window,
    ensemble size, MC passes, temperatures, model kwargs, the split, what the
    model is (``served``: "final_refit", the recipe refitted on all data) and
    the last bar it learned from (``trained_to``))."""
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
        "served": served,
        "trained_to": trained_to,
    })
