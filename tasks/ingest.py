"""Stage ingest: params ``ingest`` -> data/raw/ohlcv.parquet (+ ingest.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl.data.sources import load_source, source_options
from tradingrl.params import load_params
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent


def ingest(params: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load the source params name; relative csv paths are from the repo root."""
    return load_source(*source_options(params, base_dir=REPO_ROOT))


def main(out_dir: Path = REPO_ROOT / "data" / "raw") -> None:
    frame, report = ingest(load_params("ingest", REPO_ROOT / "params.yaml"))
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out_dir / "ohlcv.parquet", index=False)
    write_json(out_dir / "ingest.json", report)
    print(f"ingest: {report['rows']} rows, {report['symbols']} symbols from {report['source']}")


if __name__ == "__main__":
    run_stage(main)
