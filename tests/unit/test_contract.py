"""The pandera raw contract: one test per rule, reasons per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.contract import row_failures
from tradingrl.data.errors import ContractError


def bars(n: int = 5, symbol: str = "AAA") -> pd.DataFrame:
    close = 100.0 + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="B", tz="UTC"),
            "symbol": symbol,
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": 1000.0,
        }
    )


def test_clean_rows_pass():
    frame = pd.concat([bars(), bars(symbol="BRK.B"), bars(symbol="^GSPC")], ignore_index=True)
    assert row_failures(frame) == {}


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("open", 0.0, "open:not_positive"),
        ("close", -3.0, "close:not_positive"),
        ("low", -1.0, "low:not_positive"),
        ("volume", -1.0, "volume:negative"),
        ("close", np.nan, "close:missing"),
        ("timestamp", pd.NaT, "timestamp:missing"),
        ("symbol", "../x", "symbol:unsafe_name"),
        ("symbol", "a/b", "symbol:unsafe_name"),
        ("symbol", ".hidden", "symbol:unsafe_name"),
        ("symbol", None, "symbol:missing"),
    ],
)
def test_each_column_rule_names_the_row_and_reason(column, value, reason):
    frame = bars()
    if column == "symbol":
        frame[column] = frame[column].astype(object)
    frame.loc[2, column] = value
    failures = row_failures(frame)
    assert list(failures) == [2]
    assert reason in failures[2]


def test_infinite_values_are_quarantined():
    frame = bars()
    frame.loc[1, ["open", "high", "low", "close"]] = np.inf
    frame.loc[3, "volume"] = np.inf
    assert row_failures(frame) == {1: ["infinite_value"], 3: ["infinite_value"]}


def test_zero_volume_is_allowed():
    frame = bars()
    frame.loc[1, "volume"] = 0.0
    assert row_failures(frame) == {}


def test_high_below_low_fails_both_coherence_rules():
    frame = bars()
    frame.loc[3, ["high", "low"]] = [frame.loc[3, "low"], frame.loc[3, "high"]]
    assert sorted(row_failures(frame)[3]) == ["high_below_open_or_close", "low_above_open_or_close"]


def test_high_below_close_fails():
    frame = bars()
    frame.loc[1, "high"] = frame.loc[1, "close"] - 0.1
    assert row_failures(frame) == {1: ["high_below_open_or_close"]}


def test_missing_price_is_reported_once_not_as_incoherent():
    frame = bars()
    frame.loc[1, "open"] = np.nan
    assert row_failures(frame) == {1: ["open:missing"]}


def test_duplicate_timestamp_quarantines_the_later_row_only():
    frame = bars()
    frame.loc[3, "timestamp"] = frame.loc[2, "timestamp"]
    assert row_failures(frame) == {3: ["duplicate_timestamp"]}


def test_same_timestamp_in_two_symbols_is_fine():
    frame = pd.concat([bars(symbol="AAA"), bars(symbol="BBB")], ignore_index=True)
    assert row_failures(frame) == {}


def test_unsorted_timestamp_is_reported():
    frame = bars()
    frame.loc[2, "timestamp"] = frame.loc[0, "timestamp"] - pd.Timedelta(days=3)
    assert row_failures(frame) == {2: ["timestamp_not_increasing"]}


def test_parse_error_quarantines_with_reason():
    frame = bars()
    frame["parse_error"] = None
    frame.loc[4, "parse_error"] = "x.csv line 6: close='abc'"
    assert row_failures(frame) == {4: ["unparseable"]}


def test_missing_column_is_a_contract_error():
    with pytest.raises(ContractError, match="missing required columns: volume"):
        row_failures(bars().drop(columns="volume"))


def test_wrong_dtype_is_a_contract_error_not_a_quarantine():
    frame = bars()
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)  # naive timestamps
    with pytest.raises(ContractError, match="timestamp"):
        row_failures(frame)
