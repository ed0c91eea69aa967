"""Stage predict_oof: data/features -> data/predictions (out-of-fold CNN+LSTM predictions).

Walk-forward folds from the ``walk_forward`` params; fold k's CNN+LSTM is
fitted on its training span only (the ``train_model`` settings and
hyperparameters of params.yaml, not an Optuna result: the search validates on
the last part of the data, which later folds predict) and predicts its test
block. See :func:`tradingrl.models.oof.out_of_fold_predictions`.

Outputs: data/predictions/oof.parquet (timestamp, symbol, fold, prediction
columns), data/predictions/folds.json (the plan and each fold's fit), and
reports/oof_metrics.json (classification metrics of the out-of-fold
predictions against the labels that matured). A killed run resumes: each
finished fold is kept in models/oof_checkpoints/fold-<k> with a fingerprint of
the code, params and data, and is not refitted; a rerun after the stage
finished (``dvc repro -f``) refits every fold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl.params import load_params
from tradingrl.resume import code_hash, file_md5, fingerprint, finish_resumable, prepare_resumable
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
# The train_model params the fold models use (declared in dvc.yaml; the
# search and experiment keys do not affect this stage).
TRAIN_KEYS = ("window", "val_fraction", "batch_size", "max_epochs", "patience",
              "limit_train_batches", "seed", "model", "uncertainty")


def main(params: dict[str, Any] | None = None, train_params: dict[str, Any] | None = None,
         repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults)."""
    from tradingrl.models.fit import TrainSettings
    from tradingrl.models.oof import oof_metrics, out_of_fold_predictions
    from tradingrl.splits.walk_forward import folds_from_params

    params_file = repo_root / "params.yaml"
    params = params if params is not None else load_params("walk_forward", params_file)
    train_params = (train_params if train_params is not None
                    else load_params("train_model", params_file))
    features_dir, out_dir = repo_root / "data" / "features", repo_root / "data" / "predictions"
    frame = pd.read_parquet(features_dir / "features.parquet")
    feature_names = json.loads((features_dir / "feature_list.json").read_text())["features"]
    folds = folds_from_params(frame["timestamp"], params)
    run_key = fingerprint({"walk_forward": params,
                           "train_model": {k: train_params[k] for k in TRAIN_KEYS}},
                          file_md5(features_dir / "features.parquet"), code_hash("predict_oof"))
    checkpoint_root = repo_root / "models" / "oof_checkpoints"
    prepare_resumable(checkpoint_root, run_key)
    oof, infos = out_of_fold_predictions(
        frame, feature_names, TrainSettings.from_params(train_params), folds,
        checkpoint_root=checkpoint_root, run_key=run_key)

    out_dir.mkdir(parents=True, exist_ok=True)
    oof.to_parquet(out_dir / "oof.parquet", index=False)
    write_json(out_dir / "folds.json", {"params": params, "folds": infos})
    report = {"folds": len(folds), "rows_predicted": len(oof), "metrics": oof_metrics(frame, oof)}
    write_json(repo_root / "reports" / "oof_metrics.json", report)
    finish_resumable(checkpoint_root)
    net = report["metrics"]
    print(f"predict_oof: {len(oof)} out-of-fold predictions over {len(folds)} folds; "
          f"balanced accuracy {net['balanced_accuracy']:.3f} on {net['n_samples']} matured labels")
    return report


if __name__ == "__main__":
    run_stage(main)
