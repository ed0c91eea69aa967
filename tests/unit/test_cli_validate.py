"""`tradingrl validate PATH`: every bad-input kind ends in a one-line reason or
a quarantine with accounting; nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tradingrl.cli import app

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def good_rows(n: int = 60, start: str = "2024-01-02", price: float = 100.0) -> list[str]:
    rng = np.random.default_rng(0)
    rows = []
    close = price
    for day in pd.bdate_range(start, periods=n):
        open_ = close
        close = open_ * float(np.exp(rng.normal(0, 0.01)))
        high, low = max(open_, close) * 1.004, min(open_, close) * 0.996
        rows.append(f"{day.date()},{open_:.4f},{high:.4f},{low:.4f},{close:.4f},{close:.4f},{1000 + day.day}")
    return rows


def run(tmp_path, content: str | bytes, name: str = "AAPL.csv", *args: str):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["validate", str(path), "--out", str(out), "--no-docs", *args])
    report = json.loads((out / "validation.json").read_text()) if (out / "validation.json").exists() else None
    return result, report, out


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines, "no output"
    assert lines[-1].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[-1]


def test_clean_file_passes_and_accounts_for_every_row(tmp_path):
    result, report, out = run(tmp_path, HEADER + "\n".join(good_rows()) + "\n")
    assert result.exit_code == 0, result.output
    assert report["rows_in"] == 60 == report["rows_valid"]
    assert report["rows_quarantined"] == 0
    assert len(pd.read_parquet(out / "validated.parquet")) == 60
    assert "rows in 60 = valid 60 + quarantined 0" in result.output


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty file"),
        (HEADER, "header only"),
        ("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n", "missing required columns: volume"),
        (bytes(range(256)) * 50, "binary"),
    ],
    ids=["empty", "header-only", "missing-column", "binary"],
)
def test_unreadable_input_exits_1_with_one_line(tmp_path, content, reason):
    result, report, _ = run(tmp_path, content)
    assert result.exit_code == 1
    assert reason in error_line(result)
    assert report is None


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "AAPL.csv"
    path.write_text(HEADER)
    result = CliRunner().invoke(app, ["validate", str(path), "--out", str(tmp_path / "o"), "--debug"])
    assert result.exit_code != 0
    assert "header only" in str(result.exception)


def bad_file(tmp_path, mutate, *args: str, n: int = 200):
    rows = good_rows(n)
    mutate(rows)
    return run(tmp_path, HEADER + "\n".join(rows) + "\n", "AAPL.csv", *args)


def set_field(rows: list[str], i: int, column: int, value: str) -> None:
    fields = rows[i].split(",")
    fields[column] = value
    rows[i] = ",".join(fields)


# (mutation, expected reason) -- one row of 200 is bad: quarantined, share 0.5%.
ROW_PROBLEMS = {
    "text-in-numeric": (lambda r: set_field(r, 10, 4, "abc"), "unparseable"),
    "nan-gap": (lambda r: set_field(r, 11, 4, "NaN"), "close:missing"),
    "empty-cell": (lambda r: set_field(r, 12, 1, ""), "open:missing"),
    "high-below-low": (lambda r: set_field(r, 13, 2, "1.0"), "high_below_open_or_close"),
    "zero-price": (lambda r: set_field(r, 14, 3, "0"), "low:not_positive"),
    "negative-price": (lambda r: set_field(r, 15, 1, "-5"), "open:not_positive"),
    "negative-volume": (lambda r: set_field(r, 16, 6, "-10"), "volume:negative"),
    "duplicate-timestamp": (lambda r: r.insert(20, r[19]), "duplicate_timestamp"),
    "bad-date": (lambda r: set_field(r, 21, 0, "2024-13-45"), "timestamp:missing"),
}


@pytest.mark.parametrize("kind", list(ROW_PROBLEMS))
def test_bad_rows_are_quarantined_with_reason_and_nothing_is_lost(tmp_path, kind):
    mutate, reason = ROW_PROBLEMS[kind]
    result, report, out = bad_file(tmp_path, mutate)
    assert result.exit_code == 0, result.output
    assert report["rows_quarantined"] == 1
    assert report["rows_in"] == report["rows_valid"] + report["rows_quarantined"]
    assert reason in report["per_reason"]
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert len(quarantine) == 1 and reason in quarantine["reasons"].iloc[0]
    assert len(pd.read_parquet(out / "validated.parquet")) == report["rows_valid"]


def test_text_in_numeric_keeps_the_text_in_quarantine(tmp_path):
    _, _, out = bad_file(tmp_path, ROW_PROBLEMS["text-in-numeric"][0])
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert quarantine["parse_error"].iloc[0] == "AAPL.csv line 12: close='abc'"


def test_unsorted_rows_are_sorted_not_rejected(tmp_path):
    rows = good_rows(100)
    result, report, out = run(tmp_path, HEADER + "\n".join(reversed(rows)) + "\n")
    assert result.exit_code == 0
    assert report["rows_valid"] == 100
    assert pd.read_parquet(out / "validated.parquet")["timestamp"].is_monotonic_increasing


def test_mixed_time_zones_are_converted(tmp_path):
    text = (
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02T16:00:00-05:00,10,11,9,10.5,100\n"
        "2024-01-03T22:00:00+01:00,10.5,11,10,10.8,100\n"
    )
    result, _, out = run(tmp_path, text, "X.csv")
    assert result.exit_code == 0, result.output
    stamps = pd.read_parquet(out / "validated.parquet")["timestamp"]
    assert stamps.tolist() == [pd.Timestamp("2024-01-02 21:00", tz="UTC"), pd.Timestamp("2024-01-03 21:00", tz="UTC")]


def test_price_spike_is_quarantined_on_that_row_only(tmp_path):
    def spike(rows):
        fields = rows[100].split(",")
        rows[100] = ",".join([fields[0], *[f"{float(x) * 1000:.4f}" for x in fields[1:6]], fields[6]])

    result, report, out = bad_file(tmp_path, spike)
    assert result.exit_code == 0, result.output
    assert report["per_reason"] == {"price_spike": 1}
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert quarantine["timestamp"].iloc[0] == pd.Timestamp(good_rows(200)[100].split(",")[0], tz="UTC")


def test_symbol_that_is_a_path_is_quarantined_not_written(tmp_path):
    text = "symbol,date,open,high,low,close,volume\n../x,2024-01-02,1,2,0.5,1.5,10\n"
    for row in good_rows(10):
        fields = row.split(",")  # date,open,high,low,close,adj close,volume
        text += f"GOOD,{','.join(fields[:5])},{fields[6]}\n"
    result, report, out = run(tmp_path, text, "long.csv", "--max-quarantine-share", "0.2")
    assert result.exit_code == 0, result.output
    assert report["per_reason"] == {"symbol:unsafe_name": 1}
    assert report["per_symbol"]["../x"] == {"in": 1, "valid": 0, "quarantined": 1}
    assert not (tmp_path / "x").exists() and not (out.parent / "x").exists()


def test_semicolon_decimal_comma_file(tmp_path):
    text = "Date;Open;High;Low;Close;Volume\n02.01.2024;10,5;11,0;10,0;10,75;1.000\n03.01.2024;10,75;11,5;10,5;11,25;2.000\n"
    result, _, out = run(tmp_path, text, "DAX.csv", "--dayfirst")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "validated.parquet")
    assert frame["close"].tolist() == [10.75, 11.25]
    assert frame["volume"].tolist() == [1000.0, 2000.0]


def test_too_many_bad_rows_fail_the_contract_after_writing_the_evidence(tmp_path):
    def ruin(rows):
        for i in range(40):
            set_field(rows, i, 6, "-1")

    result, report, out = bad_file(tmp_path, ruin)
    assert result.exit_code == 1
    line = error_line(result)
    assert "quarantined 40 of 200 rows" in line and "volume:negative (40)" in line
    assert report["passed"] is False
    assert len(pd.read_parquet(out / "quarantine.parquet")) == 40


def test_calendar_gap_is_a_warning_not_a_quarantine(tmp_path):
    rows = good_rows(200)
    del rows[50:70]  # four missing weeks
    result, report, _ = run(tmp_path, HEADER + "\n".join(rows) + "\n")
    assert result.exit_code == 0
    assert report["rows_quarantined"] == 0
    assert "calendar_gap" in report["warnings"]
    assert "warning: expectation calendar_gap failed" in result.output


def test_help_is_fast_and_does_not_import_heavy_libraries():
    code = (
        "import sys, time; t = time.perf_counter(); from tradingrl.cli import app; "
        "heavy = [m for m in ('pandas', 'torch', 'great_expectations', 'mlflow', 'pandera', 'prefect') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_is_one_line_per_command_and_short_per_option():
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert "\n" not in command.help.strip(), f"{name}: help is more than one line"
        assert len(command.help) <= 100, f"{name}: help is {len(command.help)} characters"
        for param in command.params:
            text = getattr(param, "help", None) or ""
            assert len(text) <= 160, f"{name} {param.name}: help is {len(text)} characters"
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
