"""Download daily (or intraday) bars with yfinance, an optional extra.

Never falls back to another source: no package, no network or an empty
answer is a :class:`SourceError` with one line saying which.
"""

from __future__ import annotations

import pandas as pd

from tradingrl.data.columns import OHLCV_COLUMNS, PARSE_ERROR, SYMBOL, TIMESTAMP
from tradingrl.data.errors import SourceError

_RENAME = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}


def download_ohlcv(
    symbols: list[str], *, start: str, end: str | None = None, interval: str = "1d"
) -> pd.DataFrame:
    """Unadjusted OHLCV for ``symbols`` in the raw long format, sorted by
    (symbol, timestamp); timestamps converted to UTC (naive daily dates are
    taken as UTC midnight)."""
    if not symbols:
        raise SourceError("yfinance source needs at least one symbol")
    try:
        import yfinance as yf
    except ImportError:
        raise SourceError(
            "the yfinance source needs the optional extra: pip install 'tradingrl[yfinance]'"
        ) from None
    frames = []
    for symbol in symbols:
        data = yf.download(
            symbol, start=start, end=end, interval=interval, auto_adjust=False,
            progress=False, threads=False, multi_level_index=False,
        )
        if data is None or data.empty:
            raise SourceError(
                f"yfinance returned no data for {symbol!r} ({start}..{end or 'today'}, {interval}):"
                " no network, an unknown ticker, or an empty date range"
            )
        if isinstance(data.columns, pd.MultiIndex):
            data.columns = data.columns.get_level_values(0)
        missing = [c for c in _RENAME if c not in data.columns]
        if missing:
            raise SourceError(f"yfinance answer for {symbol!r} lacks columns: {', '.join(missing)}")
        frame = data[list(_RENAME)].rename(columns=_RENAME).astype("float64")
        index = pd.DatetimeIndex(data.index)
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        frame.insert(0, TIMESTAMP, index.as_unit("ns"))
        frame.insert(1, SYMBOL, symbol)
        frames.append(frame.reset_index(drop=True))
    out = pd.concat(frames, ignore_index=True)
    out[PARSE_ERROR] = None
    out = out.sort_values([SYMBOL, TIMESTAMP], kind="stable").reset_index(drop=True)
    return out[[*OHLCV_COLUMNS, PARSE_ERROR]]
