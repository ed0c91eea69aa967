"""Out-of-fold predictions: a fold's model never learns from labels that were
unknown before its test block, predicts only that block, and the plan's checks
catch predictions outside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features.build import build_feature_table
from tradingrl.features.labels import LabelSpec
from tradingrl.models.fit import TrainSettings
from tradingrl.models.oof import check_out_of_fold, predict_fold
from tradingrl.splits.walk_forward import walk_forward_folds

FEATURES = ["ret_1", "ret_5", "rv_20", "rsi_14", "macd_diff"]
SETTINGS = TrainSettings(
    window=8, val_fraction=0.25, batch_size=64, max_epochs=1, patience=1, seed=3,
    model={"conv_channels": 4, "conv_blocks": 1, "lstm_hidden": 8, "dropout": 0.1},
    mc_samples=3, ensemble_size=1)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=420, seed=4))
    frame, _ = build_feature_table(bars, LabelSpec(horizon=5), warmup_bars=120)
    return frame


def test_labels_unknown_before_the_test_block_do_not_change_its_predictions(table):
    fold = walk_forward_folds(table["timestamp"], initial_fraction=0.5, n_folds=2)[0]
    first, info = predict_fold(table, FEATURES, SETTINGS, fold)
    assert info["labels_purged"] > 0  # labels ending inside the block were dropped
    assert info["rows_predicted"] == info["rows_test"] == int(fold.test_mask(table["timestamp"]).sum())

    # Scramble every label that ends at or after the block's start (and the
    # features and prices of later bars do not matter for training either).
    changed = table.copy()
    late = (changed["t1"] >= fold.test_start).to_numpy()
    rng = np.random.default_rng(0)
    changed.loc[late, "label"] = pd.array(rng.choice([-1, 0, 1], late.sum()), dtype="Int8")
    changed.loc[late, "fwd_return"] = rng.normal(0, 0.05, late.sum())
    second, _ = predict_fold(changed, FEATURES, SETTINGS, fold)
    pd.testing.assert_frame_equal(first, second)

    # A label that was known before the block does change the model.
    early = (changed["t1"] < fold.test_start).to_numpy() & changed["t1"].notna().to_numpy()
    changed.loc[early, "label"] = pd.array(rng.choice([-1, 0, 1], early.sum()), dtype="Int8")
    third, _ = predict_fold(changed, FEATURES, SETTINGS, fold)
    assert not np.allclose(first["p_up"], third["p_up"])


def test_check_out_of_fold_refuses_predictions_outside_their_block(table):
    folds = walk_forward_folds(table["timestamp"], initial_fraction=0.5, n_folds=2)
    rows = folds[1].test_mask(table["timestamp"])
    predictions = table.loc[rows, ["timestamp", "symbol"]].reset_index(drop=True)
    for name in ("p_down", "p_flat", "p_up", "expected_return", "confidence", "entropy",
                 "direction_std"):
        predictions[name] = 0.1
    predictions["fold"] = 1
    check_out_of_fold(predictions, folds)
    with pytest.raises(ValueError, match="outside its test block"):
        check_out_of_fold(predictions.assign(fold=0), folds)
    with pytest.raises(ValueError, match="more than once"):
        check_out_of_fold(pd.concat([predictions, predictions.iloc[:1]]), folds)


def test_the_served_refit_is_the_fold_recipe_bit_for_bit_where_they_coincide(table):
    """The final refit (fit_recipe on all the data it is given, nothing
    purged) and the newest fold's model (the same recipe on the fold's
    training span, labels purged at its block) are one procedure: given the
    data the fold had, the refit predicts the block exactly as the fold did."""
    from tradingrl.models.fit import fit_recipe
    from tradingrl.models.oof import fit_fold_model
    from tradingrl.splits.walk_forward import purge_labels

    fold = walk_forward_folds(table["timestamp"], initial_fraction=0.5, n_folds=2)[-1]
    fold_model, info = fit_fold_model(table, FEATURES, SETTINGS, fold)
    known, _ = purge_labels(table.loc[fold.train_mask(table["timestamp"])], fold.test_start)
    refit = fit_recipe(known, FEATURES, SETTINGS, purge_from=None)
    assert refit.calibration == info["calibration"]
    rows = fold.test_mask(table["timestamp"])
    pd.testing.assert_frame_equal(refit.trend.predict(table, rows=rows),
                                  fold_model.predict(table, rows=rows))
    assert info["calibration"]["windows_calibration"] > 0
    assert len(info["calibration"]["temperatures"]) == SETTINGS.ensemble_size


def test_folds_fitted_in_worker_processes_equal_folds_fitted_one_by_one(table, tmp_path):
    """The predict_oof stage's default: the folds fit in spawned worker
    processes (tradingrl.parallel's ``processes`` runner, two workers); the
    predictions and fold summaries are those of the same folds fitted one by
    one in this process, to the last digit."""
    from tradingrl.models.oof import out_of_fold_predictions
    from tradingrl.orchestration import TaskRunnerSettings

    folds = walk_forward_folds(table["timestamp"], initial_fraction=0.5, n_folds=2)
    runs = {}
    for name, runner in (("serial", None),
                         ("processes", TaskRunnerSettings(kind="processes", max_workers=2))):
        lines: list[str] = []
        runs[name] = out_of_fold_predictions(
            table, FEATURES, SETTINGS, folds, checkpoint_root=tmp_path / name, run_key="k",
            runner=runner, log=lines.append)
        runs[name] = (*runs[name], lines)
    assert runs["processes"][2][0] == "predict_oof: 2 folds on task runner processes, 2 workers"
    assert not any("task runner" in line for line in runs["serial"][2])
    pd.testing.assert_frame_equal(runs["processes"][0], runs["serial"][0], check_exact=True)
    assert sorted(runs["processes"][0]["fold"].unique()) == [0, 1]
    assert runs["processes"][1] == runs["serial"][1]  # fits, calibration, row counts
