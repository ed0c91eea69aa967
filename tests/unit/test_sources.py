"""Source selection, and the yfinance source without network (a fake module)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.errors import SourceError
from tradingrl.data.sources import load_source


def test_synthetic_source_is_deterministic_and_reports():
    options = {"n_symbols": 3, "n_bars": 50, "seed": 5}
    first, report = load_source("synthetic", options)
    second, _ = load_source("synthetic", options)
    pd.testing.assert_frame_equal(first, second)
    assert report["rows"] == 150 and report["symbols"] == 3 and report["source"] == "synthetic"


def test_unknown_source_and_unknown_options_are_errors():
    with pytest.raises(SourceError, match="unknown source 'parquet'"):
        load_source("parquet", {})
    with pytest.raises(SourceError, match="bad options for the synthetic source"):
        load_source("synthetic", {"n_symbol": 3})
    with pytest.raises(SourceError, match="unknown options for the csv source: delimiter"):
        load_source("csv", {"path": "x.csv", "delimiter": ";"})


def test_csv_source_reports_files_and_rows(tmp_path):
    (tmp_path / "SPY.csv").write_text(
        "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n2024-01-03,1.5,2,1,1.8,12\n"
    )
    _, report = load_source("csv", {"path": str(tmp_path)})
    assert report["files"] == ["SPY.csv"] and report["rows"] == 2
    assert report["first"].startswith("2024-01-02")


def test_csv_source_missing_path_never_falls_back(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        load_source("csv", {"path": str(tmp_path / "absent")})


def fake_yfinance(monkeypatch, download):
    module = types.ModuleType("yfinance")
    module.download = download
    monkeypatch.setitem(sys.modules, "yfinance", module)


def yahoo_frame(n: int = 3) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=n), name="Date")
    close = np.linspace(100, 102, n)
    return pd.DataFrame(
        {"Adj Close": close * 0.99, "Close": close, "High": close + 1, "Low": close - 1,
         "Open": close - 0.5, "Volume": np.full(n, 1e6)},
        index=index,
    )


def test_yfinance_source_converts_to_long_utc(monkeypatch):
    calls = []

    def download(symbol, **kwargs):
        calls.append((symbol, kwargs))
        return yahoo_frame()

    fake_yfinance(monkeypatch, download)
    frame, _ = load_source("yfinance", {"symbols": ["SPY", "QQQ"], "start": "2024-01-01"})
    assert frame["symbol"].tolist() == ["QQQ"] * 3 + ["SPY"] * 3
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert frame["close"].iloc[0] == 100.0  # unadjusted
    assert [c[0] for c in calls] == ["SPY", "QQQ"]
    assert all(c[1]["auto_adjust"] is False for c in calls)


def test_yfinance_without_network_is_a_clear_error(monkeypatch):
    # yfinance prints network failures and returns an empty frame.
    fake_yfinance(monkeypatch, lambda symbol, **kwargs: pd.DataFrame())
    with pytest.raises(SourceError, match="yfinance returned no data for 'SPY'.*no network"):
        load_source("yfinance", {"symbols": ["SPY"], "start": "2024-01-01"})


def test_yfinance_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "yfinance", None)  # import raises ImportError
    with pytest.raises(SourceError, match=r"pip install 'tradingrl\[yfinance\]'"):
        load_source("yfinance", {"symbols": ["SPY"], "start": "2024-01-01"})
