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


def yahoo_download(close, adj_close):
    """A stand-in for ``yf.download`` on one ticker, shaped like its answer: with
    ``auto_adjust=False`` Yahoo's OHLC (split-adjusted) plus ``Adj Close``; with
    ``auto_adjust=True`` (yfinance's documented arithmetic) open/high/low scaled
    by Adj Close / Close, Close the adjusted close and no Adj Close column."""
    index = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=len(close)), name="Date")
    close, adj_close = np.asarray(close, float), np.asarray(adj_close, float)
    raw = pd.DataFrame({"Adj Close": adj_close, "Close": close, "High": close * 1.01,
                        "Low": close * 0.98, "Open": close * 0.995, "Volume": 1e6}, index=index)
    calls = []

    def download(symbol, **kwargs):
        calls.append(kwargs)
        if not kwargs["auto_adjust"]:
            return raw.copy()
        ratio = raw["Adj Close"] / raw["Close"]
        adjusted = raw.drop(columns="Adj Close")
        for column in ("Open", "High", "Low"):
            adjusted[column] = raw[column] * ratio
        adjusted["Close"] = raw["Adj Close"]
        return adjusted

    return download, raw, calls


# A dividend of 1.0 going ex on the third bar: earlier bars' Adj Close are lower.
CLOSE = [100.0, 101.0, 100.5, 102.0]
ADJ_CLOSE = [99.0, 100.0, 100.5, 102.0]


@pytest.mark.parametrize(("adjust", "auto_adjust"), [("split_only", False), ("total_return", True)])
def test_yfinance_adjust_picks_the_columns_it_names(monkeypatch, adjust, auto_adjust):
    download, raw, calls = yahoo_download(CLOSE, ADJ_CLOSE)
    fake_yfinance(monkeypatch, download)
    frame, report = load_source("yfinance", {"symbols": ["SPY"], "start": "2024-01-01",
                                             "adjust": adjust})
    assert [c["auto_adjust"] for c in calls] == [auto_adjust]
    factor = raw["Adj Close"] / raw["Close"] if auto_adjust else 1.0
    expected = {"close": raw["Adj Close"] if auto_adjust else raw["Close"],
                "open": raw["Open"] * factor, "high": raw["High"] * factor,
                "low": raw["Low"] * factor, "volume": raw["Volume"]}
    for column, values in expected.items():
        np.testing.assert_allclose(frame[column].to_numpy(), values.to_numpy(), rtol=1e-12)
    assert report["options"]["adjust"] == adjust


def test_yfinance_default_is_split_only_as_before(monkeypatch):
    download, _, calls = yahoo_download(CLOSE, ADJ_CLOSE)
    fake_yfinance(monkeypatch, download)
    frame, _ = load_source("yfinance", {"symbols": ["SPY"], "start": "2024-01-01"})
    assert calls[0]["auto_adjust"] is False
    assert frame["close"].tolist() == CLOSE  # Yahoo's Close, not Adj Close


def test_yahoo_frame_transformation_by_mode():
    from tradingrl.data.yfinance_source import yahoo_to_long

    raw = yahoo_frame(4)  # auto_adjust=False shape: Close and Adj Close
    split_only = yahoo_to_long(raw, "SPY", adjust="split_only")
    assert list(split_only.columns) == ["timestamp", "symbol", "open", "high", "low", "close",
                                        "volume"]
    assert split_only["close"].tolist() == raw["Close"].tolist()
    assert str(split_only["timestamp"].dtype) == "datetime64[ns, UTC]"
    # Under total_return an Adj Close that differs from Close means yfinance did
    # not adjust: an error, never unadjusted bars under the total_return name.
    with pytest.raises(SourceError, match="not total-return adjusted"):
        yahoo_to_long(raw, "SPY", adjust="total_return")
    adjusted = raw.drop(columns="Adj Close")
    assert yahoo_to_long(adjusted, "SPY", adjust="total_return")["close"].tolist() == (
        raw["Close"].tolist())


def test_yfinance_unknown_adjust_is_an_error_before_any_download(monkeypatch):
    def download(symbol, **kwargs):
        raise AssertionError("no download with a bad option")

    fake_yfinance(monkeypatch, download)
    with pytest.raises(SourceError, match="split-adjusted prices only"):
        load_source("yfinance", {"symbols": ["SPY"], "start": "2024-01-01", "adjust": "none"})
    with pytest.raises(SourceError, match="split_only, total_return, got 'dividends'"):
        load_source("yfinance", {"symbols": ["SPY"], "start": "2024-01-01",
                                 "adjust": "dividends"})
