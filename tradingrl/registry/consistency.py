"""Does the served trend model behave like the models the walk-forward judged?

The served bundle's CNN+LSTM is the judged recipe refitted on all data
(stage train_model); the agent learned from, and the evaluation scored it
with, the walk-forward fold models' out-of-fold predictions. If the refit
behaved differently (other calibration, other confidence, other class
mix), the served agent would act on inputs unlike any it trained on or was
judged on. :func:`prediction_consistency` compares the bundle's own
predictions over its reference window (the last sessions of its data) with
the out-of-fold predictions on the same bars: mean confidence, each class's
share of the predicted direction, and calibration (top-label ECE on the
labels that matured). A gap above ``promote.consistency``'s thresholds, or
too few bars in common, refuses promotion with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

CLASSES = ("p_down", "p_flat", "p_up")


@dataclass(frozen=True)
class ConsistencyThresholds:
    """max_confidence_gap: |mean confidence, served - out-of-fold|.
    max_class_share_gap: largest |share of bars predicted class c, served -
    out-of-fold| over the three classes. max_ece_gap: |ECE served - ECE
    out-of-fold| on the matured labels. min_bars: (symbol, bar) pairs both
    predict, fewer: not checkable, refused."""

    max_confidence_gap: float = 0.15
    max_class_share_gap: float = 0.25
    max_ece_gap: float = 0.1
    min_bars: int = 200

    @classmethod
    def from_params(cls, promote: Mapping[str, Any]) -> ConsistencyThresholds:
        """From params.yaml's ``promote`` section (its ``consistency`` mapping)."""
        return cls(**promote["consistency"])

    def __post_init__(self) -> None:
        for name in ("max_confidence_gap", "max_class_share_gap", "max_ece_gap"):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.min_bars < 1:
            raise ValueError(f"min_bars must be >= 1, got {self.min_bars}")


def _side(frame: pd.DataFrame, labels: np.ndarray) -> dict[str, Any]:
    from tradingrl.models.metrics import expected_calibration_error

    probs = frame[list(CLASSES)].to_numpy(np.float64)
    shares = np.bincount(probs.argmax(axis=1), minlength=3) / len(probs)
    known = labels >= 0
    ece = (float(expected_calibration_error(probs[known], labels[known])) if known.any()
           else float("nan"))
    return {"mean_confidence": float(frame["confidence"].mean()),
            "class_shares": dict(zip(CLASSES, (float(s) for s in shares), strict=True)),
            "ece": ece, "n_matured": int(known.sum())}


def prediction_consistency(reference: pd.DataFrame, oof: pd.DataFrame, features: pd.DataFrame,
                           thresholds: ConsistencyThresholds) -> dict[str, Any]:
    """The check ``consistent_with_walk_forward``: the bundle's ``reference``
    predictions (reference.parquet) against the out-of-fold predictions
    ``oof`` on the same (symbol, timestamp), labels from ``features``. A NaN
    figure fails the check."""
    from tradingrl.models.data import classes_from_labels

    keys = ["timestamp", "symbol"]
    served = reference[[*keys, *CLASSES, "confidence"]].dropna()
    judged = oof[[*keys, *CLASSES, "confidence"]]
    both = served.merge(judged, on=keys, suffixes=("_served", "_oof"), validate="one_to_one")
    both = both.merge(features[[*keys, "label"]], on=keys, how="left", validate="one_to_one")
    record: dict[str, Any] = {"name": "consistent_with_walk_forward", "bars": len(both),
                              "thresholds": asdict(thresholds)}
    if len(both) < thresholds.min_bars:
        return {**record, "passed": False,
                "detail": (f"{len(both)} bars predicted by both the served model and the "
                           f"walk-forward, fewer than {thresholds.min_bars}: not checkable")}
    labels = classes_from_labels(both["label"])
    sides = {name: _side(both.rename(columns={f"{c}_{name}": c for c in (*CLASSES, "confidence")}),
                         labels) for name in ("served", "oof")}
    gaps = {
        "confidence": abs(sides["served"]["mean_confidence"] - sides["oof"]["mean_confidence"]),
        "class_share": max(abs(sides["served"]["class_shares"][c] - sides["oof"]["class_shares"][c])
                           for c in CLASSES),
        "ece": abs(sides["served"]["ece"] - sides["oof"]["ece"]),
    }
    limits = {"confidence": thresholds.max_confidence_gap,
              "class_share": thresholds.max_class_share_gap, "ece": thresholds.max_ece_gap}
    over = [f"{name} gap {gaps[name]:.3f} > {limits[name]}" for name in gaps
            if not gaps[name] <= limits[name]]  # NaN fails
    detail = ("served and walk-forward predictions agree on "
              f"{len(both)} bars (gaps: confidence {gaps['confidence']:.3f}, class share "
              f"{gaps['class_share']:.3f}, ECE {gaps['ece']:.3f})") if not over else (
        f"the served model's predictions differ from the walk-forward's on {len(both)} bars: "
        + "; ".join(over))
    return {**record, "passed": not over, "detail": detail, "gaps": gaps, **sides}
