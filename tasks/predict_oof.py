"""Stage predict_oof: data/features -> data/predictions (out-of-fold CNN+LSTM predictions).

Walk-forward folds from the ``walk_forward`` params; fold k's CNN+LSTM is
fitted on its training span only, with the recipe of models/recipe.json
(stage train_model: params.yaml's settings, or the model kwargs an Optuna
search chose on the bars before the first block; the served model is the
same recipe refitted on all data), and predicts its test block. See
:func:`tradingrl.models.oof.out_of_fold_predictions`.

Outputs: data/predictions/oof.parquet (timestamp, symbol, fold, prediction
columns), data/predictions/folds.json (the plan and each fold's fit), and
reports/oof_metrics.json (classification metrics of the out-of-fold
predictions against the labels that matured, and each fold's calibration:
temperature, ECE on its held-out windows, failed when at a search bound). A killed run resumes: each
finished fold is kept in models/oof_checkpoints/fold-<k> with a fingerprint of
the code, params and data, and is not refitted; a rerun after the stage
finished (``dvc repro -f``) refits every fold. The folds are independent and fit in parallel worker
processes (one per core; ``TRADINGRL_TASK_RUNNER``, :mod:`tradingrl.parallel`),
each with one torch thread, with the same results as one by one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl import headline
from tradingrl.params import load_params
from tradingrl.resume import code_hash, file_md5, fingerprint, finish_resumable, prepare_resumable
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(params: dict[str, Any] | None = None, repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults)."""
    from tradingrl.models.fit import settings_from_recipe
    from tradingrl.models.oof import oof_metrics, out_of_fold_predictions
    from tradingrl.parallel import runner_from_env
    from tradingrl.splits.walk_forward import folds_from_params

    params_file = repo_root / "params.yaml"
    params = params if params is not None else load_params("walk_forward", params_file)
    recipe = json.loads((repo_root / "models" / "recipe.json").read_text())
    features_dir, out_dir = repo_root / "data" / "features", repo_root / "data" / "predictions"
    frame = pd.read_parquet(features_dir / "features.parquet")
    feature_names = json.loads((features_dir / "feature_list.json").read_text())["features"]
    folds = folds_from_params(frame["timestamp"], params)
    run_key = fingerprint({"walk_forward": params, "recipe": recipe},
                          file_md5(features_dir / "features.parquet"), code_hash("predict_oof"))
    checkpoint_root = repo_root / "models" / "oof_checkpoints"
    prepare_resumable(checkpoint_root, run_key)
    oof, infos = out_of_fold_predictions(
        frame, feature_names, settings_from_recipe(recipe), folds,
        checkpoint_root=checkpoint_root, run_key=run_key, runner=runner_from_env())

    out_dir.mkdir(parents=True, exist_ok=True)
    oof.to_parquet(out_dir / "oof.parquet", index=False)
    write_json(out_dir / "folds.json", {"params": params, "folds": infos})
    calibration = [{"fold": info["fold"]["index"], **info["calibration"]} for info in infos]
    report = {"folds": len(folds), "rows_predicted": len(oof), "metrics": oof_metrics(frame, oof),
              "calibration": calibration,
              "calibration_failed": [c["fold"] for c in calibration if c["failed"]]}
    write_json(repo_root / "reports" / "oof_metrics.json", report)
    headline.write(repo_root, "predict_oof", report)
    finish_resumable(checkpoint_root)
    net = report["metrics"]
    temperatures = "; ".join(f"fold {c['fold']} T {', '.join(f'{t:.2f}' for t in c['temperatures'])}"
                             f" ECE {c['ece']:.3f}{' FAILED' if c['failed'] else ''}"
                             for c in calibration)
    print(f"predict_oof: {len(oof)} out-of-fold predictions over {len(folds)} folds; "
          f"balanced accuracy {net['balanced_accuracy']:.3f} on {net['n_samples']} matured "
          f"labels; calibration: {temperatures}")
    return report


if __name__ == "__main__":
    run_stage(main)
