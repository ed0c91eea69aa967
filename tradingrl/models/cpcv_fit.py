"""Fit one CNN+LSTM on the training rows of one CPCV split (the fitting half
of :mod:`tradingrl.evaluation.cpcv_search`).

Labels of every row outside the split's train mask are removed before
anything is fitted (:class:`SplitWindowDataModule`), so a label from a test
group, or from its purge or embargo zone, is never seen. The split's
training rows are cut in time: the last ``settings.val_fraction`` of their
distinct timestamps validate (early stopping, temperature), the earlier ones
fit, purged against the validation part; the feature scaler is fit on the
fitting rows only. Training windows read earlier feature rows as inputs,
test groups' included (features are past-only; labels never).

Torch and Lightning are imported inside the functions (the datamodule class
is built on first use).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tradingrl.models.fit import TrainSettings


@functools.cache
def _split_datamodule_class() -> type:
    """:class:`SplitWindowDataModule`, built on first use so that importing
    this module does not import torch and Lightning."""
    from tradingrl.models.data import (
        IGNORE_INDEX,
        FeatureScaler,
        FeatureWindowDataModule,
        WindowDataset,
        check_frame_order,
        classes_from_labels,
        purged_chronological_split,
        window_end_indices,
    )

    class SplitWindowDataModule(FeatureWindowDataModule):
        """A :class:`~tradingrl.models.data.FeatureWindowDataModule` for one
        CPCV split: only the labels of ``train_rows`` exist in it (every other
        row's target is -100 and its forward return NaN); the validation part
        is the last ``val_fraction`` of the distinct timestamps of those rows,
        the fitting part the earlier ones whose label ends before it (purged);
        the scaler is fit on the fitting rows. Windows read any earlier rows
        of their symbol as inputs (features only). ``split_info`` adds
        "rows_labelled" (= train_rows) and "rows_fit"."""

        def __init__(self, frame: pd.DataFrame, feature_names: Sequence[str],
                     train_rows: np.ndarray, **kwargs: Any) -> None:
            super().__init__(frame, feature_names, **kwargs)
            self.train_rows = np.asarray(train_rows, dtype=bool)
            if self.train_rows.shape != (len(frame),):
                raise ValueError(f"train_rows has shape {self.train_rows.shape}, expected "
                                 f"({len(frame)},)")

        def setup(self, stage: str | None = None) -> None:
            if self.train_dataset is not None:
                return
            frame = self.frame
            if frame is None:
                raise RuntimeError("no frame to set up from")
            codes = check_frame_order(frame)
            keep = self.train_rows
            # Labels outside the split's train mask are removed here, before
            # the split, the scaler or any window is made.
            targets = classes_from_labels(frame["label"])
            if not np.array_equal(targets != IGNORE_INDEX, frame["t1"].notna().to_numpy()):
                raise ValueError("label and t1 must be missing on the same rows")
            if (keep & (targets == IGNORE_INDEX)).any():
                raise ValueError("train_rows include unlabelled rows")
            targets[~keep] = IGNORE_INDEX
            returns = frame["fwd_return"].to_numpy(dtype=np.float32, copy=True)
            returns[~keep] = np.nan
            rows = np.flatnonzero(keep)
            if rows.size == 0:
                raise ValueError("the split has no training rows")
            fit_part, val_part, info = purged_chronological_split(
                frame["timestamp"].to_numpy()[rows], frame["t1"].to_numpy()[rows],
                val_fraction=self.val_fraction, embargo_bars=self.embargo_bars,
            )
            fit_rows = np.zeros(len(frame), dtype=bool)
            fit_rows[rows[fit_part]] = True
            val_rows = np.zeros(len(frame), dtype=bool)
            val_rows[rows[val_part]] = True
            self.scaler = FeatureScaler.fit(frame, self.feature_names, rows=fit_rows)
            features = self.scaler.transform(frame)
            train_ends = window_end_indices(codes, fit_rows, self.window)
            val_ends = window_end_indices(codes, val_rows, self.window)
            if train_ends.size == 0 or val_ends.size == 0:
                raise ValueError(
                    f"{train_ends.size} training and {val_ends.size} validation windows of "
                    f"{self.window} bars: too little data in this CPCV split"
                )
            self.train_dataset = WindowDataset(features, targets, returns, train_ends, self.window)
            self.val_dataset = WindowDataset(features, targets, returns, val_ends, self.window)
            self.split_info = {
                **info,
                "window": self.window,
                "rows_labelled": int(keep.sum()),
                "rows_fit": int(fit_rows.sum()),
                "rows_scaler_fit": self.scaler.n_rows,
                "windows_train": int(train_ends.size),
                "windows_val": int(val_ends.size),
            }
            self._symbol_codes = codes
            self.frame = None

    return SplitWindowDataModule


def split_datamodule(frame: pd.DataFrame, feature_names: Sequence[str], train_rows: np.ndarray,
                     settings: TrainSettings) -> Any:
    """A set-up :class:`SplitWindowDataModule` for one split's train mask
    (window, validation share, batch size and seed from ``settings``)."""
    datamodule = _split_datamodule_class()(
        frame, feature_names, train_rows, window=settings.window,
        val_fraction=settings.val_fraction, batch_size=settings.batch_size, seed=settings.seed,
    )
    datamodule.setup("fit")
    return datamodule


def fit_split_model(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    settings: TrainSettings,
    train_rows: np.ndarray,
    *,
    seed: int,
    max_epochs: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit one CNN+LSTM on a split's training rows (see the module docstring).
    Returns (a :class:`~tradingrl.models.predict.TrendModel` with one member,
    deterministic passes and the fitted temperature, fit summary)."""
    from tradingrl.models.fit import fit_model
    from tradingrl.models.predict import TrendModel
    from tradingrl.models.uncertainty import collect_logits, fit_temperature

    datamodule = split_datamodule(frame, feature_names, train_rows, settings)
    model, val_loss, epochs = fit_model(datamodule, settings, seed=seed, max_epochs=max_epochs,
                                        progress_bar=False)
    temperature = 1.0
    if settings.temperature_scaling:
        temperature = fit_temperature(*collect_logits(model, datamodule.val_dataset, seed=seed))
    trend = TrendModel(models=[model], scaler=datamodule.scaler,
                       feature_names=list(feature_names), window=settings.window,
                       temperatures=[float(temperature)], mc_samples=1, seed=seed)
    info = {**datamodule.split_info, "val_loss": float(val_loss), "epochs": int(epochs),
            "temperature": float(temperature)}
    return trend, info
