"""The feature table's contract: an explicit, ordered pandera schema.

Columns, in order: timestamp, symbol, every name of
:data:`tradingrl.features.technical.FEATURE_COLUMNS` (float32, finite), then
fwd_return (float64), label (Int8 in {-1, 0, 1}; NA for the last bars of a
series) and t1 (the label's end time, after timestamp). Downstream stages
read features by this list, never by "every numeric column", so a label can
never slip into a model's input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from tradingrl.features.technical import FEATURE_COLUMNS


def feature_schema() -> pa.DataFrameSchema:
    """Schema of data/features (strict, ordered, unique per symbol and time)."""
    utc = pd.DatetimeTZDtype(unit="ns", tz="UTC")
    finite = pa.Check(lambda s: np.isfinite(s), name="finite")
    columns = {
        "timestamp": pa.Column(utc, nullable=False),
        "symbol": pa.Column(str, nullable=False),
        **{name: pa.Column(np.float32, checks=finite, nullable=False) for name in FEATURE_COLUMNS},
        "fwd_return": pa.Column(np.float64, nullable=True),
        "label": pa.Column(pd.Int8Dtype(), pa.Check.isin([-1, 0, 1]), nullable=True),
        "t1": pa.Column(utc, nullable=True),
    }
    return pa.DataFrameSchema(
        columns,
        strict=True,
        ordered=True,
        unique=["symbol", "timestamp"],
        checks=[
            pa.Check(
                lambda df: df["t1"].isna() | (df["t1"] > df["timestamp"]),
                name="label_ends_after_its_bar",
            ),
            pa.Check(
                lambda df: df["label"].isna() == df["t1"].isna(),
                name="label_and_end_time_together",
            ),
        ],
    )
