"""Stage validate: data/raw -> data/validated, data/quarantine,
reports/validation.json, reports/data_docs. Fails (exit 1, one line) when the
quarantined share passes ``validate.max_quarantine_share``; the outputs are
written first so the failure can be inspected."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tradingrl import headline
from tradingrl.data.errors import ContractError
from tradingrl.data.validation import ValidationThresholds, validate_ohlcv, write_validation
from tradingrl.params import load_params
from tradingrl.stage import run_stage

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(
    raw_path: Path = REPO_ROOT / "data" / "raw" / "ohlcv.parquet",
    valid_dir: Path = REPO_ROOT / "data" / "validated",
    quarantine_dir: Path = REPO_ROOT / "data" / "quarantine",
    reports_dir: Path = REPO_ROOT / "reports",
) -> None:
    thresholds = ValidationThresholds(**load_params("validate", REPO_ROOT / "params.yaml"))
    raw = pd.read_parquet(raw_path)
    result = validate_ohlcv(raw, thresholds, docs_dir=reports_dir / "data_docs")
    write_validation(
        result,
        valid_path=valid_dir / "ohlcv.parquet",
        quarantine_path=quarantine_dir / "quarantine.parquet",
        report_path=reports_dir / "validation.json",
    )
    headline.write(reports_dir.parent, "validate", result.report)  # <root>/metrics/
    r = result.report
    print(f"validate: {r['rows_in']} in = {r['rows_valid']} valid + {r['rows_quarantined']} quarantined")
    for line in result.warning_lines():  # kept rows worth a look (probable splits, gaps...)
        print(f"validate: {line}")
    if not result.passed:
        raise ContractError(result.failure_message())


if __name__ == "__main__":
    run_stage(main)
