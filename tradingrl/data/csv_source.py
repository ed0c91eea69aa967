"""Read OHLCV CSV files as people export them into the long raw format.

Handles: any case/spacing of column names and common aliases (``Date``,
``Datetime``, ``Close/Last``, ``Vol.``, ``Ticker``...), separate date and time
columns, ``,`` ``;`` tab or ``|`` separators, decimal commas, thousands
separators, currency signs, volume suffixes (``1.2M``), ISO, US/European and
epoch timestamps, explicit UTC offsets (mixed offsets in one file included),
one file per symbol (symbol from the file name) or a long file with a symbol
column, and a folder of such files.

Nothing is dropped silently: a cell that cannot be parsed becomes missing and
its original text goes into ``parse_error`` (file and line), so the validate
stage quarantines the row with the evidence. Whole-file problems (missing,
empty, header only, binary, missing columns) raise :class:`SourceError` with a
one-line message.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tradingrl.data.columns import OHLCV_COLUMNS, PARSE_ERROR, PRICE_COLUMNS, SYMBOL, TIMESTAMP
from tradingrl.data.errors import SourceError

CSV_SUFFIXES = (".csv", ".txt", ".tsv", ".csv.gz")

# Normalised header -> canonical column. Normalising lower-cases, strips and
# turns runs of spaces/underscores/dots/slashes into one underscore.
_ALIASES: dict[str, str] = {
    "timestamp": TIMESTAMP, "datetime": TIMESTAMP, "date_time": TIMESTAMP, "date": TIMESTAMP,
    "time": TIMESTAMP, "dt": TIMESTAMP, "open_time": TIMESTAMP, "gmt_time": TIMESTAMP,
    "local_time": TIMESTAMP,
    "open": "open", "open_price": "open", "opening_price": "open",
    "high": "high", "high_price": "high", "max": "high",
    "low": "low", "low_price": "low", "min": "low",
    "close": "close", "close_price": "close", "close_last": "close", "closing_price": "close",
    "last": "close", "price": "close",
    "volume": "volume", "vol": "volume", "volume_traded": "volume",
    "symbol": SYMBOL, "ticker": SYMBOL, "sym": SYMBOL, "instrument": SYMBOL, "asset": SYMBOL,
    "adj_close": "adj_close", "adjusted_close": "adj_close", "adj_close_price": "adj_close",
}
_MISSING_TEXT = {"", "nan", "na", "n/a", "null", "none", "-", "#n/a", "nat"}
# The spellings files really use, matched without string transforms (fast).
_MISSING_EXACT = sorted(
    _MISSING_TEXT | {t.upper() for t in _MISSING_TEXT} | {"NaN", "NaT", "None", "Null", "N/A", "#N/A"}
)
_OFFSET_RE = r"(?:[zZ]|[+-]\d{2}:?\d{2}|\s*UTC|\s*GMT)$"
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9}


@dataclass
class CsvReadStats:
    """What reading produced, for the ingest report."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    blank_lines_skipped: int = 0
    cells_unparseable: int = 0

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "rows": self.rows,
            "blank_lines_skipped": self.blank_lines_skipped,
            "cells_unparseable": self.cells_unparseable,
        }


def _normalise_header(name: str) -> str:
    return re.sub(r"[\s_./\\-]+", "_", str(name).strip().lower()).strip("_")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise SourceError(f"{path.name}: not a readable gzip file: {error}") from None
    if not data.strip():
        raise SourceError(f"{path.name}: empty file")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel "Unicode text"
        data = data.decode("utf-16").encode("utf-8")
    head = data[:65536]
    if b"\x00" in head:
        raise SourceError(f"{path.name}: binary content, not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="strict") if _cp1252_ok(data) else None
        if text is None:
            raise SourceError(f"{path.name}: not UTF-8 or CP-1252 text (binary file?)") from None
    sample = text[:65536]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n")
    if control > 0.01 * len(sample):
        raise SourceError(f"{path.name}: binary content, not a CSV text file")
    return text


def _cp1252_ok(data: bytes) -> bool:
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return True


def _sniff_separators(text: str) -> tuple[str, str]:
    """Return (field separator, decimal mark) from the header and first lines."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    header = lines[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    sep = max(counts, key=counts.get)
    if counts[sep] == 0:
        raise SourceError("no column separator found in the header (expected , ; tab or |)")
    body = "\n".join(lines[1:])
    decimal = "," if sep != "," and re.search(r"\d,\d", body) else "."
    return sep, decimal


def _symbol_from_name(name: str) -> str:
    """``BRK.B.csv`` -> ``BRK.B``; ``AAPL.csv.gz`` -> ``AAPL``."""
    lower = name.lower()
    for suffix in sorted(CSV_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _blank_rows(raw: pd.DataFrame) -> pd.Series:
    """Rows read from empty or whitespace-only lines (every field empty)."""
    empty = raw.isna() | (raw == "")
    blank = empty.iloc[:, 1:].all(axis=1).to_numpy(dtype=bool)
    first = pd.Series(raw.iloc[:, 0].to_numpy()[blank], dtype=object)
    blank[blank] = first.fillna("").str.strip().eq("").to_numpy(dtype=bool)
    return pd.Series(blank, index=raw.index)


def _first_long_line(text: str, sep: str) -> int:
    # newline=None: a bare \r ends a line, as it does for pandas' parser.
    rows = csv.reader(io.StringIO(text, newline=None), delimiter=sep)
    width = len(next(rows))
    for number, row in enumerate(rows, start=2):
        if len(row) > width:
            return number
    return 0


def _parse_numbers(values: pd.Series, decimal: str, allow_suffix: bool) -> pd.Series:
    """Text to float64; unparseable text becomes NaN (the caller records it).

    Plain numbers are read in one C-level pass; only cells that fail it (and
    every cell of a decimal-comma file) go through the string clean-up.
    """
    if decimal == ".":
        fast = _to_float(values)
        retry = fast.isna() & (values != "")
        if retry.any():
            fast[retry] = _clean_numbers(values[retry], decimal, allow_suffix)
        return fast
    return _clean_numbers(values, decimal, allow_suffix)


def _clean_numbers(values: pd.Series, decimal: str, allow_suffix: bool) -> pd.Series:
    text = values.str.strip().str.replace(r"[$€£¥\s\u00a0']", "", regex=True)
    if decimal == ",":
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        text = text.str.replace(",", "", regex=False)
    multiplier = pd.Series(1.0, index=values.index)
    if allow_suffix:
        suffix = text.str[-1:].str.lower()
        has_suffix = suffix.isin(list(_SUFFIX)) & text.str[:-1].str.match(r"^[+-]?[\d.]+$")
        multiplier[has_suffix] = suffix[has_suffix].map(_SUFFIX)
        text = text.where(~has_suffix, text.str[:-1])
    return _to_float(text) * multiplier


def _to_float(text: pd.Series) -> pd.Series:
    """Text to float64, NaN where it is not a number, correctly rounded.

    pd.to_numeric finds what parses, but its fast C parser is off by one ulp
    on ~1/6 of decimal strings; the values are then converted again by
    Python's float(), which rounds exactly, so a CSV round-trip loses nothing.
    """
    approx = pd.to_numeric(text, errors="coerce")
    ok = approx.notna().to_numpy()
    out = np.full(len(text), np.nan)
    try:
        out[ok] = text.to_numpy(dtype=object)[ok].astype(np.float64)
    except ValueError:  # a form only pandas reads: keep its (at most 1 ulp off) value
        out[ok] = approx.to_numpy(dtype=np.float64)[ok]
    return pd.Series(out, index=text.index)


def _parse_timestamps(values: pd.Series, timezone: str, dayfirst: bool) -> pd.Series:
    """Text to datetime64[ns, UTC]; unparseable text becomes NaT.

    Values with an explicit offset (``Z``, ``+01:00``, ``UTC``) are converted
    from it; naive values are read in ``timezone``. All-digit columns are epoch
    seconds, milliseconds or microseconds, chosen by magnitude.
    """
    text = values
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    present = text[text != ""].str.strip()
    if len(present) and present.str.fullmatch(r"\d{9,17}").all():
        numbers = present.astype("int64")
        unit = "s" if numbers.max() < 1e11 else "ms" if numbers.max() < 1e14 else "us"
        out[present.index] = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
        return out

    has_offset = text.str.contains(_OFFSET_RE, regex=True, na=False)
    for aware, part in ((True, text[has_offset]), (False, text[~has_offset])):
        if part.empty:
            continue
        cleaned = part.str.replace(r"\s*(UTC|GMT)$", "+00:00", regex=True) if aware else part
        parsed = _to_datetime(cleaned, utc=aware, dayfirst=dayfirst)
        if not aware:
            parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
            parsed = parsed.dt.tz_convert("UTC")
        out[part.index] = parsed.dt.as_unit("ns")
    return out


def _to_datetime(text: pd.Series, *, utc: bool, dayfirst: bool) -> pd.Series:
    # ISO 8601 first (fast, unambiguous); the rest through the flexible parser.
    parsed = pd.to_datetime(text, utc=utc, format="ISO8601", errors="coerce")
    retry = parsed.isna() & text.notna() & (text != "")
    if retry.any():
        parsed = parsed.astype(object)
        parsed[retry] = pd.to_datetime(
            text[retry].str.strip(), utc=utc, format="mixed", dayfirst=dayfirst, errors="coerce"
        )
        parsed = pd.to_datetime(parsed, utc=utc)
    return parsed


def _canonical_columns(raw: pd.DataFrame, name: str) -> pd.DataFrame:
    mapping: dict[str, str] = {}
    for column in raw.columns:
        canonical = _ALIASES.get(_normalise_header(column))
        if canonical is None or canonical in mapping.values():
            continue
        mapping[column] = canonical
    # Built column by column: renaming could leave two columns of one name
    # (a file with both "Date" and "timestamp" keeps the first).
    frame = pd.DataFrame({canonical: raw[column] for column, canonical in mapping.items()})
    normalised = {_normalise_header(c): c for c in raw.columns}
    # Separate date and time columns: join them into one timestamp.
    if "date" in normalised and "time" in normalised:
        frame[TIMESTAMP] = (
            raw[normalised["date"]].fillna("") + " " + raw[normalised["time"]].fillna("")
        )
    required = [c for c in OHLCV_COLUMNS if c != SYMBOL]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, raw.columns))
        raise SourceError(
            f"{name}: missing required columns: {', '.join(missing)} (found: {found})"
        )
    return frame


def read_ohlcv_csv(
    path: Path | str,
    *,
    symbol: str | None = None,
    timezone: str = "UTC",
    dayfirst: bool = False,
    adjust: bool = False,
    stats: CsvReadStats | None = None,
) -> pd.DataFrame:
    """Read one CSV file into the raw long format (see :mod:`tradingrl.data.columns`).

    ``symbol`` names the instrument when the file has no symbol column
    (default: the file name without suffix). ``timezone`` applies to naive
    timestamps. ``adjust`` scales open/high/low/close by ``Adj Close / Close``
    when the file has an adjusted close. The result keeps file order.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    text = _read_text(path)
    sep, decimal = _sniff_separators(text)
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header
            # and then drops them: that is lost data, so it is an error here.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(
                io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, index_col=False,
                skip_blank_lines=False, quoting=csv.QUOTE_MINIMAL, skipinitialspace=True,
            )
    except pd.errors.ParserWarning:
        line = _first_long_line(text, sep)
        raise SourceError(f"{path.name}: line {line} has more fields than the header") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as error:
        message = str(error).strip().splitlines()[-1]
        raise SourceError(f"{path.name}: not a readable CSV file: {message}") from None
    raw = raw.loc[:, [not str(c).startswith("Unnamed:") or raw[c].ne("").any() for c in raw]]
    if raw.shape[1] == 0:  # e.g. a header of separators only, over empty columns
        raise SourceError(f"{path.name}: no named columns in the header and no values under it")
    blank = _blank_rows(raw)
    line_numbers = pd.Series(np.arange(len(raw)) + 2, index=raw.index)  # header is line 1
    raw, line_numbers = raw[~blank], line_numbers[~blank]
    if raw.empty:
        raise SourceError(f"{path.name}: header only, no data rows")
    frame = _canonical_columns(raw, path.name)

    errors = pd.Series("", index=frame.index, dtype=object)
    unparseable = 0

    def parse(column: str, parser) -> pd.Series:
        """Parse one column; remember the original text of cells that fail.
        Empty and NA-like cells are missing, not unparseable. String clean-up
        runs only on cells that did not parse (it dominates on big files)."""
        nonlocal unparseable
        original = frame[column]
        missing = original.isna() | original.isin(_MISSING_EXACT)
        parsed = parser(original.where(~missing, ""))
        parsed[missing] = None
        bad = ~missing & parsed.isna()
        if bad.any():  # " N/A " and other padded or odd-case markers
            padded = original[bad].str.strip().str.lower().isin(_MISSING_TEXT)
            missing[padded.index[padded]] = True
            bad &= ~missing
        errors[bad] = errors[bad] + f"{column}=" + original[bad].map(repr) + " "
        unparseable += int(bad.sum())
        return parsed

    out = pd.DataFrame(index=frame.index)
    out[TIMESTAMP] = parse(TIMESTAMP, lambda text: _parse_timestamps(text, timezone, dayfirst))
    if SYMBOL in frame.columns:
        sym = frame[SYMBOL].str.strip()
        out[SYMBOL] = sym.where(sym != "", None)
    else:
        out[SYMBOL] = symbol if symbol is not None else _symbol_from_name(path.name)
    for column in (*PRICE_COLUMNS, "volume", "adj_close"):
        if column not in frame.columns:
            continue
        suffix = column == "volume"
        out[column] = parse(column, lambda text, suffix=suffix: _parse_numbers(text, decimal, allow_suffix=suffix))
    if adjust:
        if "adj_close" not in out.columns:
            raise SourceError(f"{path.name}: adjust=true needs an adjusted close column")
        ratio = out["adj_close"] / out["close"]
        for column in PRICE_COLUMNS:
            out[column] = out[column] * ratio
    out = out.drop(columns=["adj_close"], errors="ignore")

    has_error = errors != ""
    out[PARSE_ERROR] = None
    out.loc[has_error, PARSE_ERROR] = (
        f"{path.name} line " + line_numbers[has_error].astype(str) + ": " + errors[has_error].str.strip()
    )
    if stats is not None:
        stats.files.append(path.name)
        stats.rows += len(out)
        stats.blank_lines_skipped += int(blank.sum())
        stats.cells_unparseable += unparseable
    return out.reset_index(drop=True)


def read_ohlcv_path(
    path: Path | str,
    *,
    symbol: str | None = None,
    timezone: str = "UTC",
    dayfirst: bool = False,
    adjust: bool = False,
    stats: CsvReadStats | None = None,
) -> pd.DataFrame:
    """Read a CSV file or every CSV file in a folder; sort by (symbol, timestamp).

    The sort is stable, so of rows with the same symbol and timestamp the one
    read first stays first (the contract keeps it and quarantines the rest).
    Rows with a missing timestamp go last within their symbol.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(CSV_SUFFIXES)
        )
        if not files:
            raise SourceError(f"{path}: folder has no CSV files ({', '.join(CSV_SUFFIXES)})")
        if symbol is not None and len(files) > 1:
            raise SourceError(f"{path}: one symbol given for {len(files)} files")
    elif path.exists():
        files = [path]
    else:
        raise SourceError(f"{path}: no such file or folder")
    frames = [
        read_ohlcv_csv(
            f, symbol=symbol, timezone=timezone, dayfirst=dayfirst, adjust=adjust, stats=stats
        )
        for f in files
    ]
    frame = pd.concat(frames, ignore_index=True)
    frame[SYMBOL] = frame[SYMBOL].astype(object)
    frame = frame.sort_values([SYMBOL, TIMESTAMP], kind="stable", na_position="last")
    return frame.reset_index(drop=True)[[*OHLCV_COLUMNS, PARSE_ERROR]]
