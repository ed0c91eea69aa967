"""Classifier metrics: hand-computed values, limits, JSON output, plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tradingrl.models.metrics import (
    accuracy,
    balanced_accuracy,
    brier_score,
    classification_metrics,
    expected_calibration_error,
    log_loss_score,
    macro_f1,
    rank_ic,
    reliability_table,
    save_diagnostic_plots,
)


def test_brier_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    y = np.array([0, 1])
    # row 0: 0.3^2 + 0.2^2 + 0.1^2 = 0.14; row 1: 0.1^2 + 0.7^2 + 0.6^2 = 0.86
    assert brier_score(probs, y) == pytest.approx(0.5)


def test_ece_and_reliability_table_by_hand():
    probs = np.array([
        [0.9, 0.05, 0.05],  # confidence 0.9, correct
        [0.9, 0.05, 0.05],  # confidence 0.9, wrong
        [0.5, 0.3, 0.2],    # confidence 0.5, correct
        [0.3, 0.5, 0.2],    # confidence 0.5, correct
    ])
    y = np.array([0, 2, 0, 1])
    # bin (13/15, 14/15]: accuracy 0.5, confidence 0.9 -> gap 0.4, weight 1/2
    # bin (7/15, 8/15]:   accuracy 1.0, confidence 0.5 -> gap 0.5, weight 1/2
    assert expected_calibration_error(probs, y) == pytest.approx(0.45)
    table = reliability_table(probs, y, n_bins=15)
    assert table.edges.shape == (16,)
    assert table.count.tolist() == [0] * 7 + [2] + [0] * 5 + [2, 0]
    assert table.accuracy[13] == pytest.approx(0.5)
    assert table.mean_confidence[7] == pytest.approx(0.5)
    assert np.isnan(table.accuracy[0])
    # a single bin: |mean accuracy - mean confidence| = |0.75 - 0.7|
    assert expected_calibration_error(probs, y, n_bins=1) == pytest.approx(0.05)
    as_dict = table.to_dict()
    json.dumps(as_dict, allow_nan=False)
    assert as_dict["count"][13] == 2 and as_dict["accuracy"][0] is None


def test_ece_weights_bins_by_count():
    probs = np.array([[0.9, 0.05, 0.05]] * 3 + [[0.5, 0.3, 0.2]])
    y = np.array([0, 0, 1, 0])
    # bin of 0.9: 3 rows, accuracy 2/3 -> gap 0.9 - 2/3, weight 3/4
    # bin of 0.5: 1 row, accuracy 1    -> gap 0.5,       weight 1/4
    expected = 0.75 * (0.9 - 2 / 3) + 0.25 * 0.5
    assert expected_calibration_error(probs, y) == pytest.approx(expected)


def test_bins_are_closed_on_the_right():
    # 0.5 and 0.75 are exact binary edges with 4 bins: (0.25, 0.5], (0.5, 0.75]
    probs = np.array([[0.5, 0.25, 0.25], [0.75, 0.125, 0.125], [1.0, 0.0, 0.0]])
    table = reliability_table(probs, np.array([0, 0, 0]), n_bins=4)
    assert table.count.tolist() == [0, 1, 1, 1]


def test_perfect_predictions():
    y = np.array([0, 1, 2, 2, 1, 0])
    probs = np.eye(3)[y]
    assert accuracy(probs, y) == 1.0
    assert balanced_accuracy(probs, y) == 1.0
    assert macro_f1(probs, y) == 1.0
    assert brier_score(probs, y) == 0.0
    assert expected_calibration_error(probs, y) == 0.0
    assert log_loss_score(probs, y) < 1e-6


def test_uniform_probabilities():
    y = np.array([0, 1, 2, 0, 1])
    probs = np.full((5, 3), 1 / 3)
    assert log_loss_score(probs, y) == pytest.approx(math.log(3))
    assert brier_score(probs, y) == pytest.approx(2 / 3)


def test_log_loss_is_clipped_not_infinite():
    probs = np.array([[1.0, 0.0, 0.0]])
    loss = log_loss_score(probs, np.array([2]))
    assert math.isfinite(loss)
    assert loss == pytest.approx(-math.log(1e-7 / (1 + 2e-7)))


def test_balanced_accuracy_sees_through_the_majority_class():
    y = np.array([0] * 8 + [1, 2])
    probs = np.tile([0.6, 0.2, 0.2], (10, 1))
    assert accuracy(probs, y) == pytest.approx(0.8)
    assert balanced_accuracy(probs, y) == pytest.approx(1 / 3)
    # F1: class 0 precision 0.8 recall 1 -> 8/9; classes 1, 2 -> 0
    assert macro_f1(probs, y) == pytest.approx((8 / 9) / 3)


def test_rank_ic():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=50)
    assert rank_ic(pred, np.exp(3 * pred)) == pytest.approx(1.0)
    assert rank_ic(pred, -pred**3) == pytest.approx(-1.0)
    realised = np.exp(3 * pred)
    realised[[3, 7]] = np.nan  # unlabelled rows carry no realised return
    assert rank_ic(pred, realised) == pytest.approx(1.0)
    assert math.isnan(rank_ic(np.zeros(10), pred[:10]))


def test_labels_outside_the_classes_are_rejected():
    with pytest.raises(ValueError, match="labels must be"):
        accuracy(np.full((2, 3), 1 / 3), np.array([0, -100]))


def test_classification_metrics_drop_ignored_rows_and_serialise():
    rng = np.random.default_rng(1)
    n = 200
    logits = rng.normal(size=(n, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 3, n)
    expected = rng.normal(size=n)
    realised = expected + rng.normal(size=n)
    y_ignored, realised_ignored = y.copy(), realised.copy()
    y_ignored[:10] = -100
    realised_ignored[:10] = np.nan
    out = classification_metrics(probs, y_ignored, expected, realised_ignored)
    json.dumps(out, allow_nan=False)
    assert set(out) == {
        "n_samples", "accuracy", "balanced_accuracy", "macro_f1", "log_loss", "brier", "ece",
        "mean_confidence", "rank_ic", "share_down", "share_flat", "share_up",
    }
    assert out["n_samples"] == n - 10
    assert all(type(v) in (float, int) for v in out.values())
    clean = classification_metrics(probs[10:], y[10:], expected[10:], realised[10:])
    assert clean == out
    assert out["accuracy"] == pytest.approx(accuracy(probs[10:], y[10:]))
    assert out["rank_ic"] > 0.3
    assert out["share_down"] + out["share_flat"] + out["share_up"] == pytest.approx(1.0)


def test_undefined_rank_ic_is_none_not_nan():
    probs = np.full((4, 3), 1 / 3)
    y = np.array([0, 1, 2, 1])
    out = classification_metrics(probs, y, np.zeros(4), np.arange(4.0))
    assert out["rank_ic"] is None
    assert classification_metrics(probs, y)["rank_ic"] is None
    json.dumps(out, allow_nan=False)
    with pytest.raises(ValueError, match="both"):
        classification_metrics(probs, y, np.zeros(4), None)


def test_diagnostic_plots_are_written(tmp_path):
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([1, 1, 1], size=100)
    y = rng.integers(0, 3, 100)
    y[0] = -100
    cal, cm = tmp_path / "plots" / "calibration.png", tmp_path / "plots" / "confusion.png"
    save_diagnostic_plots(probs, y, calibration_path=cal, confusion_path=cm)
    for path in (cal, cm):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5_000
