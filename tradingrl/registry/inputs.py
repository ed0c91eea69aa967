"""What a decision takes in: the OHLCV window and the accounts, checked.

:func:`prepare_ohlcv` applies the raw data contract's rules
(:mod:`tradingrl.data.contract`) to a serving window, fast enough to run on
every request (pandera's lazy validation costs ~12 ms per call, more than the
rest of the checks together), and names the first broken row with the
contract's own reason. :class:`AccountState` is one symbol's account at the
decision bar, in the units of the environment's observation.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class AccountState:
    """One symbol's account at the close of the decision bar t.

    position: shares * close_t / equity, signed fraction of equity held.
    cash_fraction: cash / equity; position + cash_fraction must be 1 (the
        single-asset account holds nothing else).
    unrealised_pnl: shares * (close_t - average entry price) / equity.
    drawdown: 1 - equity / peak equity of the account, in [0, 1).
    equity: account value in the quote currency (> 0; only ratios and the
        risk layer's breaker use it).
    peak_equity: the risk layer's peak equity (its ``RiskState``; 0.0 = none
        yet, the first equity becomes it). After a breaker release it is
        re-based, so it can differ from the account's own peak.
    breaker_active / bars_since_trip: the risk layer's drawdown breaker state.

    The defaults are a new flat account: position 0, all cash, no PnL, no
    drawdown, a fresh risk state (what the environment starts an episode
    with). Pass back the ``risk_*`` columns of a decision to carry the risk
    state to the next one.
    """

    position: float = 0.0
    cash_fraction: float = 1.0
    unrealised_pnl: float = 0.0
    drawdown: float = 0.0
    equity: float = 1.0
    peak_equity: float = 0.0
    breaker_active: bool = False
    bars_since_trip: int = 0

    def __post_init__(self) -> None:
        for name in ("position", "cash_fraction", "unrealised_pnl", "drawdown", "equity",
                     "peak_equity"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"account {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"account {name} must be finite, got {value!r}")
        if not 0.0 <= self.drawdown < 1.0:
            raise ValueError(f"account drawdown must be in [0, 1), got {self.drawdown}")
        if not self.equity > 0.0:
            raise ValueError(f"account equity must be > 0, got {self.equity}")
        if self.peak_equity < 0.0:
            raise ValueError(f"account peak_equity must be >= 0, got {self.peak_equity}")
        if abs(self.position + self.cash_fraction - 1.0) > 1e-6:
            raise ValueError(f"account position + cash_fraction must be 1, got "
                             f"{self.position} + {self.cash_fraction}")
        if not isinstance(self.breaker_active, (bool, np.bool_)):
            raise TypeError(f"account breaker_active must be a bool, got {self.breaker_active!r}")
        if (isinstance(self.bars_since_trip, (bool, np.bool_))
                or not isinstance(self.bars_since_trip, numbers.Integral)):
            raise TypeError(f"account bars_since_trip must be an int, got {self.bars_since_trip!r}")
        if self.bars_since_trip < 0 or (self.bars_since_trip and not self.breaker_active):
            raise ValueError("account bars_since_trip must be >= 0, and 0 unless breaker_active")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AccountState:
        """From a JSON-like mapping of some of the fields (others default)."""
        return _from_mapping(cls, values, "account")


@dataclass(frozen=True)
class PortfolioAccountState:
    """A portfolio agent's one account at the close of the decision bar t.

    weights: symbol -> shares * close_t / equity (signed fraction of equity);
        symbols left out hold nothing. cash_fraction: cash / equity;
        sum(weights) + cash_fraction must be 1. unrealised_pnl: summed over
        symbols, against each position's average entry price, / equity.
    drawdown, equity, peak_equity, breaker_active, bars_since_trip: as in
        :class:`AccountState` (the risk layer's state is the book's).

    The defaults are a new all-cash account, as the portfolio environment
    starts an episode.
    """

    weights: Mapping[str, float] = field(default_factory=dict)
    cash_fraction: float | None = None  # None: 1 - sum(weights)
    unrealised_pnl: float = 0.0
    drawdown: float = 0.0
    equity: float = 1.0
    peak_equity: float = 0.0
    breaker_active: bool = False
    bars_since_trip: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Mapping):
            raise TypeError(f"account weights must be a mapping of symbol -> weight, got "
                            f"{type(self.weights).__name__}")
        for symbol, value in self.weights.items():
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"account weight of {symbol} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"account weight of {symbol} must be finite, got {value!r}")
        if self.cash_fraction is None:
            object.__setattr__(self, "cash_fraction",
                               1.0 - float(sum(float(v) for v in self.weights.values())))
        # The shared fields' checks are AccountState's (position 1 - cash keeps
        # its sum rule out of the way; this account's sum rule is below).
        AccountState(position=1.0 - float(self.cash_fraction),
                     **{f.name: getattr(self, f.name) for f in fields(AccountState)
                        if f.name not in ("position",)})
        total = float(sum(float(v) for v in self.weights.values())) + float(self.cash_fraction)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"account weights + cash_fraction must sum to 1, got {total}")

    def weight_vector(self, symbols: list[str] | tuple[str, ...]) -> np.ndarray:
        """The weights in ``symbols``' order (0 for symbols left out);
        ValueError for a weight of a symbol not in ``symbols``."""
        unknown = sorted(str(s) for s in self.weights if s not in symbols)
        if unknown:
            raise ValueError(f"account weights given for symbol(s) {unknown} that the "
                             f"portfolio does not hold ({list(symbols)})")
        return np.array([float(self.weights.get(s, 0.0)) for s in symbols])

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PortfolioAccountState:
        """From a JSON-like mapping of some of the fields (others default)."""
        return _from_mapping(cls, values, "portfolio account")


def _from_mapping(cls: Any, values: Mapping[str, Any], what: str) -> Any:
    """``cls(**values)`` for a JSON-like mapping of some of its dataclass
    fields, unknown names refused with the known ones."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{what} must be a mapping of fields, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {unknown}; known: {sorted(known)}")
    return cls(**dict(values))


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def utc_nanoseconds(stamps: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch (UTC) of a tz-aware datetime column."""
    return stamps.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").view(np.int64)


def _parse_timestamps(column: pd.Series) -> pd.Series:
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        stamps = column.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(dtype):
        stamps = column.dt.tz_localize("UTC")
    else:
        stamps = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    bad = stamps.isna().to_numpy()
    if bad.any():
        i = _first_bad(bad)
        raise ValueError(f"row {i}: timestamp {column.iloc[i]!r} is missing or not an ISO-8601 "
                         "time")
    return stamps.astype("datetime64[ns, UTC]")


class OhlcvArrays(NamedTuple):
    """A checked OHLCV window as arrays, rows grouped by symbol (sorted),
    each symbol's rows in their given (increasing) time order.

    symbol: (N,) object array of str; ns: (N,) int64 UTC nanoseconds;
    open, high, low, close, volume: (N,) float64; row: (N,) int64, each
    row's position in the input; starts / stops: each symbol's slice.
    """

    symbol: np.ndarray
    ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    row: np.ndarray
    starts: np.ndarray
    stops: np.ndarray

    def timestamp(self, i: int) -> pd.Timestamp:
        """Row i's time as a UTC Timestamp."""
        return pd.Timestamp(int(self.ns[i]), tz="UTC")


def check_ohlcv(ohlcv: pd.DataFrame) -> OhlcvArrays:
    """:func:`prepare_ohlcv`'s checks, returning arrays (the serving path:
    no frame is built)."""
    from tradingrl.data.columns import SYMBOL_PATTERN
    from tradingrl.data.contract import check_required_columns

    if not isinstance(ohlcv, pd.DataFrame):
        raise TypeError(f"ohlcv must be a pandas DataFrame, got {type(ohlcv).__name__}")
    check_required_columns(ohlcv)
    if ohlcv.empty:
        raise ValueError("ohlcv has no rows")
    raw_symbols = ohlcv["symbol"]
    missing = raw_symbols.isna().to_numpy()
    if missing.any():
        raise ValueError(f"row {_first_bad(missing)}: symbol is missing")
    symbols = raw_symbols.astype(str).to_numpy()
    pattern = re.compile(SYMBOL_PATTERN)
    for symbol in pd.unique(symbols):
        if not pattern.match(symbol):
            raise ValueError(f"symbol {symbol!r} is not a safe symbol name ({SYMBOL_PATTERN})")
    ns = utc_nanoseconds(_parse_timestamps(ohlcv["timestamp"]))
    values = {}
    for name in (*PRICE_COLUMNS, "volume"):
        raw = ohlcv[name]
        column = (raw.to_numpy(dtype=np.float64)  # plain numpy numbers: nothing to parse
                  if isinstance(raw.dtype, np.dtype) and raw.dtype.kind in "fiu"
                  else pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64))
        bad = ~np.isfinite(column)
        if bad.any():
            i = _first_bad(bad)
            value = raw.iloc[i]
            shown = repr(value) if isinstance(value, str) else str(value)
            raise ValueError(f"row {i} ({symbols[i]}): {name} {shown} is missing or not a "
                             "finite number")
        low_bad = column < 0 if name == "volume" else column <= 0
        if low_bad.any():
            i = _first_bad(low_bad)
            rule = ">= 0" if name == "volume" else "> 0"
            raise ValueError(f"row {i} ({symbols[i]}): {name} must be {rule}, got {column[i]}")
        values[name] = column
    o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
    for rule, bad in (("high_below_open_or_close", h < np.maximum(o, c)),
                      ("low_above_open_or_close", lo > np.minimum(o, c))):
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"row {i} ({symbols[i]}): {rule} (open {o[i]}, high {h[i]}, "
                             f"low {lo[i]}, close {c[i]})")
    order = np.argsort(symbols, kind="stable")
    sorted_symbols = symbols[order]
    ns = ns[order]
    same = sorted_symbols[1:] == sorted_symbols[:-1]
    step = np.diff(ns)
    for rule, bad in (("duplicate_timestamp", same & (step == 0)),
                      ("timestamp_not_increasing", same & (step < 0))):
        if bad.any():
            j = _first_bad(bad) + 1
            stamp = pd.Timestamp(int(ns[j]), tz="UTC").isoformat()
            raise ValueError(f"row {int(order[j])} ({sorted_symbols[j]}): {rule} at {stamp} "
                             "(rows of a symbol must be in strictly increasing time)")
    starts = np.flatnonzero(np.r_[True, ~same])
    stops = np.r_[starts[1:], len(order)]
    return OhlcvArrays(sorted_symbols, ns, *(values[k][order] for k in (*PRICE_COLUMNS, "volume")),
                       order.astype(np.int64), starts, stops)


def prepare_ohlcv(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """Check a long-format OHLCV window and return it with UTC timestamps,
    str symbols and float64 values, rows grouped by symbol (each symbol's
    rows in their given order, which must be strictly increasing in time).

    Rules are the raw data contract's (:mod:`tradingrl.data.contract`):
    prices finite and > 0, volume finite and >= 0, low <= min(open, close),
    high >= max(open, close), no duplicate or decreasing timestamps within a
    symbol; timestamps are datetimes or ISO-8601 strings (naive ones are
    UTC). The first broken rule raises a one-line ValueError naming the row.
    """
    bars = check_ohlcv(ohlcv)
    utc = pd.DatetimeIndex(bars.ns.view("datetime64[ns]")).tz_localize("UTC")
    return pd.DataFrame({"timestamp": utc, "symbol": bars.symbol,
                         **{k: getattr(bars, k) for k in (*PRICE_COLUMNS, "volume")}})


def parse_accounts(
    account: Mapping[str, AccountState | Mapping[str, Any]] | None, symbols: list[str]
) -> dict[str, AccountState]:
    """One AccountState per symbol: the given ones, a new flat account for
    the rest. Accounts for symbols not in the window are refused (a typo
    would otherwise trade a flat account silently)."""
    if account is None:
        account = {}
    if not isinstance(account, Mapping):
        raise TypeError(f"account must be a mapping of symbol -> account, got "
                        f"{type(account).__name__}")
    unknown = sorted(str(s) for s in account if s not in symbols)
    if unknown:
        raise ValueError(f"account given for symbol(s) {unknown} that the OHLCV window lacks")
    return {s: (a if isinstance(a, AccountState) else AccountState.from_mapping(a))
            for s, a in ((s, account.get(s, AccountState())) for s in symbols)}
