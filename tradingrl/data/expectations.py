"""Great Expectations checks on what a per-row check cannot see.

The frame given here has already passed the per-row contract
(:mod:`tradingrl.data.contract`). What is left needs neighbouring bars or the
whole frame: a one-bar price spike, an implausible bar range, holes in a
symbol's calendar, and dataset-level sanity (no nulls, at least one row).

Derived columns (:func:`add_derived_columns`) are computed with pandas/numpy,
looking only at the previous and next bar *of the same symbol*:

``spike_log_move``
    With ``r_t = log(close_t / close_{t-1})``: ``min(|r_t|, |r_{t+1}|)`` when
    ``r_t`` and ``r_{t+1}`` have opposite signs, else 0; 0 on a symbol's first
    and last bar. A x1000 one-bar spike gives ~6.9 on the spike row only (a
    neighbour gets at most its own ordinary move); a one-way jump (split,
    crash) gives ~0 (the smaller move is the ordinary one next to it).
``bar_range_log``
    ``log(high / low)``.
``abs_log_return``
    ``|log(close_t / close_{t-1})|`` within a symbol; NaN on its first bar. A
    one-way move above the limit (an unadjusted split, prices switching
    units) is a warning: it may be real, so the rows are kept.
``gap_days``
    Calendar days (fractional for intraday bars) since the symbol's previous
    bar; **NaN on a symbol's first bar** (there is no previous bar). GX's
    column-map expectations skip NaN, so first bars neither pass nor fail the
    gap check and are left out of its denominator.
``missing_bars_before``
    How many timestamps of the union calendar (every distinct timestamp of any
    symbol in the frame) fall strictly between the symbol's previous bar and
    this one; 0 on a symbol's first bar.
``split_ratio``
    NaN unless the bar looks like an unadjusted stock split (see
    :func:`_split_ratio_sorted`); there, the nominal price ratio of the split
    (``1/N`` for an N:1 split, ``N`` for a 1:N reverse split).

These are then validated by one GX expectation suite (``ohlcv_distribution``)
run through a ValidationDefinition and a Checkpoint on an ephemeral, in-memory
Data Context. Each expectation carries our own short name and severity in its
``meta``: ``quarantine`` expectations (``price_spike``, ``bar_range``) name the
failing rows by their frame index label; ``warn`` expectations
(``return_outlier``, ``completeness``, ``calendar_gap``, ``unadjusted_split``,
``not_null``, ``row_count``) only judge the dataset (``unadjusted_split``
also lists each flagged bar with a hint in its details). With ``docs_dir``,
Data Docs HTML is built into exactly that folder; nothing else is written to
disk.

``great_expectations`` is imported inside the functions that need it (it takes
seconds to import, and the CLI must start fast).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tradingrl.data.columns import OHLCV_COLUMNS, SYMBOL, TIMESTAMP
from tradingrl.data.errors import ContractError

if TYPE_CHECKING:
    from great_expectations.checkpoint.checkpoint import CheckpointResult

SUITE_NAME = "ohlcv_distribution"

SPIKE_LOG_MOVE = "spike_log_move"
BAR_RANGE_LOG = "bar_range_log"
ABS_LOG_RETURN = "abs_log_return"
GAP_DAYS = "gap_days"
MISSING_BARS_BEFORE = "missing_bars_before"
SPLIT_RATIO = "split_ratio"
DERIVED_COLUMNS: tuple[str, ...] = (
    SPIKE_LOG_MOVE, BAR_RANGE_LOG, ABS_LOG_RETURN, GAP_DAYS, MISSING_BARS_BEFORE, SPLIT_RATIO
)

QUARANTINE = "quarantine"
WARN = "warn"

# Our short names of the checks.
PRICE_SPIKE = "price_spike"
BAR_RANGE = "bar_range"
RETURN_OUTLIER = "return_outlier"
COMPLETENESS = "completeness"
CALENDAR_GAP = "calendar_gap"
UNADJUSTED_SPLIT = "unadjusted_split"
NOT_NULL = "not_null"
ROW_COUNT = "row_count"

# Keys of an expectation's ``meta`` that carry our mapping.
_META_CHECK = "tradingrl_check"
_META_SEVERITY = "tradingrl_severity"
_META_COLUMN = "tradingrl_column"
_META_TOLERANCE = "tradingrl_tolerance"

# Unadjusted splits: a close-to-close move within the tolerance of 1/N or N
# (N >= 2 whole) is a candidate; it is flagged when up to this many bars on each
# side stay at their level (closer to it than to the other one, in log terms),
# which tells a split (the level persists) from a spike (it comes back).
SPLIT_PERSIST_BARS = 5
DEFAULT_SPLIT_RATIO_TOLERANCE = 0.05
# Flagged bars listed in the report (the count is always complete).
MAX_LISTED_SPLITS = 100

_NS_PER_DAY = 86_400 * 10**9

# COMPLETE gives the full unexpected_index_list (the quarantine needs every
# failing row). partial_unexpected_count bounds what the Data Docs tables are
# built from; return_unexpected_index_query is off because for pandas it is a
# string repeating every failing index.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 20,
    "return_unexpected_index_query": False,
}

_SITE_NAME = "tradingrl_docs"
# GX logs (and swallows) exceptions raised while rendering Data Docs pages here.
_SITE_BUILDER_LOGGER = "great_expectations.render.renderer.site_builder"


class ExpectationsError(RuntimeError):
    """Great Expectations failed to evaluate the suite (not: the data failed it)."""


@dataclass(frozen=True)
class ExpectationOutcome:
    """The outcome of one expectation of the suite.

    ``unexpected_index`` lists the frame index labels of failing rows for
    quarantine-level checks; it is empty for warn-level checks (their
    ``unexpected_count`` still says how many rows failed).
    """

    name: str
    severity: str
    success: bool
    unexpected_count: int
    unexpected_index: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "unexpected_index": list(self.unexpected_index),
            "details": _jsonable(self.details),
        }


@dataclass(frozen=True)
class ExpectationReport:
    """All outcomes of one run of the suite, in suite order."""

    outcomes: list[ExpectationOutcome]
    docs_index: Path | None = None

    @property
    def success(self) -> bool:
        return all(outcome.success for outcome in self.outcomes)

    def failed(self, severity: str | None = None) -> list[ExpectationOutcome]:
        return [
            outcome
            for outcome in self.outcomes
            if not outcome.success and (severity is None or outcome.severity == severity)
        ]

    def quarantine_reasons(self) -> dict[int, list[str]]:
        """Frame index label -> names of the quarantine-level checks the row failed."""
        reasons: dict[int, list[str]] = {}
        for outcome in self.outcomes:
            if outcome.severity != QUARANTINE:
                continue
            for label in outcome.unexpected_index:
                names = reasons.setdefault(label, [])
                if outcome.name not in names:
                    names.append(outcome.name)
        return reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": SUITE_NAME,
            "success": self.success,
            "quarantined_rows": len(self.quarantine_reasons()),
            "warnings": [outcome.name for outcome in self.failed(WARN)],
            "docs_index": None if self.docs_index is None else str(self.docs_index),
            "outcomes": [outcome.to_dict() for outcome in self.outcomes],
        }


# --------------------------------------------------------------------------- derived columns


def _check_input(frame: pd.DataFrame) -> None:
    missing = [column for column in OHLCV_COLUMNS if column not in frame.columns]
    if missing:
        raise ContractError(f"expectations need columns {list(OHLCV_COLUMNS)}; missing {missing}")
    if not frame.index.is_unique:
        raise ContractError("expectations need a unique row index (rows are reported by label)")
    if not isinstance(frame[TIMESTAMP].dtype, pd.DatetimeTZDtype):
        raise ContractError(f"{TIMESTAMP} must be timezone-aware, got {frame[TIMESTAMP].dtype}")


def add_derived_columns(
    frame: pd.DataFrame, *, split_ratio_tolerance: float = DEFAULT_SPLIT_RATIO_TOLERANCE
) -> pd.DataFrame:
    """A copy of ``frame`` with the columns of :data:`DERIVED_COLUMNS` added.

    Works per symbol on bars ordered by timestamp, whatever the row order of
    ``frame`` (rows keep their order and index labels); a symbol's neighbours
    are never another symbol's bars.
    """
    _check_input(frame)
    out = frame.copy()
    _assign_derived(out)
    _assign_split_ratio(out, split_ratio_tolerance)
    return out


def _assign_derived(frame: pd.DataFrame) -> None:
    """Add the derived columns to ``frame`` in place."""
    n = len(frame)
    if n == 0:
        frame[SPIKE_LOG_MOVE] = np.zeros(0)
        frame[BAR_RANGE_LOG] = np.zeros(0)
        frame[ABS_LOG_RETURN] = np.zeros(0)
        frame[GAP_DAYS] = np.zeros(0)
        frame[MISSING_BARS_BEFORE] = np.zeros(0, dtype=np.int64)
        return

    codes, _ = pd.factorize(frame[SYMBOL], sort=False)
    # UTC nanoseconds; the contract rules out NaT here.
    stamps = frame[TIMESTAMP].to_numpy(dtype="datetime64[ns]").view(np.int64)
    order = np.lexsort((stamps, codes))  # by symbol, then timestamp (stable)
    code_s = codes[order]
    del codes
    same_as_prev = np.zeros(n, dtype=bool)
    same_as_prev[1:] = code_s[1:] == code_s[:-1]
    del code_s

    def unsort(values: np.ndarray) -> np.ndarray:
        result = np.empty_like(values)
        result[order] = values
        return result

    ret = np.log(frame["close"].to_numpy(dtype=np.float64)[order])
    ret[1:] = ret[1:] - ret[:-1]  # ret[i] = log(close_i / close_{i-1}) within a symbol
    ret[~same_as_prev] = np.nan
    frame[ABS_LOG_RETURN] = unsort(np.abs(ret))
    ret_next = np.full(n, np.nan)  # NaN on a symbol's last bar: ret of a first bar is NaN
    ret_next[:-1] = ret[1:]
    with np.errstate(invalid="ignore"):
        reverses = (ret * ret_next) < 0  # False wherever either side is NaN
    frame[SPIKE_LOG_MOVE] = unsort(np.where(reverses, np.fmin(np.abs(ret), np.abs(ret_next)), 0.0))
    del ret, ret_next, reverses

    with np.errstate(divide="ignore", invalid="ignore"):
        frame[BAR_RANGE_LOG] = np.log(
            frame["high"].to_numpy(dtype=np.float64) / frame["low"].to_numpy(dtype=np.float64)
        )

    stamp_s = stamps[order]
    gap = np.full(n, np.nan)
    gap[1:] = (stamp_s[1:] - stamp_s[:-1]) / _NS_PER_DAY
    gap[~same_as_prev] = np.nan
    frame[GAP_DAYS] = unsort(gap)
    del gap

    calendar = np.unique(stamps)
    position = np.searchsorted(calendar, stamp_s)  # exact: every stamp is in the calendar
    del calendar, stamp_s
    missing = np.zeros(n, dtype=np.int64)
    missing[1:] = position[1:] - position[:-1] - 1
    missing[~same_as_prev] = 0
    # Duplicate timestamps within a symbol are the contract's business; never negative here.
    np.maximum(missing, 0, out=missing)
    frame[MISSING_BARS_BEFORE] = unsort(missing)


def _assign_split_ratio(frame: pd.DataFrame, tolerance: float) -> None:
    """Add :data:`SPLIT_RATIO` to ``frame`` in place (NaN where no split is seen)."""
    n = len(frame)
    if n == 0:
        frame[SPLIT_RATIO] = np.zeros(0)
        return
    codes, _ = pd.factorize(frame[SYMBOL], sort=False)
    stamps = frame[TIMESTAMP].to_numpy(dtype="datetime64[ns]").view(np.int64)
    order = np.lexsort((stamps, codes))
    same_as_prev = np.zeros(n, dtype=bool)
    same_as_prev[1:] = codes[order][1:] == codes[order][:-1]
    log_close = np.log(frame["close"].to_numpy(dtype=np.float64)[order])
    ratio = np.empty(n)
    ratio[order] = _split_ratio_sorted(log_close, same_as_prev, tolerance)
    frame[SPLIT_RATIO] = ratio


def _split_ratio_sorted(
    log_close: np.ndarray, same_as_prev: np.ndarray, tolerance: float
) -> np.ndarray:
    """Nominal split ratio (1/N or N) on bars that look like an unadjusted split,
    NaN elsewhere; ``log_close`` is sorted by (symbol, timestamp) and
    ``same_as_prev`` says a bar has the same symbol as the one before it.

    Bar i is flagged when ``close_i / close_{i-1}`` is within ``tolerance``
    (relative) of 1/N or N for a whole N >= 2, and both levels persist: the
    (up to :data:`SPLIT_PERSIST_BARS`) bars after i are closer to close_i than
    to close_{i-1}, and those before i-1 closer to close_{i-1} (log midpoint).
    Both sides need at least one such bar. A spike that comes back fails the
    "after" test on its way out and the "before" test on its way back.
    """
    n = len(log_close)
    ratio = np.full(n, np.nan)
    ret = np.full(n, np.nan)
    ret[1:] = log_close[1:] - log_close[:-1]
    ret[~same_as_prev] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        factor = np.exp(np.abs(ret))  # >= 1; NaN on a symbol's first bar
        whole = np.rint(factor)
        candidate = (whole >= 2) & (np.abs(factor / whole - 1.0) <= tolerance)
    positions = np.flatnonzero(candidate)
    if positions.size == 0:
        return ratio
    starts = np.flatnonzero(~same_as_prev)
    stops = np.append(starts[1:], n)
    blocks = np.searchsorted(starts, positions, side="right") - 1
    k = SPLIT_PERSIST_BARS
    for i, block in zip(positions, blocks):
        first, stop = starts[block], stops[block]
        old, new = log_close[i - 1], log_close[i]
        before = log_close[max(first, i - 1 - k): i - 1]
        after = log_close[i + 1: min(stop, i + 1 + k)]
        if before.size == 0 or after.size == 0:
            continue
        mid = 0.5 * (old + new)
        up = new > old
        stays_new = (after > mid) if up else (after < mid)
        stayed_old = (before < mid) if up else (before > mid)
        if stays_new.all() and stayed_old.all():
            ratio[i] = whole[i] if up else 1.0 / whole[i]
    return ratio


def split_entries(derived: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per bar flagged in :data:`SPLIT_RATIO` of ``derived`` (a frame
    from :func:`add_derived_columns`), by symbol then timestamp: symbol,
    timestamp (ISO, UTC), ``split`` ("2:1"; "1:2" for a reverse split),
    ``ratio`` (the nominal price ratio, 0.5 for 2:1), ``close_ratio`` (the
    observed close / previous close) and a one-line ``hint``."""
    columns = [SYMBOL, TIMESTAMP, SPLIT_RATIO, ABS_LOG_RETURN]
    flagged = derived.loc[derived[SPLIT_RATIO].notna(), columns]
    flagged = flagged.sort_values([SYMBOL, TIMESTAMP], kind="stable")
    entries = []
    for symbol, stamp, ratio, abs_move in flagged.itertuples(index=False, name=None):
        reverse = ratio > 1.0
        n = round(ratio if reverse else 1.0 / ratio)
        close_ratio = math.exp(abs_move if reverse else -abs_move)
        split = f"1:{n}" if reverse else f"{n}:1"
        kind = "reverse split" if reverse else "split"
        entries.append({
            "symbol": str(symbol),
            "timestamp": pd.Timestamp(stamp).isoformat(),
            "split": split,
            "ratio": float(ratio),
            "close_ratio": close_ratio,
            "hint": (
                f"close x{close_ratio:.3g} and the new level persists: looks like an unadjusted "
                f"{split} {kind}; use ingest.csv.adjust: true with an Adj Close column, "
                "or adjust the prices before this bar in the file"
            ),
        })
    return entries


# --------------------------------------------------------------------------- suite


def _meta(check: str, severity: str, column: str | None = None) -> dict[str, str]:
    meta = {_META_CHECK: check, _META_SEVERITY: severity}
    if column is not None:
        meta[_META_COLUMN] = column
    return meta


def build_suite(
    *,
    max_spike_log_move: float,
    max_bar_range_log: float,
    max_abs_log_return: float,
    max_gap_days: float,
    min_completeness: float,
    split_ratio_tolerance: float = DEFAULT_SPLIT_RATIO_TOLERANCE,
) -> Any:
    """The ``ohlcv_distribution`` ExpectationSuite (not yet added to any context)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    if not 0.0 <= min_completeness <= 1.0:
        raise ValueError(f"min_completeness must be within [0, 1], got {min_completeness}")
    for name, value in (
        ("max_spike_log_move", max_spike_log_move),
        ("max_bar_range_log", max_bar_range_log),
        ("max_abs_log_return", max_abs_log_return),
        ("max_gap_days", max_gap_days),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    # From 0.25 on, the bands around N and N + 1 (2 and 3 first) would touch.
    if not 0.0 <= split_ratio_tolerance < 0.25:
        raise ValueError(
            f"split_ratio_tolerance must be within [0, 0.25), got {split_ratio_tolerance}"
        )

    expectations: list[Any] = [
        gxe.ExpectColumnValuesToBeBetween(
            column=SPIKE_LOG_MOVE,
            max_value=max_spike_log_move,
            meta=_meta(PRICE_SPIKE, QUARANTINE),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=BAR_RANGE_LOG,
            max_value=max_bar_range_log,
            meta=_meta(BAR_RANGE, QUARANTINE),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=ABS_LOG_RETURN,
            max_value=max_abs_log_return,
            meta=_meta(RETURN_OUTLIER, WARN),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=MISSING_BARS_BEFORE,
            min_value=0,
            max_value=0,
            mostly=min_completeness,
            meta=_meta(COMPLETENESS, WARN),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=GAP_DAYS,
            max_value=max_gap_days,
            meta=_meta(CALENDAR_GAP, WARN),
        ),
        gxe.ExpectColumnValuesToBeNull(
            column=SPLIT_RATIO,
            meta={**_meta(UNADJUSTED_SPLIT, WARN), _META_TOLERANCE: split_ratio_tolerance},
        ),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=column, meta=_meta(NOT_NULL, WARN, column))
            for column in OHLCV_COLUMNS
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_meta(ROW_COUNT, WARN)),
    ]
    # The constructor needs no Data Context (add_expectation on a bare suite does).
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
    # ...but it logs and drops an expectation it finds invalid instead of raising.
    if len(suite.expectations) != len(expectations):
        raise ExpectationsError(
            f"GX accepted {len(suite.expectations)} of {len(expectations)} expectations"
        )
    return suite


# --------------------------------------------------------------------------- running


def _ephemeral_context(docs_dir: Path | None) -> Any:
    """An in-memory Data Context: in-memory stores, no progress bars, no analytics,
    and a Data Docs site only when ``docs_dir`` is given (none in a temp folder)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    if docs_dir is not None:
        sites[_SITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _collect_render_errors() -> Iterator[_ErrorCollector]:
    """GX catches exceptions raised while rendering Data Docs and only logs them."""
    collector = _ErrorCollector()
    logger = logging.getLogger(_SITE_BUILDER_LOGGER)
    level = logger.level
    if not logger.isEnabledFor(logging.ERROR):
        logger.setLevel(logging.ERROR)
    logger.addHandler(collector)
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.setLevel(level)


def _raised_exceptions(info: Any) -> list[str]:
    """Messages of exceptions GX caught while evaluating one expectation.

    ``exception_info`` is either one ExceptionInfo-like mapping or, when a
    metric failed to resolve, a mapping of metric id -> {"exception_info": ...}.
    """
    if not isinstance(info, dict):
        return []
    if "raised_exception" in info:
        if info.get("raised_exception"):
            return [str(info.get("exception_message") or "unknown error")]
        return []
    messages: list[str] = []
    for value in info.values():
        messages.extend(_raised_exceptions(value))
        if isinstance(value, dict) and "exception_info" in value:
            messages.extend(_raised_exceptions(value["exception_info"]))
    return messages


def _finite_max(values: pd.Series) -> float | None:
    finite = values.to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size else None


def _outcome(result: Any, derived: pd.DataFrame) -> ExpectationOutcome:
    config = result.expectation_config
    meta = config.meta or {}
    check = meta.get(_META_CHECK)
    severity = meta.get(_META_SEVERITY)
    if check is None or severity not in (QUARANTINE, WARN):
        raise ExpectationsError(f"result of {config.type} lost its tradingrl meta: {meta}")
    errors = _raised_exceptions(result.exception_info)
    if errors:
        raise ExpectationsError(
            f"Great Expectations could not evaluate {check} ({config.type}): " + "; ".join(errors)
        )
    body: dict[str, Any] = dict(result.result or {})
    kwargs = config.kwargs
    details: dict[str, Any] = {"expectation": config.type}
    unexpected_index: list[int] = []

    if check == ROW_COUNT:
        unexpected_count = 0 if result.success else 1
        details.update(observed=body.get("observed_value"), min_value=kwargs.get("min_value"))
    else:
        if "unexpected_count" not in body:
            raise ExpectationsError(f"{check}: GX result has no unexpected_count: {sorted(body)}")
        unexpected_count = int(body["unexpected_count"] or 0)
        details.update(
            element_count=body.get("element_count"),
            unexpected_percent=body.get("unexpected_percent"),
        )
        if severity == QUARANTINE:
            labels = body.get("unexpected_index_list")
            if labels is None:
                raise ExpectationsError(f"{check}: GX returned no unexpected_index_list")
            unexpected_index = [_label(label) for label in labels]
            if len(unexpected_index) != unexpected_count:
                raise ExpectationsError(
                    f"{check}: {unexpected_count} unexpected rows but "
                    f"{len(unexpected_index)} index labels"
                )

    if check == PRICE_SPIKE:
        details.update(
            threshold=kwargs.get("max_value"), max_observed=_finite_max(derived[SPIKE_LOG_MOVE])
        )
    elif check == BAR_RANGE:
        details.update(
            threshold=kwargs.get("max_value"), max_observed=_finite_max(derived[BAR_RANGE_LOG])
        )
    elif check == CALENDAR_GAP:
        details.update(
            threshold=kwargs.get("max_value"), max_observed=_finite_max(derived[GAP_DAYS])
        )
    elif check == COMPLETENESS:
        element_count = int(body.get("element_count") or 0)
        missing_bars = int(derived[MISSING_BARS_BEFORE].sum())
        details.update(
            min_share=kwargs.get("mostly"),
            share=(1.0 - unexpected_count / element_count) if element_count else None,
            missing_bars=missing_bars,
            # Bars present / bars the union calendar expects between each symbol's first and last.
            bar_completeness=(
                element_count / (element_count + missing_bars) if element_count else None
            ),
        )
    elif check == UNADJUSTED_SPLIT:
        splits = split_entries(derived)
        if len(splits) != unexpected_count:
            raise ExpectationsError(
                f"{check}: GX counted {unexpected_count} rows but {len(splits)} are flagged"
            )
        details.update(
            tolerance=meta.get(_META_TOLERANCE),
            persist_bars=SPLIT_PERSIST_BARS,
            listed=min(len(splits), MAX_LISTED_SPLITS),
            splits=splits[:MAX_LISTED_SPLITS],
        )
    elif check == NOT_NULL:
        details["column"] = meta.get(_META_COLUMN, kwargs.get("column"))

    return ExpectationOutcome(
        name=check,
        severity=severity,
        success=bool(result.success),
        unexpected_count=unexpected_count,
        unexpected_index=unexpected_index,
        details=details,
    )


def _label(label: Any) -> int:
    if isinstance(label, dict) or not isinstance(label, (int, np.integer)):
        raise ExpectationsError(f"GX returned a non-integer row label {label!r}")
    return int(label)


def run_expectations(
    frame: pd.DataFrame,
    *,
    max_spike_log_move: float,
    max_bar_range_log: float,
    max_gap_days: float,
    min_completeness: float,
    max_abs_log_return: float = 0.5,
    split_ratio_tolerance: float = DEFAULT_SPLIT_RATIO_TOLERANCE,
    docs_dir: Path | None = None,
) -> ExpectationReport:
    """Validate ``frame`` (OHLCV rows that passed the per-row contract) with GX.

    ``frame`` needs a unique integer index; quarantine-level outcomes name rows
    by its labels. With ``docs_dir``, Data Docs are built into that folder
    (``docs_dir/index.html``); otherwise nothing is written to disk. Raises
    :class:`ExpectationsError` when GX fails to evaluate an expectation or to
    render the docs; any other GX exception propagates unchanged.
    """
    _check_input(frame)
    if len(frame) and not pd.api.types.is_integer_dtype(frame.index.dtype):
        raise ContractError(f"expectations need an integer row index, got {frame.index.dtype}")
    suite = build_suite(
        max_spike_log_move=max_spike_log_move,
        max_bar_range_log=max_bar_range_log,
        max_abs_log_return=max_abs_log_return,
        max_gap_days=max_gap_days,
        min_completeness=min_completeness,
        split_ratio_tolerance=split_ratio_tolerance,
    )

    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    from tradingrl.data.data_docs import make_offline

    # A new frame (not a view, no SettingWithCopy link) with only what the suite reads.
    derived = frame.reindex(columns=list(OHLCV_COLUMNS))
    _assign_derived(derived)
    _assign_split_ratio(derived, split_ratio_tolerance)
    # An unnamed index makes GX report failing rows as plain index labels
    # (a named one would turn them into {name: label} dicts).
    derived.index = derived.index.rename(None)

    docs_path = None if docs_dir is None else Path(docs_dir).resolve()
    context = _ephemeral_context(docs_path)
    batch_definition = (
        context.data_sources.add_pandas("tradingrl_frames")
        .add_dataframe_asset("ohlcv")
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{SUITE_NAME}_validation", data=batch_definition, suite=suite)
    )
    actions = (
        []
        if docs_path is None
        else [UpdateDataDocsAction(name="data_docs", site_names=[_SITE_NAME])]
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{SUITE_NAME}_checkpoint",
            validation_definitions=[validation],
            actions=actions,
            result_format=_RESULT_FORMAT,
        )
    )
    with _collect_render_errors() as render_errors:
        checkpoint_result = checkpoint.run(batch_parameters={"dataframe": derived})
    if render_errors.messages:
        raise ExpectationsError("Data Docs rendering failed: " + render_errors.messages[0])

    outcomes = _outcomes(checkpoint_result, derived, expected=len(suite.expectations))
    docs_index = None
    if docs_path is not None:
        docs_index = docs_path / "index.html"
        if not docs_index.is_file():
            raise ExpectationsError(f"Data Docs were not written: {docs_index} is missing")
        make_offline(docs_path)  # their CSS and JavaScript from the site, not from CDNs
    return ExpectationReport(outcomes=outcomes, docs_index=docs_index)


def _outcomes(
    checkpoint_result: CheckpointResult, derived: pd.DataFrame, *, expected: int
) -> list[ExpectationOutcome]:
    run_results = list(checkpoint_result.run_results.values())
    if len(run_results) != 1:
        raise ExpectationsError(f"expected one validation result, got {len(run_results)}")
    results = run_results[0].results
    if len(results) != expected:
        raise ExpectationsError(f"suite has {expected} expectations but GX returned {len(results)}")
    return [_outcome(result, derived) for result in results]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
