"""One numba kernel (``fast_features.feature_matrix``) vs the ta/pandas reference
(``technical.compute_features``) for one symbol's features.

What is measured: the wall time of one call that turns five OHLCV arrays into
the full feature matrix (all ``FEATURE_COLUMNS``), on the last 181 bars (the
serving window of ``TradingPolicy``), 2,520 bars (ten years of daily bars) and
100,000 bars of one seeded geometric random walk with lognormal volume (the
synthetic market's calendar cannot hold 100,000 daily sessions). Both sides
are timed warm: one untimed call first (it loads numba's cache and imports
``ta``), then repeated calls, each timed alone with ``time.perf_counter``, for
about ``BUDGET_S`` seconds per cell (at least 10 and at most 2,000 calls).
The table gives the median and the 99th percentile per call (with fewer than
100 calls the p99 is close to the slowest call), the speed-up of the medians,
and a check that both sides agree (same NaN mask, largest relative
difference). The reference returns a DataFrame; the kernel a float64 array of
the same values. Single thread; the machine's other load shows in the p99.

From a few thousand bars on, the kernel's time is dominated by memory: its
~150 temporary arrays are freed after each call, glibc returns the pages to the
OS and the next call page-faults them back (with
``MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000`` in the
environment, 2,520 bars took ~2.4 ms instead of ~3.6 ms and 100,000 bars ~105 ms
instead of ~165 ms on the development machine). The 181-bar case is unaffected.

    python benchmarks/bench_feature_kernel.py
"""

from __future__ import annotations

import gc
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from tradingrl.features.fast_features import feature_matrix
from tradingrl.features.technical import compute_features

SIZES = (181, 2520, 100_000)
BUDGET_S = 3.0  # per cell (size x side)


def bars(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Open, high, low, close, volume of a random walk (~1.5% daily vol)."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, n)))
    open_ = np.concatenate([[50.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, n)))
    return open_, high, low, close, np.round(rng.lognormal(12.0, 0.4, n))


def time_calls(fn, args: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per-call seconds of ``fn(*args)`` after one untimed warm-up call."""
    fn(*args)
    start = time.perf_counter()
    fn(*args)
    first = time.perf_counter() - start
    calls = int(min(2000, max(10, BUDGET_S / max(first, 1e-9))))
    gc.collect()
    times = np.empty(calls)
    for k in range(calls):
        start = time.perf_counter()
        fn(*args)
        times[k] = time.perf_counter() - start
    return times


def agreement(fast: np.ndarray, ref: np.ndarray) -> tuple[bool, float]:
    same_mask = bool(np.array_equal(np.isnan(fast), np.isnan(ref)))
    finite = ~np.isnan(ref) & ~np.isnan(fast)
    diff = np.abs(fast[finite] - ref[finite]) / np.maximum(np.abs(ref[finite]), 1e-300)
    return same_mask, float(diff.max(initial=0.0))


def main() -> None:
    full = bars(max(SIZES))
    rows = []
    for n in SIZES:
        args = tuple(x[-n:] for x in full)
        fast_t = time_calls(feature_matrix, args)
        ref_t = time_calls(lambda *a: compute_features(*a).to_numpy(), args)
        same_mask, max_rel = agreement(feature_matrix(*args), compute_features(*args).to_numpy())
        rows.append((n, fast_t, ref_t, same_mask, max_rel))

    def ms(t: np.ndarray, q: float) -> str:
        return f"{np.percentile(t, q) * 1e3:.3f}"

    print("| bars | kernel median ms | kernel p99 ms | calls | reference median ms "
          "| reference p99 ms | calls | speed-up | same NaN mask | max rel diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|")
    for n, fast_t, ref_t, same_mask, max_rel in rows:
        speedup = np.median(ref_t) / np.median(fast_t)
        print(f"| {n:,} | {ms(fast_t, 50)} | {ms(fast_t, 99)} | {fast_t.size} "
              f"| {ms(ref_t, 50)} | {ms(ref_t, 99)} | {ref_t.size} | {speedup:.1f}x "
              f"| {'yes' if same_mask else 'NO'} | {max_rel:.1e} |")


if __name__ == "__main__":
    main()
