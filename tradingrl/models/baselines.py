"""Baselines the CNN+LSTM is scored against, on the same split and rows.

- ``prior``: the training class frequencies as probabilities for every row
  (its argmax is the majority class; frequencies rather than a one-hot keep
  log loss finite).
- ``logistic_regression``: multinomial logistic regression (scikit-learn) on
  the last bar's scaled features of each window, i.e. what the network sees
  at time t without the history.

Both return class probabilities (n, 3) and a score for rank IC
(P(up) - P(down)); the prior's score is constant, so its rank IC is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BaselinePrediction:
    probs: np.ndarray  # (n, 3) float64, rows sum to 1
    score: np.ndarray  # (n,) P(up) - P(down), for rank IC


def prior_baseline(y_train: np.ndarray, n: int) -> BaselinePrediction:
    """Training class frequencies (classes 0, 1, 2) repeated for ``n`` rows."""
    counts = np.bincount(y_train, minlength=3).astype(np.float64)
    if counts.sum() == 0:
        raise ValueError("prior baseline needs at least one training label")
    probs = np.tile(counts / counts.sum(), (n, 1))
    return BaselinePrediction(probs=probs, score=probs[:, 2] - probs[:, 0])


def logistic_regression_baseline(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    *,
    max_train_rows: int = 200_000,
    seed: int = 0,
) -> BaselinePrediction:
    """Fit on (at most ``max_train_rows`` randomly chosen) training rows of
    scaled last-bar features; predict ``x_eval``. Classes absent from training
    get probability 0."""
    from sklearn.linear_model import LogisticRegression

    if len(x_train) > max_train_rows:
        keep = np.random.default_rng(seed).choice(len(x_train), max_train_rows, replace=False)
        x_train, y_train = x_train[np.sort(keep)], y_train[np.sort(keep)]
    model = LogisticRegression(max_iter=500, C=1.0)
    model.fit(x_train, y_train)
    probs = np.zeros((len(x_eval), 3))
    probs[:, model.classes_] = model.predict_proba(x_eval)
    return BaselinePrediction(probs=probs, score=probs[:, 2] - probs[:, 0])
