"""Names of the long-format OHLCV table every source produces.

One row per (symbol, bar): ``timestamp`` (datetime64[ns, UTC], the bar's
session time), ``symbol`` (str), prices ``open high low close`` (float64, in the
quote currency) and ``volume`` (float64, shares or contracts). Sources may add
``parse_error`` (str or null): the original text of cells that could not be
parsed, so a quarantined row keeps what the file said.
"""

from __future__ import annotations

TIMESTAMP = "timestamp"
SYMBOL = "symbol"
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VOLUME = "volume"
OHLCV_COLUMNS: tuple[str, ...] = (TIMESTAMP, SYMBOL, *PRICE_COLUMNS, VOLUME)
PARSE_ERROR = "parse_error"

# Symbols become parts of file names and report keys downstream, so they are
# restricted to letters, digits and . _ - = ^ (tickers such as BRK.B, ^GSPC,
# EURUSD=X), never starting with a dot and never containing a path separator.
SYMBOL_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9._=^-]{0,31}$"
