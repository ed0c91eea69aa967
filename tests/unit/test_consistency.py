"""The promotion's consistency check: the served trend model's predictions on
its reference window against the walk-forward's out-of-fold predictions on
the same bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradingrl.registry.consistency import ConsistencyThresholds, prediction_consistency

THRESHOLDS = ConsistencyThresholds(max_confidence_gap=0.1, max_class_share_gap=0.2,
                                   max_ece_gap=0.1, min_bars=100)


def _predictions(n: int = 400, seed: int = 0, *, sharpen: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3) * 2.0, size=n) ** sharpen
    probs /= probs.sum(axis=1, keepdims=True)
    return pd.DataFrame({
        "timestamp": pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) // 2,
                                                                          unit="D"),
        "symbol": np.where(np.arange(n) % 2 == 0, "A", "B"),
        "p_down": probs[:, 0], "p_flat": probs[:, 1], "p_up": probs[:, 2],
        "confidence": probs.max(axis=1) - np.sort(probs, axis=1)[:, 1]})


def _features(frame: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    labels = np.random.default_rng(seed).choice([-1, 0, 1], len(frame))
    out = frame[["timestamp", "symbol"]].assign(label=pd.array(labels, dtype="Int8"))
    out.loc[out.index[-10:], "label"] = pd.NA  # the newest labels have not matured
    return out


def test_the_same_predictions_pass_and_the_record_says_why():
    oof = _predictions()
    found = prediction_consistency(oof, oof, _features(oof), THRESHOLDS)
    assert found["passed"] and found["bars"] == 400
    assert found["gaps"] == {"confidence": 0.0, "class_share": 0.0, "ece": 0.0}
    assert found["served"]["n_matured"] == 390
    assert "agree on 400 bars" in found["detail"]


def test_a_sharper_served_model_is_refused_with_each_gap_named():
    oof = _predictions()
    served = _predictions(sharpen=4.0)  # the same draws, far more confident
    found = prediction_consistency(served, oof, _features(oof), THRESHOLDS)
    assert not found["passed"]
    assert found["gaps"]["confidence"] > 0.1
    assert "confidence gap" in found["detail"]
    assert found["served"]["mean_confidence"] > found["oof"]["mean_confidence"]


def test_too_few_common_bars_or_no_matured_label_fail_never_pass():
    oof = _predictions()
    few = prediction_consistency(oof.head(50), oof, _features(oof), THRESHOLDS)
    assert not few["passed"] and "fewer than 100: not checkable" in few["detail"]
    unlabelled = _features(oof).assign(label=pd.array([pd.NA] * len(oof), dtype="Int8"))
    found = prediction_consistency(oof, oof, unlabelled, THRESHOLDS)
    assert not found["passed"] and np.isnan(found["gaps"]["ece"])


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="max_ece_gap"):
        ConsistencyThresholds(max_ece_gap=float("nan"))
    with pytest.raises(ValueError, match="min_bars"):
        ConsistencyThresholds(min_bars=0)
