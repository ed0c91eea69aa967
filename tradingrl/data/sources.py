"""Choose a market-data source by name; each returns the raw long format.

Sources: ``synthetic`` (default, no network), ``csv`` (a file or folder of
exported files), ``yfinance`` (optional extra). An unknown name or a source
that fails is an error; nothing falls back to another source.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl.data.errors import SourceError

SOURCES = ("synthetic", "csv", "yfinance")


def source_options(ingest: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                   base_dir: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """(source kind, its options) from params.yaml's ``ingest`` section, with
    ``overrides`` merged in; a relative csv ``path`` is taken from
    ``base_dir`` (the repository root, as the ingest stage reads it)."""
    kind = ingest["source"]
    options = {**dict(ingest.get(kind) or {}), **dict(overrides or {})}
    if kind == "csv" and "path" in options and base_dir is not None:
        options["path"] = str(Path(base_dir) / options["path"])
    return kind, options


def load_source(kind: str, options: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return (raw frame, ingest report) for source ``kind`` with ``options``.

    ``options`` are the keyword arguments of that source (params.yaml's
    ``ingest.<kind>`` section); unknown keys are an error.
    """
    if kind == "synthetic":
        from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market

        config = _build(SyntheticMarketConfig, options, kind)
        frame = generate_market(config)
        details: dict[str, Any] = {"config": dict(options)}
    elif kind == "csv":
        from tradingrl.data.csv_source import CsvReadStats, read_ohlcv_path

        options = dict(options)
        if "path" not in options:
            raise SourceError("csv source needs a path (ingest.csv.path)")
        path = Path(options.pop("path"))
        stats = CsvReadStats()
        frame = _call(read_ohlcv_path, kind, path, stats=stats, **options)
        details = {"path": str(path), **stats.to_dict()}
    elif kind == "yfinance":
        from tradingrl.data.yfinance_source import download_ohlcv

        frame = _call(download_ohlcv, kind, **options)
        details = {"options": dict(options)}
    else:
        raise SourceError(f"unknown source {kind!r}; choose one of {', '.join(SOURCES)}")
    report = {
        "source": kind,
        "rows": len(frame),
        "symbols": int(frame["symbol"].nunique()),
        "first": _iso(frame["timestamp"].min()),
        "last": _iso(frame["timestamp"].max()),
        **details,
    }
    return frame, report


def _iso(value) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).isoformat()


def _build(cls, options: dict[str, Any], kind: str):
    try:
        return cls(**options)
    except TypeError as error:
        raise SourceError(f"bad options for the {kind} source: {error}") from None


def _call(function, kind: str, *args, **kwargs):
    import inspect

    allowed = set(inspect.signature(function).parameters)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise SourceError(f"unknown options for the {kind} source: {', '.join(unknown)}")
    return function(*args, **kwargs)
