"""Forward-looking labels with their end time, kept apart from features.

A decision made at the close of bar t fills at the open of bar t+1 (the
project's fill rule), so the label measures what that trade would earn by the
close of bar t+h:

    fwd_return_t = log(close[t+h] / open[t+1])          (h = horizon in bars)
    label_t      = +1 if fwd_return_t >  threshold_t
                   -1 if fwd_return_t < -threshold_t
                    0 otherwise
    t1_t         = timestamp[t+h]  (end of the label interval, used for purging)

``threshold_t`` is either a fixed log return or ``k * sigma_t * sqrt(h)``
where ``sigma_t`` is a past-only per-bar volatility at t (so the classes stay
balanced across calm and volatile regimes). The last ``horizon`` bars of a
series have no label (NA) and NaT end time; they keep their features for
inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LABEL_COLUMNS: tuple[str, ...] = ("fwd_return", "label", "t1")


@dataclass(frozen=True)
class LabelSpec:
    """horizon: bars ahead (>= 1). threshold_mode: "volatility" or "fixed".
    threshold: k (volatility mode, multiples of sigma*sqrt(h)) or a log
    return (fixed mode). vol_window: bars in the past-only sigma estimate."""

    horizon: int = 5
    threshold_mode: str = "volatility"
    threshold: float = 0.5
    vol_window: int = 20

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"label horizon must be >= 1 bar, got {self.horizon}")
        if self.threshold_mode not in ("volatility", "fixed"):
            raise ValueError(f"threshold_mode must be 'volatility' or 'fixed', got {self.threshold_mode!r}")
        if self.threshold < 0:
            raise ValueError(f"label threshold must be >= 0, got {self.threshold}")


def forward_labels(
    timestamps: pd.Series, open_: np.ndarray, close: np.ndarray, spec: LabelSpec
) -> pd.DataFrame:
    """Labels for one symbol's bars in time order: columns fwd_return (float64),
    label (Int8, NA at the end), t1 (datetime, NaT at the end)."""
    n = len(close)
    h = spec.horizon
    fwd = np.full(n, np.nan)
    if n > h:
        # Indexing forward is the point of a label; features never do this.
        fwd[: n - h] = np.log(close[h:] / open_[1 : n - h + 1])
    if spec.threshold_mode == "fixed":
        threshold = np.full(n, spec.threshold)
    else:
        log_close = np.log(pd.Series(close, dtype="float64"))
        sigma = log_close.diff().rolling(spec.vol_window).std().to_numpy()
        threshold = spec.threshold * sigma * np.sqrt(h)
    known = ~np.isnan(fwd) & ~np.isnan(threshold)
    label = pd.array(np.zeros(n, dtype="int8"), dtype="Int8")
    label[fwd > threshold] = 1
    label[fwd < -threshold] = -1
    label[~known] = pd.NA
    # On datetime64 values (UTC): a tz-aware .to_numpy() would box every stamp.
    stamps = timestamps.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]")
    ends = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    if n > h:
        ends[: n - h] = stamps[h:]
    ends[~known] = np.datetime64("NaT")
    t1 = pd.Series(pd.DatetimeIndex(ends).tz_localize("UTC").tz_convert(timestamps.dt.tz))
    return pd.DataFrame({"fwd_return": np.where(known, fwd, np.nan), "label": label, "t1": t1})
