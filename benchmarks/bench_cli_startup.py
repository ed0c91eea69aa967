"""Wall time of ``tradingrl --help`` in a fresh process (best and median of 7).

    python benchmarks/bench_cli_startup.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    exe = shutil.which("tradingrl") or str(Path(sys.executable).parent / "tradingrl")
    times = []
    for _ in range(7):
        start = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    print(f"tradingrl --help: best {min(times):.3f} s, median {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()
