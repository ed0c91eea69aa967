"""Baselines: values by hand and a learnable signal."""

from __future__ import annotations

import numpy as np

from tradingrl.models.baselines import logistic_regression_baseline, prior_baseline


def test_prior_is_training_frequencies():
    pred = prior_baseline(np.array([0, 2, 2, 1, 2]), n=3)
    np.testing.assert_allclose(pred.probs, [[0.2, 0.2, 0.6]] * 3)
    np.testing.assert_allclose(pred.score, [0.4] * 3)


def test_logistic_regression_learns_a_linear_signal_and_fills_absent_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4))
    y = np.where(x[:, 0] > 0, 2, 0)  # class 1 never appears
    pred = logistic_regression_baseline(x[:1500], y[:1500], x[1500:], max_train_rows=1000, seed=1)
    assert pred.probs.shape == (500, 3)
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0)
    assert (pred.probs[:, 1] == 0).all()
    accuracy = (pred.probs.argmax(axis=1) == y[1500:]).mean()
    assert accuracy > 0.95
