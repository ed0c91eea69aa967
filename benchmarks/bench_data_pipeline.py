"""ingest -> validate -> features on 1.37M synthetic rows (137 symbols x
10,000 bars), each stage in its own process as DVC runs them; prints wall time
and peak memory (max RSS) per stage and in total.

    python benchmarks/bench_data_pipeline.py [--symbols 137] [--bars 10000] [--csv]

With --csv the market is first written to one long CSV file (not timed) and
the ingest stage reads it with the CSV source instead of generating it.

Runs the repository's stage modules (tasks/) in a temporary folder with their
own params; nothing in the repository is touched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CSV_INGEST = """
from tradingrl.data.sources import load_source
frame, report = load_source("csv", {{"path": r"{work}/market.csv"}})
frame.to_parquet(r"{work}/raw.parquet", index=False)
print(f"{{len(frame):,}} rows from a {{report['files'][0]}} of "
      f"{{__import__('os').path.getsize(r'{work}/market.csv') / 2**20:.0f}} MiB")
"""

WRITE_CSV = """
from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
generate_market(SyntheticMarketConfig(n_symbols={symbols}, n_bars={bars}, seed=7)).to_csv(
    r"{work}/market.csv", index=False)
"""

STAGE_CODE = {
    "ingest": """
from tradingrl.data.sources import load_source
frame, report = load_source("synthetic", {{"n_symbols": {symbols}, "n_bars": {bars}, "seed": 7}})
frame.to_parquet(r"{work}/raw.parquet", index=False)
print(f"{{len(frame):,}} rows")
""",
    "validate": """
from pathlib import Path
import pandas as pd
from tradingrl.data.validation import ValidationThresholds, validate_ohlcv, write_validation
result = validate_ohlcv(pd.read_parquet(r"{work}/raw.parquet"), ValidationThresholds(),
                        docs_dir=Path(r"{work}/data_docs"))
write_validation(result, valid_path=Path(r"{work}/valid.parquet"),
                 quarantine_path=Path(r"{work}/quarantine.parquet"),
                 report_path=Path(r"{work}/validation.json"))
r = result.report
print(f"{{r['rows_in']:,}} in = {{r['rows_valid']:,}} valid + {{r['rows_quarantined']:,}} quarantined")
""",
    "features": """
import pandas as pd
from tradingrl.features.build import build_feature_table
from tradingrl.features.contract import feature_schema
from tradingrl.features.labels import LabelSpec
table, report = build_feature_table(pd.read_parquet(r"{work}/valid.parquet"), LabelSpec(), 120)
feature_schema().validate(table)
table.to_parquet(r"{work}/features.parquet", index=False)
print(f"{{report['rows_out']:,}} rows x {{report['n_features']}} features")
""",
}


def run_stage(code: str) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GiB, stdout) of one stage in a fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage failed with status {status}")
    return wall, usage.ru_maxrss / 2**20, out.strip()  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=137)
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--csv", action="store_true", help="ingest from a CSV file")
    args = parser.parse_args()
    stages = dict(STAGE_CODE)
    if args.csv:
        stages["ingest"] = CSV_INGEST
    total_wall, peak = 0.0, 0.0
    with tempfile.TemporaryDirectory() as work:
        source = "a CSV file" if args.csv else "the synthetic source"
        print(f"{args.symbols} symbols x {args.bars:,} bars from {source}, {os.cpu_count()} cores")
        if args.csv:
            run_stage(WRITE_CSV.format(symbols=args.symbols, bars=args.bars, work=work))
        for stage, template in stages.items():
            code = template.format(symbols=args.symbols, bars=args.bars, work=work)
            wall, rss, out = run_stage(code)
            total_wall += wall
            peak = max(peak, rss)
            print(f"{stage:>9}: {wall:6.1f} s  peak {rss:5.2f} GiB  ({out})")
    print(f"    total: {total_wall:6.1f} s  peak {peak:5.2f} GiB (largest stage)")


if __name__ == "__main__":
    main()
