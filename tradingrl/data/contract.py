"""The raw OHLCV contract as a pandera DataFrameModel, and per-row reasons.

The model is run lazily so every failing row is found in one pass; each
failure is turned into a short reason code (``close:missing``,
``high_below_open_or_close``...). Failures that have no row (a wrong dtype, a
missing column) are not row problems and raise :class:`ContractError`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from tradingrl.data.columns import (
    OHLCV_COLUMNS,
    PARSE_ERROR,
    PRICE_COLUMNS,
    SYMBOL,
    SYMBOL_PATTERN,
    TIMESTAMP,
)
from tradingrl.data.errors import ContractError


def _both_known(*columns: pd.Series) -> pd.Series:
    """True where every operand is present; comparisons on missing values are
    reported by the not-null rule alone, not twice."""
    known = pd.Series(True, index=columns[0].index)
    for column in columns:
        known &= column.notna()
    return known


def _previous_timestamp(df: pd.DataFrame) -> pd.Series:
    """The previous known timestamp of the same symbol (NaT for the first)."""
    known = df[TIMESTAMP].notna() & df[SYMBOL].notna()
    previous = pd.Series(pd.NaT, index=df.index, dtype=df[TIMESTAMP].dtype)
    previous[known] = df.loc[known, TIMESTAMP].groupby(df.loc[known, SYMBOL], sort=False).shift(1)
    return previous


class RawOHLCV(pa.DataFrameModel):
    """One bar per row; see :mod:`tradingrl.data.columns` for units."""

    timestamp: Series[pd.DatetimeTZDtype] = pa.Field(
        dtype_kwargs={"unit": "ns", "tz": "UTC"}, nullable=False
    )
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN, nullable=False)
    open: Series[float] = pa.Field(gt=0, nullable=False)
    high: Series[float] = pa.Field(gt=0, nullable=False)
    low: Series[float] = pa.Field(gt=0, nullable=False)
    close: Series[float] = pa.Field(gt=0, nullable=False)
    volume: Series[float] = pa.Field(ge=0, nullable=False)
    parse_error: Series[str] | None = pa.Field(nullable=True)

    @pa.dataframe_check
    def high_below_open_or_close(cls, df: pd.DataFrame) -> pd.Series:
        known = _both_known(df["high"], df["open"], df["close"])
        return ~known | (df["high"] >= np.maximum(df["open"], df["close"]))

    @pa.dataframe_check
    def low_above_open_or_close(cls, df: pd.DataFrame) -> pd.Series:
        known = _both_known(df["low"], df["open"], df["close"])
        return ~known | (df["low"] <= np.minimum(df["open"], df["close"]))

    @pa.dataframe_check
    def infinite_value(cls, df: pd.DataFrame) -> pd.Series:
        values = df[[*PRICE_COLUMNS, "volume"]].to_numpy(dtype="float64")
        return pd.Series(~np.isinf(values).any(axis=1), index=df.index)

    @pa.dataframe_check
    def duplicate_timestamp(cls, df: pd.DataFrame) -> pd.Series:
        # Rows arrive sorted by (symbol, timestamp) with a stable sort, so the
        # first of a set of duplicates is kept and the later ones fail.
        return ~(_previous_timestamp(df) == df[TIMESTAMP])

    @pa.dataframe_check
    def timestamp_not_increasing(cls, df: pd.DataFrame) -> pd.Series:
        return ~(_previous_timestamp(df) > df[TIMESTAMP])

    @pa.dataframe_check
    def unparseable(cls, df: pd.DataFrame) -> pd.Series:
        if PARSE_ERROR not in df.columns:
            return pd.Series(True, index=df.index)
        return df[PARSE_ERROR].isna()

    class Config:
        strict = False  # extra columns pass through untouched
        coerce = False  # sources are responsible for types; a wrong type is an error


_CHECK_NAMES = {
    "not_nullable": "missing",
    "greater_than(0)": "not_positive",
    "greater_than_or_equal_to(0)": "negative",
}


def _reason(column: str | None, check: str, context: str) -> str:
    if context == "DataFrameSchema" and not check.startswith(("column_in", "dtype")):
        return check  # a dataframe-wide rule: its name is the reason
    if check.startswith("str_matches"):
        return f"{column}:unsafe_name"
    return f"{column}:{_CHECK_NAMES.get(check, re.sub(r'[^a-z0-9_]+', '_', check).strip('_'))}"


def check_required_columns(frame: pd.DataFrame) -> None:
    """Raise :class:`ContractError` naming the OHLCV columns that are absent."""
    missing = [column for column in OHLCV_COLUMNS if column not in frame.columns]
    if missing:
        raise ContractError(f"missing required columns: {', '.join(missing)}")


def row_failures(frame: pd.DataFrame) -> dict[object, list[str]]:
    """Run the contract lazily; map each failing row's index label to its reasons.

    Rows absent from the result pass every rule. Raises :class:`ContractError`
    for failures that belong to no row (wrong dtype of a whole column).
    """
    check_required_columns(frame)
    if not frame.index.is_unique:
        raise ContractError("row index must be unique to account for every row")
    try:
        RawOHLCV.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return {}

    without_row = cases[cases["index"].isna()]
    if len(without_row):
        first = without_row.iloc[0]
        raise ContractError(
            f"column {first['column']!r} fails {first['check']!r}: {first['failure_case']!r}"
        )
    reasons: dict[object, list[str]] = {}
    seen: set[tuple[object, str]] = set()
    for index, column, check, context in zip(
        cases["index"], cases["column"], cases["check"].astype(str), cases["schema_context"]
    ):
        reason = _reason(column, check, context)
        if (index, reason) in seen:  # dataframe checks report once per column
            continue
        seen.add((index, reason))
        reasons.setdefault(index, []).append(reason)
    return reasons


__all__ = ["RawOHLCV", "check_required_columns", "row_failures"]
