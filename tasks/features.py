"""Stage features: data/validated -> data/features/features.parquet
(+ feature_list.json, the ordered contract) and reports/features.json."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tradingrl import headline
from tradingrl.features.build import build_feature_table
from tradingrl.features.contract import feature_schema
from tradingrl.features.labels import LabelSpec
from tradingrl.params import load_params
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(
    valid_path: Path = REPO_ROOT / "data" / "validated" / "ohlcv.parquet",
    out_dir: Path = REPO_ROOT / "data" / "features",
    report_path: Path = REPO_ROOT / "reports" / "features.json",
) -> None:
    params = load_params("features", REPO_ROOT / "params.yaml")
    bars = pd.read_parquet(valid_path)
    table, report = build_feature_table(
        bars, LabelSpec(**params["label"]), warmup_bars=params["warmup_bars"]
    )
    feature_schema().validate(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out_dir / "features.parquet", index=False)
    write_json(out_dir / "feature_list.json", {"features": report["features"]})
    write_json(report_path, report)
    headline.write(report_path.parent.parent, "features", report)  # <root>/metrics/
    print(f"features: {report['rows_out']} rows x {report['n_features']} features")


if __name__ == "__main__":
    run_stage(main)
