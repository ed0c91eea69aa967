"""Probable unadjusted stock splits: a one-way close move of about x1/N (or xN
for a reverse split) whose new level persists is a warning with the bar listed
and a hint; spikes that come back, ordinary bad days and the default
synthetic market are not flagged, and no row is lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.columns import OHLCV_COLUMNS, PRICE_COLUMNS
from tradingrl.data.expectations import (
    SPLIT_RATIO,
    UNADJUSTED_SPLIT,
    WARN,
    add_derived_columns,
    run_expectations,
    split_entries,
)
from tradingrl.data.validation import ValidationThresholds, validate_ohlcv

THRESHOLDS = {
    "max_spike_log_move": 1.0,
    "max_bar_range_log": 1.0,
    "max_gap_days": 7.0,
    "min_completeness": 0.99,
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def csv_like(symbols=("AAPL", "MSFT"), bars=80, seed=0) -> pd.DataFrame:
    """Daily bars as a CSV file gives them: calm random walks, 1% daily vol."""
    rng = np.random.default_rng(seed)
    stamps = pd.bdate_range("2020-01-02", periods=bars, tz="UTC")
    parts = []
    for symbol in symbols:
        close = 120.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, bars)))
        open_ = close * np.exp(rng.normal(0.0, 0.003, bars))
        parts.append(pd.DataFrame({
            "timestamp": stamps, "symbol": symbol, "open": open_,
            "high": np.maximum(open_, close) * 1.004, "low": np.minimum(open_, close) / 1.004,
            "close": close, "volume": rng.uniform(1e5, 1e6, bars),
        }))
    return pd.concat(parts, ignore_index=True)


def scale_from(frame, symbol, bar, factor, until=None):
    """Multiply OHLC of ``symbol`` from its ``bar``-th bar (to ``until``) by ``factor``."""
    rows = frame.index[frame["symbol"] == symbol][bar:until]
    frame.loc[rows, list(PRICE_COLUMNS)] *= factor
    return rows[0]


def split_outcome(report):
    (outcome,) = [o for o in report.outcomes if o.name == UNADJUSTED_SPLIT]
    return outcome


@pytest.mark.parametrize(("factor", "split", "ratio"), [
    (0.5, "2:1", 0.5), (1 / 3, "3:1", 1 / 3), (0.25, "4:1", 0.25), (2.0, "1:2", 2.0),
])
def test_an_injected_split_is_flagged_on_its_bar_with_its_ratio(factor, split, ratio):
    frame = csv_like()
    # An unadjusted file: prices *after* the split are 1/N of the adjusted ones.
    row = scale_from(frame, "MSFT", 40, factor)
    entries = split_entries(add_derived_columns(frame))
    assert len(entries) == 1
    (entry,) = entries
    assert entry["symbol"] == "MSFT"
    assert entry["timestamp"] == frame.loc[row, "timestamp"].isoformat()
    assert entry["split"] == split
    assert entry["ratio"] == pytest.approx(ratio)
    assert entry["close_ratio"] == pytest.approx(factor, rel=0.05)
    assert f"unadjusted {split}" in entry["hint"] and "ingest.csv.adjust: true" in entry["hint"]


def test_a_split_with_an_ordinary_move_on_the_day_is_still_flagged():
    frame = csv_like()
    row = scale_from(frame, "AAPL", 30, 0.5)
    frame.loc[row, ["open", "close"]] *= 1.03  # the split day also rallies 3%
    frame.loc[row, "high"] = frame.loc[row, ["open", "close"]].max() * 1.004
    (entry,) = split_entries(add_derived_columns(frame))
    assert entry["split"] == "2:1" and entry["close_ratio"] > 0.5


def test_a_halving_spike_that_reverts_is_not_a_split():
    frame = csv_like()
    scale_from(frame, "AAPL", 40, 0.5, until=41)  # one bad bar at half price
    derived = add_derived_columns(frame)
    assert derived[SPLIT_RATIO].isna().all()  # neither the way down nor the way back


def test_a_two_bar_excursion_that_reverts_is_not_a_split():
    frame = csv_like()
    scale_from(frame, "AAPL", 40, 0.5, until=42)
    assert split_entries(add_derived_columns(frame)) == []


def test_ordinary_bad_days_and_non_split_ratios_are_not_flagged():
    frame = csv_like()
    scale_from(frame, "AAPL", 20, 0.9)  # -10%, persists
    scale_from(frame, "AAPL", 50, 0.6)  # -40%, persists: an outlier, not a split ratio
    scale_from(frame, "MSFT", 40, 1.4)  # +40%, persists
    assert split_entries(add_derived_columns(frame)) == []


def test_the_tolerance_is_relative_to_the_split_ratio():
    frame = csv_like()
    scale_from(frame, "AAPL", 40, 0.5 * 1.08)  # 8% away from 1/2
    assert split_entries(add_derived_columns(frame)) == []
    assert len(split_entries(add_derived_columns(frame, split_ratio_tolerance=0.1))) == 1
    with pytest.raises(ValueError, match="split_ratio_tolerance"):
        run_expectations(frame, **THRESHOLDS, split_ratio_tolerance=0.3)


def test_a_split_needs_bars_on_both_sides_and_never_spans_symbols():
    frame = csv_like(bars=40)
    # MSFT's whole history at half AAPL's level: the boundary between the symbols
    # is not a move; neither is a halving on a symbol's last bar (no bar after it).
    scale_from(frame, "MSFT", 0, 0.5)
    scale_from(frame, "AAPL", 39, 0.5)
    assert split_entries(add_derived_columns(frame)) == []


def test_row_order_does_not_matter():
    frame = csv_like()
    row = scale_from(frame, "MSFT", 40, 0.5)
    shuffled = frame.sample(frac=1.0, random_state=1)
    derived = add_derived_columns(shuffled)
    assert derived.loc[derived[SPLIT_RATIO].notna()].index.tolist() == [row]


def test_the_suite_warns_and_quarantines_nothing():
    frame = csv_like()
    scale_from(frame, "AAPL", 25, 0.25)
    scale_from(frame, "MSFT", 60, 3.0)
    report = run_expectations(frame, **THRESHOLDS)
    outcome = split_outcome(report)
    assert outcome.severity == WARN and not outcome.success
    assert outcome.unexpected_count == 2
    assert [e["split"] for e in outcome.details["splits"]] == ["4:1", "1:3"]
    assert outcome.details["tolerance"] == 0.05
    assert report.quarantine_reasons() == {}
    clean = run_expectations(csv_like(), **THRESHOLDS)
    assert split_outcome(clean).success and split_outcome(clean).details["splits"] == []


def test_validation_report_lists_the_split_and_keeps_every_row(tmp_path):
    frame = csv_like()
    row = scale_from(frame, "AAPL", 40, 0.5)
    frame["parse_error"] = None
    result = validate_ohlcv(frame[[*OHLCV_COLUMNS, "parse_error"]], ValidationThresholds())
    report = json.loads(json.dumps(result.report, default=str))
    assert report["rows_valid"] == len(frame) and report["rows_quarantined"] == 0
    assert result.passed
    assert UNADJUSTED_SPLIT in report["warnings"]
    (outcome,) = [o for o in report["expectations"]["outcomes"] if o["name"] == UNADJUSTED_SPLIT]
    (entry,) = outcome["details"]["splits"]
    assert (entry["symbol"], entry["timestamp"], entry["ratio"]) == (
        "AAPL", frame.loc[row, "timestamp"].isoformat(), 0.5)
    assert report["thresholds"]["split_ratio_tolerance"] == 0.05
    lines = result.warning_lines()
    split_lines = [line for line in lines if UNADJUSTED_SPLIT in line]
    assert len(split_lines) == 1
    assert "AAPL" in split_lines[0] and "looks like an unadjusted 2:1 split" in split_lines[0]


def test_the_default_synthetic_market_has_no_split():
    import yaml

    from tradingrl.data.sources import load_source, source_options

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    ingest = {**params["ingest"], "source": "synthetic"}
    frame, _ = load_source(*source_options(ingest))
    result = validate_ohlcv(frame, ValidationThresholds(**params["validate"]))
    assert UNADJUSTED_SPLIT not in result.report["warnings"]
    assert not any(UNADJUSTED_SPLIT in line for line in result.warning_lines())


def test_the_validate_stage_reports_and_prints_the_split(tmp_path, capsys):
    from tasks.validate import main

    frame = csv_like()
    row = scale_from(frame, "MSFT", 50, 0.5)
    frame["parse_error"] = None
    frame.to_parquet(tmp_path / "raw.parquet", index=False)
    main(raw_path=tmp_path / "raw.parquet", valid_dir=tmp_path / "validated",
         quarantine_dir=tmp_path / "quarantine", reports_dir=tmp_path / "reports")
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert report["rows_valid"] == len(frame)
    assert UNADJUSTED_SPLIT in report["warnings"]
    (outcome,) = [o for o in report["expectations"]["outcomes"] if o["name"] == UNADJUSTED_SPLIT]
    assert [(e["symbol"], e["timestamp"], e["split"]) for e in outcome["details"]["splits"]] == [
        ("MSFT", frame.loc[row, "timestamp"].isoformat(), "2:1")]
    printed = capsys.readouterr().out.splitlines()
    stamp = frame.loc[row, "timestamp"].isoformat()
    assert any(line.startswith(f"validate: warning: {UNADJUSTED_SPLIT} MSFT {stamp}")
               and "looks like an unadjusted 2:1 split" in line for line in printed)
