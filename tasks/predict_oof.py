"""Stage predict_oof: data/features -> data/predictions (out-of-fold CNN+LSTM predictions).

Walk-forward folds from the ``walk_forward`` params; fold k's CNN+LSTM is
fitted on its training span only (the ``train_model`` settings and
hyperparameters of params.yaml, not an Optuna result: the search validates on
the last part of the data, which later folds predict) and predicts its test
block. See :mod:`tradingrl.models.oof`.

Outputs: data/predictions/oof.parquet (timestamp, symbol, fold, prediction
columns), data/predictions/folds.json (the plan and each fold's fit), and
reports/oof_metrics.json (classification metrics of the out-of-fold
predictions against the labels that matured). A killed run resumes: each
finished fold is kept in models/oof_checkpoints/fold-<k> with a fingerprint of
the params and data, and is not refitted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tasks._common import (
    REPO_ROOT,
    file_md5,
    fingerprint,
    load_params,
    prepare_resumable,
    run_stage,
    write_json,
)
from tasks.train_model import settings_from_params
from tradingrl.evaluation.walk_forward import walk_forward_folds

FEATURES = REPO_ROOT / "data" / "features"
# The train_model params the fold models use (declared in dvc.yaml; the
# search and experiment keys do not affect this stage).
TRAIN_KEYS = ("window", "val_fraction", "batch_size", "max_epochs", "patience",
              "limit_train_batches", "seed", "model", "uncertainty")


def folds_from_params(timestamps: Any, params: dict[str, Any]) -> list:
    return walk_forward_folds(
        timestamps,
        initial_fraction=params["initial_fraction"],
        n_folds=params["n_folds"],
        mode=params["mode"],
        train_timestamps=params.get("train_timestamps"),
        embargo_timestamps=params.get("embargo_timestamps", 0),
    )


def main(
    params: dict[str, Any] | None = None,
    train_params: dict[str, Any] | None = None,
    features_dir: Path = FEATURES,
    out_dir: Path = REPO_ROOT / "data" / "predictions",
    checkpoint_root: Path = REPO_ROOT / "models" / "oof_checkpoints",
    reports_dir: Path = REPO_ROOT / "reports",
    repo_root: Path = REPO_ROOT,
) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults)."""
    from tradingrl.models.oof import check_out_of_fold, predict_fold

    params = params if params is not None else load_params("walk_forward")
    train_params = train_params if train_params is not None else load_params("train_model")
    settings = settings_from_params(train_params)
    frame = pd.read_parquet(features_dir / "features.parquet")
    feature_names = json.loads((features_dir / "feature_list.json").read_text())["features"]
    folds = folds_from_params(frame["timestamp"], params)
    data_hash = file_md5(features_dir / "features.parquet")
    used = {k: train_params[k] for k in TRAIN_KEYS}
    run_key = fingerprint({"walk_forward": params, "train_model": used}, data_hash)

    parts, infos = [], []
    for fold in folds:
        fold_dir = checkpoint_root / f"fold-{fold.index}"
        done = fold_dir / "predictions.parquet"
        prepare_resumable(fold_dir, run_key)
        if done.is_file() and (fold_dir / "info.json").is_file():
            predictions = pd.read_parquet(done)
            info = {**json.loads((fold_dir / "info.json").read_text()), "resumed": True}
        else:
            predictions, info = predict_fold(frame, feature_names, settings, fold,
                                             checkpoint_dir=fold_dir / "checkpoints")
            predictions.to_parquet(done, index=False)
            write_json(fold_dir / "info.json", info)
        parts.append(predictions)
        infos.append(info)
        print(f"predict_oof: fold {fold.index} trained to {fold.train_end.date()}, predicted "
              f"{info['rows_predicted']} rows {fold.test_start.date()}..{fold.test_end.date()}")

    oof = pd.concat(parts, ignore_index=True)
    check_out_of_fold(oof, folds)
    out_dir.mkdir(parents=True, exist_ok=True)
    oof.to_parquet(out_dir / "oof.parquet", index=False)
    write_json(out_dir / "folds.json", {"params": params, "folds": infos})
    report = {"folds": len(folds), "rows_predicted": len(oof),
              "metrics": _oof_metrics(frame, oof)}
    write_json(reports_dir / "oof_metrics.json", report)
    net = report["metrics"]
    print(f"predict_oof: {len(oof)} out-of-fold predictions over {len(folds)} folds; "
          f"balanced accuracy {net['balanced_accuracy']:.3f} on {net['n_samples']} matured labels")
    return report


def _oof_metrics(frame: pd.DataFrame, oof: pd.DataFrame) -> dict[str, Any]:
    """Classification metrics of the out-of-fold predictions on rows whose label matured."""
    import numpy as np

    from tradingrl.models.data import classes_from_labels
    from tradingrl.models.metrics import classification_metrics

    joined = oof.merge(frame[["timestamp", "symbol", "label", "fwd_return"]],
                       on=["timestamp", "symbol"], how="left", validate="one_to_one")
    labelled = joined["label"].notna().to_numpy()
    joined = joined[labelled]
    probs = joined[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    metrics = classification_metrics(
        probs, classes_from_labels(joined["label"]), joined["expected_return"].to_numpy(),
        joined["fwd_return"].to_numpy())
    return metrics


if __name__ == "__main__":
    run_stage(main)
