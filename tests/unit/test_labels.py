"""Forward labels: values by hand, end times, the NA tail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradingrl.features.labels import LabelSpec, forward_labels


def stamps(n: int) -> pd.Series:
    return pd.Series(pd.date_range("2024-01-01", periods=n, freq="B", tz="UTC"))


def test_fixed_threshold_labels_by_hand():
    open_ = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    close = np.array([10.0, 10.0, 11.0, 9.0, 10.05, 10.0])
    spec = LabelSpec(horizon=2, threshold_mode="fixed", threshold=0.01)
    out = forward_labels(stamps(6), open_, close, spec)
    # fwd_t = log(close[t+2] / open[t+1])
    expected = np.log(np.array([11.0, 9.0, 10.05, 10.0]) / 10.0)
    np.testing.assert_allclose(out["fwd_return"].iloc[:4], expected)
    assert out["label"].iloc[:4].tolist() == [1, -1, 0, 0]
    assert out["label"].iloc[4:].isna().all()
    assert out["t1"].iloc[:4].tolist() == stamps(6).iloc[2:].tolist()
    assert out["t1"].iloc[4:].isna().all()


def test_entry_is_next_open_not_this_close():
    # The close of bar t is never tradeable at t: a gap up at t+1's open is
    # not earned, so a flat path after the gap is labelled 0.
    open_ = np.array([10.0, 12.0, 12.0, 12.0])
    close = np.array([10.0, 12.0, 12.0, 12.0])
    out = forward_labels(stamps(4), open_, close, LabelSpec(horizon=1, threshold_mode="fixed", threshold=0.01))
    assert out["label"].iloc[0] == 0
    assert out["fwd_return"].iloc[0] == pytest.approx(0.0)


def test_volatility_threshold_scales_with_past_volatility():
    rng = np.random.default_rng(3)
    r = np.concatenate([rng.normal(0, 0.005, 300), rng.normal(0, 0.03, 300)])
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    out = forward_labels(stamps(600), open_, close, LabelSpec(horizon=5, threshold=0.5, vol_window=20))
    calm, wild = out["label"].iloc[50:290], out["label"].iloc[350:590]
    # Thresholds follow volatility, so the share of non-zero labels is
    # similar in both regimes (with fixed thresholds it would differ a lot).
    assert abs((calm != 0).mean() - (wild != 0).mean()) < 0.15
    assert out["label"].iloc[:20].isna().all()  # no past volatility yet -> no label


def test_horizon_must_be_positive():
    with pytest.raises(ValueError, match="horizon"):
        LabelSpec(horizon=0)
