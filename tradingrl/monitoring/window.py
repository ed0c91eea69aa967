"""The newest data window: fetched, validated and featurised as the stages do it.

:func:`fetch_window` makes the library calls of the ingest, validate and
features stages (tasks/ingest.py, tasks/validate.py, tasks/features.py) on
the newest sessions of the configured source, in memory: nothing is written
(DVC owns data/). :func:`sessions_needed` says how many sessions to fetch
for a champion: the checked window plus the history its features and
decisions need before the first decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True, eq=False)
class Window:
    """bars: the window's validated OHLCV (long format); features: their
    feature table (the features stage's, label columns included); summary:
    JSON-ready account of where it came from (source, options without paths,
    sessions fetched, rows in / valid / quarantined, the source's span)."""

    bars: pd.DataFrame
    features: pd.DataFrame
    summary: dict[str, Any]

    @property
    def symbols(self) -> int:
        return int(self.bars["symbol"].nunique())


def sessions_needed(manifest: Mapping[str, Any], warmup_bars: int,
                    window_bars: int) -> tuple[int, list[str]]:
    """(sessions to fetch, notes) for a champion with bundle ``manifest``:
    ``window_bars`` decision sessions plus the bars of history its first
    decision needs (:func:`~tradingrl.monitoring.decisions.history_bars`),
    plus the difference when params' ``warmup_bars`` exceeds the bundle's
    (the features are built with params' warm-up). A warm-up that differs
    from the bundle's is noted."""
    from tradingrl.monitoring.decisions import history_bars

    own = int(manifest["features"]["warmup_bars"])
    notes = ([] if int(warmup_bars) == own else
             [f"features.warmup_bars {warmup_bars} differs from the champion's {own}"])
    extra = max(0, int(warmup_bars) - own)
    return int(window_bars) + history_bars(manifest) + extra, notes


def fetch_window(ingest: Mapping[str, Any], validate: Mapping[str, Any],
                 features: Mapping[str, Any], *, sessions: int,
                 overrides: Mapping[str, Any] | None = None,
                 base_dir: str | Path | None = None) -> Window:
    """The newest ``sessions`` sessions (distinct timestamps) of the source
    params.yaml ``ingest`` names (``overrides`` merged into its options,
    :func:`tradingrl.data.sources.source_options`), validated with params ``validate`` (the pandera
    contract and the expectations) and featurised with params ``features``
    (the feature contract checked). Too few sessions from the source is a
    ValueError; a window that fails validation a ContractError with the
    validate stage's one-line message."""
    from tradingrl.data.errors import ContractError
    from tradingrl.data.sources import load_source, source_options
    from tradingrl.data.validation import ValidationThresholds, validate_ohlcv
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.contract import feature_schema
    from tradingrl.features.labels import LabelSpec

    kind, options = source_options(ingest, overrides, base_dir)
    raw, report = load_source(kind, options)
    stamps = pd.DatetimeIndex(raw["timestamp"].unique()).sort_values()
    if len(stamps) < sessions:
        raise ValueError(f"the {kind} source gave {len(stamps)} sessions; the check needs "
                         f"{sessions} (window_bars + the champion's history)")
    newest = raw[raw["timestamp"] >= stamps[-sessions]].reset_index(drop=True)
    result = validate_ohlcv(newest, ValidationThresholds(**validate))
    if not result.passed:
        raise ContractError(f"the newest window failed validation: {result.failure_message()}")
    table, _ = build_feature_table(result.valid, LabelSpec(**features["label"]),
                                   warmup_bars=features["warmup_bars"])
    feature_schema().validate(table)
    summary = {"source": kind, "options": {k: v for k, v in options.items() if k != "path"},
               "fetched_sessions": int(sessions), "rows_in": result.report["rows_in"],
               "rows_valid": result.report["rows_valid"],
               "rows_quarantined": result.report["rows_quarantined"],
               "source_first": report["first"], "source_last": report["last"]}
    return Window(bars=result.valid, features=table, summary=summary)
