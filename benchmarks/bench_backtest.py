"""Time of `backtest_positions` over a 1M-bar position series with costs (goal < 50 ms).

vectorbt, the usual peer, fills 1M orders in 70-100 ms on an Apple M1 by its own
README. The market is a synthetic random walk made with numpy (opens gap from
the previous close, per-bar sigma given). Two target series, both changing
every bar, so nearly every one of the ~1M steps sends an order:

* uniform: drawn anew in [-1, 1] each bar (the most turnover; the costs of
  trading ~67% of equity every bar bleed the account down by ~50 orders of
  magnitude over 1M bars, which is what those costs do);
* ar(1): ``x_k = 0.99 x_{k-1} + N(0, 0.05)`` (std ~0.35, mean |change| ~0.04):
  a slowly changing signal; the backtester clips the ~0.5% beyond [-1, 1].

Two volumes: "no cap", 1e12 shares a bar, the 10% participation cap never
binds; "cap binds", uniform in [1e2, 1e4] shares (a full position is ~20,000
shares at the start), so the cap cuts many orders. "final eq" is the final
equity as a multiple of the initial 1e6.

Default costs (1 bps commission, 2 bps spread, impact 0.5) in all cases. The
first call of the process compiles the numba kernel, or loads it from numba's
on-disk cache (``__pycache__``); that call (10 steps) is timed apart, and the
line says which it was (``NUMBA_CACHE_DIR=$(mktemp -d)`` forces a compile). Each
case then runs once untimed and ``--repeats`` times timed: median, min and max
wall time, and "CPU med", the median process CPU time (well below the wall
median: the machine was busy). Input validation and the result's allocation are
inside the timed call. Then, for scale, the uniform targets replayed through
``SingleAssetTradingEnv`` (the ``risk_fn`` path, a no-op risk function) over the
first ``--env-bars`` bars.

    python benchmarks/bench_backtest.py [--bars 1000000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from tradingrl.backtest import backtest_positions, engine
from tradingrl.envs import ExecutionCosts, MarketArrays

START_BAR = 1


def synthetic_market(n_bars: int, capped: bool, seed: int = 0) -> MarketArrays:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n_bars)))
    open_ = np.concatenate([[50.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.0005, n_bars))
    volume = rng.uniform(1e2, 1e4, n_bars) if capped else np.full(n_bars, 1e12)
    return MarketArrays(
        symbol="SYN", open=open_, high=np.maximum(open_, close), low=np.minimum(open_, close),
        close=close, volume=volume, features=np.zeros((n_bars, 1), np.float32),
        feature_names=("f",), sigma=np.full(n_bars, 0.001))


def ar1_targets(shocks: np.ndarray, phi: float) -> np.ndarray:
    values = np.empty_like(shocks)
    x = 0.0
    for k, shock in enumerate(shocks.tolist()):
        x = phi * x + shock
        values[k] = x
    return values


def time_calls(market: MarketArrays, targets: np.ndarray, repeats: int,
               **kwargs: object) -> tuple[list[float], list[float], object]:
    """(wall seconds, CPU seconds) of ``repeats`` calls after an untimed one; last result."""
    result = backtest_positions(market, targets, start_bar=START_BAR, **kwargs)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = backtest_positions(market, targets, start_bar=START_BAR, **kwargs)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--env-bars", type=int, default=100_000)
    args = parser.parse_args()
    n_steps = args.bars - START_BAR - 1
    rng = np.random.default_rng(1)
    targets = {
        "uniform": rng.uniform(-1.0, 1.0, n_steps),
        "ar(1)": ar1_targets(rng.normal(0.0, 0.05, n_steps), 0.99),
    }
    markets = {"no cap": synthetic_market(args.bars, capped=False),
               "cap binds": synthetic_market(args.bars, capped=True)}
    cases = [("uniform", "no cap", "next_open"), ("uniform", "no cap", "next_close"),
             ("uniform", "cap binds", "next_open"), ("ar(1)", "no cap", "next_open"),
             ("ar(1)", "cap binds", "next_open")]
    costs = ExecutionCosts()

    start = time.perf_counter()
    backtest_positions(markets["no cap"], targets["uniform"][:10], start_bar=START_BAR)
    first = time.perf_counter() - start
    how = "loaded from cache" if engine._backtest_kernel.stats.cache_hits.total() else "compiled"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"first call (kernel {how}): {first * 1e3:.0f} ms; {os.cpu_count()} CPUs, "
          f"load average {load}")
    print(f"{n_steps:,} steps, default costs, {args.repeats} timed calls per case")
    print(f"{'targets, volume, fill':32s} {'median':>8s} {'min':>8s} {'max':>8s} "
          f"{'CPU med':>8s} {'ns/step':>7s} {'trades':>9s} {'capped':>7s} {'final eq':>9s}")
    for kind, volume, fill in cases:
        wall, cpu, result = time_calls(markets[volume], targets[kind], args.repeats,
                                       costs=costs, fill=fill)
        median = statistics.median(wall)
        print(f"{f'{kind}, {volume}, {fill}':32s} {median * 1e3:6.1f}ms "
              f"{min(wall) * 1e3:6.1f}ms {max(wall) * 1e3:6.1f}ms "
              f"{statistics.median(cpu) * 1e3:6.1f}ms {median / n_steps * 1e9:7.1f} "
              f"{result.n_trades:9,d} {result.capped.mean():7.1%} "
              f"{result.final_equity / 1e6:9.2g}")

    short = targets["uniform"][:args.env_bars]
    start = time.perf_counter()
    backtest_positions(markets["no cap"], short, start_bar=START_BAR, costs=costs,
                       risk_fn=lambda target, context: target)
    seconds = time.perf_counter() - start
    print(f"env replay (risk_fn path, no-op risk function): {len(short):,} steps in "
          f"{seconds:.2f} s = {seconds / len(short) * 1e6:.2f} us/step")


if __name__ == "__main__":
    main()
