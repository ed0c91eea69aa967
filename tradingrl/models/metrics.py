"""Classification, calibration and ranking metrics for the forward-return
classifier: numpy arrays in, plain Python floats out.

Conventions: ``probs`` (N, 3) rows of class probabilities (down, flat, up);
``y`` (N,) int labels 0/1/2, with -100 = ignore (those rows are dropped by
:func:`classification_metrics`; the single metrics expect clean labels).

Definitions:
- Brier score (multi-class): mean over samples of sum over classes of
  (p_k - 1[y = k])^2; 0 is perfect, 2 the worst, 2/3 for uniform
  probabilities.
- Expected calibration error (top-label): confidence = max_k p_k, correct =
  argmax == y; equal-width bins on [0, 1] (``n_bins`` = 15 by default, as in
  Guo et al. 2017), right-closed (lo, hi] with the first bin [0, hi];
  ECE = sum over bins of (count / N) * |accuracy - mean confidence|. With 3
  classes confidence >= 1/3, so the lowest bins stay empty.
- Log loss: mean negative log-likelihood (nats) after clipping probabilities
  to [1e-7, 1] and renormalising rows, so one confident miss is large but
  finite; uniform probabilities give log 3 = 1.0986.
- Rank IC: Spearman correlation between predicted expected return and the
  realised forward return over rows where both are finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
)

from tradingrl.models.classes import CLASS_NAMES, IGNORE_INDEX, N_CLASSES

LABELS = list(range(N_CLASSES))
LOG_LOSS_CLIP = 1e-7
DEFAULT_BINS = 15


def _check(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    if probs.ndim != 2 or probs.shape[1] != N_CLASSES or len(probs) != len(y):
        raise ValueError(f"need probs (N, {N_CLASSES}) and y (N,), got {probs.shape}, {y.shape}")
    if len(y) == 0:
        raise ValueError("no samples")
    if not np.isin(y, LABELS).all():
        raise ValueError(f"labels must be in {LABELS} (drop ignored rows first)")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    return probs, y.astype(np.int64)


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose argmax class equals y."""
    probs, y = _check(probs, y)
    return float(accuracy_score(y, probs.argmax(axis=1)))


def balanced_accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean per-class recall over the classes present in y."""
    probs, y = _check(probs, y)
    return float(balanced_accuracy_score(y, probs.argmax(axis=1)))


def macro_f1(probs: np.ndarray, y: np.ndarray) -> float:
    """Unweighted mean F1 over the three classes (an absent class scores 0)."""
    probs, y = _check(probs, y)
    return float(f1_score(y, probs.argmax(axis=1), labels=LABELS, average="macro", zero_division=0))


def log_loss_score(probs: np.ndarray, y: np.ndarray, *, clip: float = LOG_LOSS_CLIP) -> float:
    """Mean NLL in nats with probabilities clipped to [clip, 1], renormalised."""
    probs, y = _check(probs, y)
    p = np.clip(probs, clip, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return float(log_loss(y, p, labels=LABELS))


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier: mean over rows of sum_k (p_k - 1[y = k])^2, in [0, 2]."""
    probs, y = _check(probs, y)
    onehot = np.eye(N_CLASSES)[y]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


@dataclass(frozen=True, eq=False)
class ReliabilityTable:
    """Top-label reliability per equal-width confidence bin.

    edges: (n_bins + 1,) bin edges on [0, 1]; bins are (lo, hi], first [0, hi].
    mean_confidence, accuracy: (n_bins,) per-bin means, NaN where empty.
    count: (n_bins,) rows per bin.
    """

    edges: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    def ece(self) -> float:
        """Expected calibration error: count-weighted |accuracy - confidence|."""
        filled = self.count > 0
        weights = self.count[filled] / self.count.sum()
        gaps = np.abs(self.accuracy[filled] - self.mean_confidence[filled])
        return float((weights * gaps).sum())

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON-friendly columns (empty bins give None)."""
        def clean(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "bin_lower": [float(v) for v in self.edges[:-1]],
            "bin_upper": [float(v) for v in self.edges[1:]],
            "mean_confidence": clean(self.mean_confidence),
            "accuracy": clean(self.accuracy),
            "count": [int(c) for c in self.count],
        }


def reliability_table(probs: np.ndarray, y: np.ndarray, n_bins: int = DEFAULT_BINS) -> ReliabilityTable:
    """Top-label confidence vs accuracy in ``n_bins`` equal-width bins."""
    probs, y = _check(probs, y)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" on the inner edges: a confidence equal to an edge falls in
    # the bin it closes, i.e. bins are (lo, hi].
    idx = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return ReliabilityTable(edges=edges, mean_confidence=mean_conf, accuracy=acc, count=count)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins (see module docstring)."""
    return reliability_table(probs, y, n_bins).ece()


def rank_ic(expected_return: np.ndarray, realised_return: np.ndarray) -> float:
    """Spearman correlation of predicted vs realised forward returns over rows
    where both are finite; NaN when fewer than 3 such rows or either side is
    constant (the correlation is undefined)."""
    pred = np.asarray(expected_return, dtype=np.float64)
    real = np.asarray(realised_return, dtype=np.float64)
    if pred.shape != real.shape or pred.ndim != 1:
        raise ValueError(f"need two 1-d arrays of equal length, got {pred.shape}, {real.shape}")
    ok = np.isfinite(pred) & np.isfinite(real)
    pred, real = pred[ok], real[ok]
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(real) == 0:
        return math.nan
    return float(spearmanr(pred, real).statistic)


def _json_float(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def classification_metrics(
    probs: np.ndarray,
    y: np.ndarray,
    expected_return: np.ndarray | None = None,
    realised_return: np.ndarray | None = None,
    *,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, float | int | None]:
    """All metrics over rows with y != -100, as a flat JSON-serialisable dict
    (strict JSON: undefined values such as the rank IC of a constant
    prediction are None, never NaN).

    Keys: n_samples, accuracy, balanced_accuracy, macro_f1, log_loss, brier,
    ece, mean_confidence (mean top-label probability), rank_ic (None when no
    returns are given), and share_down / share_flat / share_up of the
    true labels (the base rates accuracy should be read against)."""
    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) != len(y):
        raise ValueError(f"probs has {len(probs)} rows, y has {len(y)}")
    keep = y != IGNORE_INDEX
    p, t = _check(probs[keep], y[keep])
    out: dict[str, float | int | None] = {
        "n_samples": int(keep.sum()),
        "accuracy": accuracy(p, t),
        "balanced_accuracy": balanced_accuracy(p, t),
        "macro_f1": macro_f1(p, t),
        "log_loss": log_loss_score(p, t),
        "brier": brier_score(p, t),
        "ece": expected_calibration_error(p, t, n_bins),
        "mean_confidence": float(p.max(axis=1).mean()),
        "rank_ic": None,
    }
    if (expected_return is None) != (realised_return is None):
        raise ValueError("give both expected_return and realised_return, or neither")
    if expected_return is not None and realised_return is not None:
        er = np.asarray(expected_return, dtype=np.float64)
        rr = np.asarray(realised_return, dtype=np.float64)
        if len(er) != len(y) or len(rr) != len(y):
            raise ValueError("expected_return and realised_return must align with y")
        out["rank_ic"] = _json_float(rank_ic(er[keep], rr[keep]))
    shares = np.bincount(t, minlength=N_CLASSES) / len(t)
    for name, share in zip(CLASS_NAMES, shares, strict=True):
        out[f"share_{name}"] = float(share)
    return out


def save_diagnostic_plots(
    probs: np.ndarray,
    y: np.ndarray,
    *,
    calibration_path: str | Path,
    confusion_path: str | Path,
    n_bins: int = DEFAULT_BINS,
) -> None:
    """Write a reliability diagram (with a histogram of top-label confidence)
    and a row-normalised confusion matrix as PNG files. Rows with y == -100
    are dropped. Uses matplotlib's Agg canvas directly, so no global backend
    is switched and no display is needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    y = np.asarray(y)
    keep = y != IGNORE_INDEX
    p, t = _check(np.asarray(probs)[keep], y[keep])
    table = reliability_table(p, t, n_bins)

    fig = Figure(figsize=(5.5, 6.5))
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = (table.edges[:-1] + table.edges[1:]) / 2
    filled = table.count > 0
    width = table.edges[1] - table.edges[0]
    ax.bar(centres[filled], table.accuracy[filled], width=width, edgecolor="black",
           alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(table.mean_confidence[filled], table.accuracy[filled], "o-", color="C1",
            label="mean confidence vs accuracy")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"Reliability (top label), ECE = {table.ece():.3f}")
    ax.legend(loc="upper left")
    hist.bar(centres, table.count, width=width, edgecolor="black")
    hist.set_xlabel("confidence (max probability)")
    hist.set_ylabel("count")
    hist.set_xlim(0, 1)
    fig.tight_layout()
    Path(calibration_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(calibration_path, dpi=100)

    cm = confusion_matrix(t, p.argmax(axis=1), labels=LABELS)
    with np.errstate(invalid="ignore", divide="ignore"):
        cm_norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    fig = Figure(figsize=(5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(cm_norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(N_CLASSES):
        for j in range(N_CLASSES):
            ax.text(j, i, f"{cm[i, j]}\n{cm_norm[i, j]:.0%}", ha="center", va="center",
                    color="white" if cm_norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(N_CLASSES), CLASS_NAMES)
    ax.set_yticks(range(N_CLASSES), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    Path(confusion_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(confusion_path, dpi=100)
