"""Out-of-fold trend-model predictions: the CNN+LSTM's view of bars it never trained on.

The agent's state carries the CNN+LSTM's probabilities and confidence. If they
came from the model trained on the same bars, they would be far better than
anything the model can do live, and the agent would learn to trust them too
much. So every prediction the agent (and the evaluation) sees is made by a
model fitted strictly before the predicted block (walk-forward, see
:mod:`tradingrl.splits.walk_forward`):

- fold k's model is fitted on fold k's training span only, with the recipe
  the served model is refitted with (:func:`tradingrl.models.fit.fit_recipe`):
  the scaler on its training rows, early stopping on the last
  ``settings.val_fraction`` of that span, the temperature on that part's
  earlier half and the calibration scored on its later half;
- labels that end at or after the test block's first bar are purged before
  fitting (they were not known yet);
- it predicts every bar of block k; each window reads only bars <= its end
  (features are past-only), which may lie before the block.

This is stricter than cross-fitting (a model trained on later blocks would
know the future regime), and it is what a live system would have had.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.models.data import classes_from_labels
from tradingrl.models.fit import TrainSettings, fit_recipe
from tradingrl.models.metrics import classification_metrics
from tradingrl.models.predict import PREDICTION_COLUMNS, TrendModel
from tradingrl.resume import prepare_resumable
from tradingrl.splits.walk_forward import Fold
from tradingrl.stage import write_json


def fit_fold_model(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    settings: TrainSettings,
    fold: Fold,
    *,
    checkpoint_dir: Any = None,
) -> tuple[TrendModel, dict[str, Any]]:
    """Fold ``fold``'s trend model: :func:`tradingrl.models.fit.fit_recipe` (the
    recipe the served model is refitted with) on the fold's training span,
    labels purged against its test block. Returns the model and a summary of
    the fit, its calibration included."""

    train_rows = fold.train_mask(frame["timestamp"])
    if not train_rows.any():
        raise ValueError(f"fold {fold.index} has no training rows")
    fitted = fit_recipe(frame.loc[train_rows], feature_names, settings,
                        purge_from=fold.test_start, checkpoint_dir=checkpoint_dir)
    info = {
        "fold": fold.to_dict(),
        "labels_purged": fitted.labels_purged,
        "split": fitted.datamodule.split_info,
        "val_loss": fitted.val_losses,
        "temperatures": fitted.calibration["temperatures"],
        "calibration": fitted.calibration,
    }
    return fitted.trend, info


def predict_fold(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    settings: TrainSettings,
    fold: Fold,
    *,
    checkpoint_dir: Any = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit fold ``fold``'s model (:func:`fit_fold_model`) and predict every bar
    of its test block. ``frame`` is the whole feature table (sorted by symbol
    and time); windows of test bars read earlier rows of it as inputs.

    Returns (predictions, info): predictions has timestamp, symbol, fold and
    :data:`~tradingrl.models.predict.PREDICTION_COLUMNS`; test bars without a
    full window of history get none (info["rows_without_window"] counts them).
    """
    trend, info = fit_fold_model(frame, feature_names, settings, fold,
                                 checkpoint_dir=checkpoint_dir)
    test_rows = fold.test_mask(frame["timestamp"])
    predictions = trend.predict(frame, rows=test_rows)
    predictions.insert(2, "fold", np.int16(fold.index))
    info["rows_test"] = int(test_rows.sum())
    info["rows_predicted"] = len(predictions)
    info["rows_without_window"] = int(test_rows.sum()) - len(predictions)
    return predictions, info


def check_out_of_fold(predictions: pd.DataFrame, folds: Sequence[Fold]) -> None:
    """Raise unless every prediction lies in its own fold's test block and no
    (symbol, timestamp) is predicted twice."""
    by_index = {f.index: f for f in folds}
    ts = pd.DatetimeIndex(predictions["timestamp"]).tz_convert("UTC")
    for index, rows in predictions.groupby("fold").indices.items():
        fold = by_index.get(int(index))
        if fold is None:
            raise ValueError(f"predictions name fold {index}, which is not in the plan")
        inside = (ts[rows] >= fold.test_start) & (ts[rows] <= fold.test_end)
        if not inside.all():
            raise ValueError(f"fold {index} predicts bars outside its test block")
    if predictions.duplicated(["symbol", "timestamp"]).any():
        raise ValueError("a (symbol, timestamp) is predicted more than once")
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")


FOLD_TORCH_THREADS = 1  # every fold fits with one intra-op thread, serial or in parallel


def predict_fold_job(frame: pd.DataFrame, feature_names: Sequence[str],
                     settings: TrainSettings, fold: Fold, fold_dir: Path) -> None:
    """:func:`predict_fold` as a piece of work for another process: sets
    torch's intra-op threads to :data:`FOLD_TORCH_THREADS` (the same however
    the folds run, so their results are too), fits and predicts, and writes
    ``fold_dir/predictions.parquet`` and ``fold_dir/info.json`` (the latter
    last: a fold is finished when both exist)."""
    import torch

    torch.set_num_threads(FOLD_TORCH_THREADS)
    predictions, info = predict_fold(frame, feature_names, settings, fold,
                                     checkpoint_dir=fold_dir / "checkpoints")
    predictions.to_parquet(fold_dir / "predictions.parquet", index=False)
    write_json(fold_dir / "info.json", info)


def out_of_fold_predictions(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    settings: TrainSettings,
    folds: Sequence[Fold],
    *,
    checkpoint_root: Path,
    run_key: str,
    runner: Any = None,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every fold's :func:`predict_fold`, concatenated and checked
    (:func:`check_out_of_fold`). Fold k works in ``checkpoint_root/fold-<k>``,
    kept only when stamped ``run_key`` (see :func:`tradingrl.resume.prepare_resumable`):
    a fold finished there (predictions.parquet and info.json) is read back,
    marked ``resumed``, not refitted. The folds still to fit run as pieces of
    :func:`tradingrl.parallel.map_parallel` on ``runner`` (worker processes,
    Dask; None or ``threads``: one by one), with the same results.
    Returns (predictions, per-fold info)."""
    from tradingrl.parallel import map_parallel, worker_count

    dirs = {fold.index: checkpoint_root / f"fold-{fold.index}" for fold in folds}
    resumed = set()
    for fold in folds:
        prepare_resumable(dirs[fold.index], run_key)
        if all((dirs[fold.index] / name).is_file() for name in ("predictions.parquet",
                                                                "info.json")):
            resumed.add(fold.index)
    pending = [{"frame": frame, "feature_names": list(feature_names), "settings": settings,
                "fold": fold, "fold_dir": dirs[fold.index]}
               for fold in folds if fold.index not in resumed]
    workers = worker_count(runner, len(pending))
    if workers > 1:
        log(f"predict_oof: {len(pending)} folds on task runner {runner.kind}, {workers} workers")
    map_parallel(predict_fold_job, pending, settings=runner, name="fold")
    parts, infos = [], []
    for fold in folds:
        fold_dir = dirs[fold.index]
        predictions = pd.read_parquet(fold_dir / "predictions.parquet")
        info = json.loads((fold_dir / "info.json").read_text())
        if fold.index in resumed:
            info["resumed"] = True
        parts.append(predictions)
        infos.append(info)
        log(f"predict_oof: fold {fold.index} trained to {fold.train_end.date()}, predicted "
            f"{info['rows_predicted']} rows {fold.test_start.date()}..{fold.test_end.date()}")
    oof = pd.concat(parts, ignore_index=True)
    check_out_of_fold(oof, folds)
    return oof, infos


def oof_metrics(frame: pd.DataFrame, oof: pd.DataFrame) -> dict[str, Any]:
    """Classification metrics of the out-of-fold predictions on the rows of
    the feature table ``frame`` whose label matured."""

    joined = oof.merge(frame[["timestamp", "symbol", "label", "fwd_return"]],
                       on=["timestamp", "symbol"], how="left", validate="one_to_one")
    joined = joined[joined["label"].notna().to_numpy()]
    probs = joined[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    return classification_metrics(
        probs, classes_from_labels(joined["label"]), joined["expected_return"].to_numpy(),
        joined["fwd_return"].to_numpy())
