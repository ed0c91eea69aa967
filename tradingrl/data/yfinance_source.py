"""Download daily (or intraday) bars with yfinance, an optional extra.

Never falls back to another source: no package, no network or an empty
answer is a :class:`SourceError` with one line saying which.

Adjustment (``adjust``), done by yfinance itself:

``split_only`` (default, the behaviour before the option existed)
    ``auto_adjust=False``: Yahoo's OHLC as served, which is already adjusted
    for splits but not for dividends (price return); yfinance's extra
    ``Adj Close`` column is not used.
``total_return``
    ``auto_adjust=True``: yfinance scales open, high and low by
    ``Adj Close / Close`` and makes ``Close`` the adjusted close, so the bars
    are adjusted for splits and dividends (a held position's return).

Yahoo serves no split-unadjusted prices, so there is no ``none``; volume is
Yahoo's (split-adjusted) in both modes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradingrl.data.columns import OHLCV_COLUMNS, PARSE_ERROR, SYMBOL, TIMESTAMP
from tradingrl.data.errors import SourceError

_RENAME = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}

# adjust -> yfinance's auto_adjust
ADJUST_MODES = {"split_only": False, "total_return": True}


def download_ohlcv(
    symbols: list[str], *, start: str, end: str | None = None, interval: str = "1d",
    adjust: str = "split_only",
) -> pd.DataFrame:
    """OHLCV for ``symbols`` in the raw long format, sorted by (symbol,
    timestamp), adjusted as ``adjust`` says (see the module docstring);
    timestamps converted to UTC (naive daily dates are taken as UTC midnight)."""
    if not symbols:
        raise SourceError("yfinance source needs at least one symbol")
    auto_adjust = _auto_adjust(adjust)
    try:
        import yfinance as yf
    except ImportError:
        raise SourceError(
            "the yfinance source needs the optional extra: pip install 'tradingrl[yfinance]'"
        ) from None
    frames = []
    for symbol in symbols:
        data = yf.download(
            symbol, start=start, end=end, interval=interval, auto_adjust=auto_adjust,
            actions=False, progress=False, threads=False, multi_level_index=False,
        )
        if data is None or data.empty:
            raise SourceError(
                f"yfinance returned no data for {symbol!r} ({start}..{end or 'today'}, {interval}):"
                " no network, an unknown ticker, or an empty date range"
            )
        frames.append(yahoo_to_long(data, symbol, adjust=adjust))
    out = pd.concat(frames, ignore_index=True)
    out[PARSE_ERROR] = None
    out = out.sort_values([SYMBOL, TIMESTAMP], kind="stable").reset_index(drop=True)
    return out[[*OHLCV_COLUMNS, PARSE_ERROR]]


def _auto_adjust(adjust: str) -> bool:
    if adjust not in ADJUST_MODES:
        hint = (" (Yahoo serves split-adjusted prices only)"
                if adjust in ("none", "unadjusted", "raw") else "")
        raise SourceError(
            f"ingest.yfinance.adjust must be one of {', '.join(ADJUST_MODES)}, got {adjust!r}{hint}"
        )
    return ADJUST_MODES[adjust]


def yahoo_to_long(data: pd.DataFrame, symbol: str, *, adjust: str) -> pd.DataFrame:
    """One symbol's ``yf.download`` answer (Date index; Open, High, Low, Close,
    Volume, and ``Adj Close`` when ``auto_adjust=False``) as long rows.

    The prices are taken as yfinance returned them for ``adjust``; an answer
    that does not match the mode (an ``Adj Close`` column that differs from
    ``Close`` under ``total_return``: yfinance did not adjust) is an error,
    never a silently unadjusted series.
    """
    _auto_adjust(adjust)
    if isinstance(data.columns, pd.MultiIndex):
        data = data.copy()
        data.columns = data.columns.get_level_values(0)
    missing = [c for c in _RENAME if c not in data.columns]
    if missing:
        raise SourceError(f"yfinance answer for {symbol!r} lacks columns: {', '.join(missing)}")
    if adjust == "total_return" and "Adj Close" in data.columns:
        close = data["Close"].to_numpy(dtype="float64")
        adj = data["Adj Close"].to_numpy(dtype="float64")
        if not np.allclose(close, adj, rtol=1e-9, equal_nan=True):
            raise SourceError(
                f"yfinance answer for {symbol!r} is not total-return adjusted (Adj Close differs"
                " from Close with auto_adjust=True); is the installed yfinance too old?"
            )
    frame = data[list(_RENAME)].rename(columns=_RENAME).astype("float64")
    index = pd.DatetimeIndex(data.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    frame.insert(0, TIMESTAMP, index.as_unit("ns"))
    frame.insert(1, SYMBOL, symbol)
    return frame.reset_index(drop=True)
