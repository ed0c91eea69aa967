"""Validate raw OHLCV rows: the pandera contract per row, then Great
Expectations for what a row cannot show; split into valid rows and a
quarantine, and account for every row.

Invariant (asserted): rows in = rows valid + rows quarantined, overall and per
symbol. A row is quarantined once, with every reason it has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from tradingrl.data.columns import OHLCV_COLUMNS, SYMBOL
from tradingrl.data.contract import check_required_columns, row_failures
from tradingrl.data.errors import ContractError

REASONS = "reasons"
MISSING_SYMBOL = "<missing>"


@dataclass(frozen=True)
class ValidationThresholds:
    """Limits of the validate stage.

    max_quarantine_share: fraction of rows that may be quarantined before the
        stage fails (0.01 = 1%).
    max_spike_log_move: a bar whose close jumps away and straight back by more
        than this log move (1.0 ~ x2.7) is an isolated spike and quarantined.
    max_bar_range_log: a bar with log(high/low) above this is quarantined.
    max_abs_log_return: a close-to-close log move above this (one way) warns
        (0.5 ~ +65% / -39%); the row is kept, it may be real.
    max_gap_days: calendar days between two bars of a symbol above which the
        calendar-gap expectation warns.
    min_completeness: share of bars with no missing session before them (on
        the union calendar of all symbols) below which completeness warns.
    split_ratio_tolerance: a close-to-close move within this relative distance
        of a split ratio (x1/2, x1/3, x2, ...: 1/N or N, N >= 2 whole) whose
        new level persists warns as a probable unadjusted split, with the
        bar listed and a hint (0.05: x0.475..x0.525 for 2:1); rows are kept.
    """

    max_quarantine_share: float = 0.01
    max_spike_log_move: float = 1.0
    max_bar_range_log: float = 1.0
    max_abs_log_return: float = 0.5
    max_gap_days: float = 7.0
    min_completeness: float = 0.99
    split_ratio_tolerance: float = 0.05


@dataclass
class ValidationResult:
    """Valid rows (OHLCV columns, sorted), quarantined rows (their original
    columns plus ``reasons``) and the JSON-ready report."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    def warning_lines(self) -> list[str]:
        """One line per failed warning-level expectation (rows are kept), and
        for ``unadjusted_split`` one line per listed bar with its hint."""
        from tradingrl.data.expectations import UNADJUSTED_SPLIT, WARN

        lines = []
        for outcome in (self.report["expectations"] or {}).get("outcomes", []):
            if outcome["severity"] != WARN or outcome["success"]:
                continue
            name, count = outcome["name"], outcome["unexpected_count"]
            if name != UNADJUSTED_SPLIT:
                lines.append(f"warning: expectation {name} failed ({count} rows)")
                continue
            for entry in outcome["details"]["splits"]:
                lines.append(
                    f"warning: {name} {entry['symbol']} {entry['timestamp']} "
                    f"(ratio {entry['ratio']:g}): {entry['hint']}"
                )
            listed = len(outcome["details"]["splits"])
            if count > listed:
                lines.append(f"warning: {name}: {count} bars flagged, the first {listed} listed")
        return lines

    def failure_message(self) -> str:
        """One line saying why the stage fails (empty when it passes)."""
        if self.passed:
            return ""
        top = sorted(self.report["per_reason"].items(), key=lambda kv: -kv[1])[:3]
        reasons = ", ".join(f"{name} ({count})" for name, count in top)
        return (
            f"quarantined {self.report['rows_quarantined']} of {self.report['rows_in']} rows "
            f"({self.report['quarantined_share']:.2%}, limit "
            f"{self.report['max_quarantine_share']:.2%}); top reasons: {reasons}"
        )


def validate_ohlcv(
    raw: pd.DataFrame, thresholds: ValidationThresholds, docs_dir: Path | None = None
) -> ValidationResult:
    """Split ``raw`` into valid and quarantined rows with a full accounting.

    ``raw`` is the long format of :mod:`tradingrl.data.columns`, sorted by
    (symbol, timestamp) as sources write it. ``docs_dir`` receives the Great
    Expectations Data Docs when given.
    """
    from tradingrl.data.expectations import run_expectations

    check_required_columns(raw)
    if raw.empty:
        raise ContractError("no rows to validate")
    raw = raw.reset_index(drop=True)
    reasons = row_failures(raw)

    passing = raw.drop(index=list(reasons)).loc[:, list(OHLCV_COLUMNS)]
    if passing.empty:
        expectations = None
    else:
        expectations = run_expectations(
            passing,
            max_spike_log_move=thresholds.max_spike_log_move,
            max_bar_range_log=thresholds.max_bar_range_log,
            max_abs_log_return=thresholds.max_abs_log_return,
            max_gap_days=thresholds.max_gap_days,
            min_completeness=thresholds.min_completeness,
            split_ratio_tolerance=thresholds.split_ratio_tolerance,
            docs_dir=docs_dir,
        )
        for index, names in expectations.quarantine_reasons().items():
            reasons.setdefault(index, []).extend(names)

    bad = raw.index.isin(list(reasons))
    valid = raw.loc[~bad, list(OHLCV_COLUMNS)].reset_index(drop=True)
    quarantine = raw.loc[bad].copy()
    quarantine[REASONS] = [";".join(reasons[i]) for i in quarantine.index]
    quarantine = quarantine.reset_index(names="raw_row")
    report = _report(raw, valid, quarantine, reasons, thresholds, expectations)
    return ValidationResult(valid=valid, quarantine=quarantine, report=report)


def _symbol_counts(frame: pd.DataFrame) -> pd.Series:
    return frame[SYMBOL].astype(object).fillna(MISSING_SYMBOL).astype(str).value_counts()


def _report(raw, valid, quarantine, reasons, thresholds, expectations) -> dict:
    rows_in, rows_valid, rows_quarantined = len(raw), len(valid), len(quarantine)
    if rows_in != rows_valid + rows_quarantined:  # an accounting bug, never data
        raise AssertionError(f"row accounting broken: {rows_in} != {rows_valid}+{rows_quarantined}")
    counts_in, counts_valid = _symbol_counts(raw), _symbol_counts(valid)
    counts_quarantined = _symbol_counts(quarantine)
    per_symbol = {
        str(symbol): {
            "in": int(counts_in.get(symbol, 0)),
            "valid": int(counts_valid.get(symbol, 0)),
            "quarantined": int(counts_quarantined.get(symbol, 0)),
        }
        for symbol in sorted(counts_in.index)
    }
    per_reason: dict[str, int] = {}
    for names in reasons.values():
        for name in names:
            per_reason[name] = per_reason.get(name, 0) + 1
    share = rows_quarantined / rows_in
    warnings = (
        [o["name"] for o in expectations.to_dict()["outcomes"]
         if o["severity"] == "warn" and not o["success"]]
        if expectations is not None
        else []
    )
    return {
        "rows_in": rows_in,
        "rows_valid": rows_valid,
        "rows_quarantined": rows_quarantined,
        "quarantined_share": share,
        "max_quarantine_share": thresholds.max_quarantine_share,
        "passed": share <= thresholds.max_quarantine_share,
        "symbols": len(per_symbol),
        "per_symbol": per_symbol,
        "per_reason": dict(sorted(per_reason.items())),
        "warnings": warnings,
        "expectations": _expectations_dict(expectations),
        "thresholds": asdict(thresholds),
    }


def _expectations_dict(expectations) -> dict | None:
    if expectations is None:
        return None
    payload = expectations.to_dict()
    if payload.get("docs_index"):
        # Relative to the report's folder (the docs sit beside it), so the
        # report is byte-identical wherever the repository is cloned.
        index = Path(payload["docs_index"])
        payload["docs_index"] = str(Path(index.parent.name) / index.name)
    return payload


def write_validation(
    result: ValidationResult, *, valid_path: Path, quarantine_path: Path, report_path: Path
) -> None:
    """Write valid rows and quarantine as Parquet and the report as JSON."""
    import json

    for path in (valid_path, quarantine_path, report_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    result.valid.to_parquet(valid_path, index=False)
    quarantine = result.quarantine.copy()
    quarantine["symbol"] = quarantine["symbol"].astype(object)
    quarantine.to_parquet(quarantine_path, index=False)
    report_path.write_text(json.dumps(result.report, indent=2, default=str) + "\n")
