"""Shared parts of the trading-policy latency benchmarks
(``bench_policy_latency.py`` in process, ``bench_policy_latency_http.py``
over ``mlflow models serve``): options, the bundle and the windows decided
on, percentiles, and the per-call profile that splits a call into parts.

The windows: window k holds, per symbol, the policy's ``min_history_bars``
(manifest) bars ending k bars before the last bar of ``--data`` (the
validated OHLCV of the pipeline by default; ``synthetic`` generates
params.yaml's synthetic market in process), so every decision is a real one
at its last bar t with bars <= t only, for a flat account, and consecutive
calls decide at distinct bars.

Times are wall clock (``time.perf_counter``) in milliseconds; percentiles are
numpy's linear interpolation over the timed calls (with 200 calls, p99 lies
between the 2nd and 3rd slowest). The breakdown comes from cProfile, run on
separate calls after the timed ones: the profiler adds time to every Python
call, so the percentiles are never taken under it, and the printed profiled
mean says how much it added.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

IN_PROCESS_GOAL_MS = 10.0
DESIGN_TARGET_MS = 100.0
HTTP_GOAL_MS = 50.0


# ------------------------------------------------------------------ options
def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="models/trading_policy",
                        help="trading-policy bundle folder (default: %(default)s)")
    parser.add_argument("--data", default="data/validated/ohlcv.parquet",
                        help="long-format OHLCV parquet, or 'synthetic' (default: %(default)s)")
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 8],
                        help="symbols per call, one run each (default: 1 8)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before them")


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if any(n < 1 for n in args.symbols):
        parser.error("--symbols must be >= 1")
    if args.calls < 1 or args.warmup < 1:
        parser.error("--calls and --warmup must be >= 1")
    args.symbols = list(dict.fromkeys(args.symbols))


# ------------------------------------------------------------------ inputs
def require_bundle(bundle: Path) -> None:
    """Exit with one line when ``bundle`` is not a trading-policy bundle."""
    if not (bundle / "policy.json").is_file():
        raise SystemExit(f"{bundle} holds no trading-policy bundle (policy.json): run `make run` "
                         "(stage promote writes models/trading_policy) or pass --bundle DIR")


def load_policy(bundle: Path, *, check_code: bool = True) -> Any:
    """The bundle's :class:`~tradingrl.registry.policy.TradingPolicy`, torch on one
    intra-op thread (as the served model runs it); prints what it holds."""
    require_bundle(bundle)
    # No tqdm bars for artifact downloads (this process and a server it starts).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import torch

    from tradingrl.registry.policy import TradingPolicy

    torch.set_num_threads(1)
    policy = TradingPolicy.load(bundle, check_code=check_code)
    m = policy.manifest
    trend = m["trend_model"]
    print(f"bundle {bundle}: {m['agent']['algorithm']} agent (window {policy.window}), "
          f"CNN+LSTM x{trend['ensemble_size']} (window {trend['window']}, MC samples "
          f"{trend['mc_samples']}), risk layer {'on' if policy.risk_fn else 'off'}; "
          f"min_history_bars {policy.min_bars}; torch threads {torch.get_num_threads()}")
    return policy


def load_bars(data: str, n_symbols: int, bars_needed: int) -> pd.DataFrame:
    """Long-format OHLCV of the first ``n_symbols`` symbols (sorted), each
    with at least ``bars_needed`` bars, checked by ``prepare_ohlcv``."""
    from tradingrl.registry.inputs import prepare_ohlcv

    if data == "synthetic":
        from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market

        # The config's defaults are params.yaml's ingest.synthetic market.
        raw = generate_market(SyntheticMarketConfig(n_symbols=max(n_symbols, 8)))
    else:
        path = Path(data)
        if not path.is_file():
            raise SystemExit(f"--data {path} is not a file (run `make run`, or pass "
                             "--data synthetic)")
        raw = pd.read_parquet(path)
    bars = prepare_ohlcv(raw)
    symbols = sorted(bars["symbol"].unique())
    if len(symbols) < n_symbols:
        raise SystemExit(f"--data has {len(symbols)} symbols, --symbols asks for {n_symbols}")
    bars = bars[bars["symbol"].isin(symbols[:n_symbols])]
    counts = bars.groupby("symbol").size()
    if counts.min() < bars_needed:
        raise SystemExit(f"symbol {counts.idxmin()} has {counts.min()} bars; the policy's "
                         f"minimum window needs {bars_needed}")
    return bars.reset_index(drop=True)


def windows(bars: pd.DataFrame, n_symbols: int, min_bars: int, count: int) -> list[pd.DataFrame]:
    """``count`` windows of ``n_symbols`` symbols x ``min_bars`` bars; window
    k ends k bars before each symbol's last bar (cycling when history runs
    out), so consecutive calls decide at distinct bars."""
    symbols = sorted(bars["symbol"].unique())[:n_symbols]
    per_symbol = [bars[bars["symbol"] == s].reset_index(drop=True) for s in symbols]
    shortest = min(len(p) for p in per_symbol)
    distinct = shortest - min_bars + 1
    out = []
    for k in range(count):
        back = k % distinct
        out.append(pd.concat([p.iloc[len(p) - min_bars - back:len(p) - back] for p in per_symbol],
                             ignore_index=True))
    return out


def windows_per_symbol_count(args: argparse.Namespace, policy: Any
                             ) -> dict[int, list[pd.DataFrame]]:
    """``--warmup`` + ``--calls`` windows for each ``--symbols`` count."""
    count = args.warmup + args.calls
    bars = load_bars(args.data, max(args.symbols), policy.min_bars)
    print(f"data {args.data}: {bars['symbol'].nunique()} symbols; {count} windows of "
          f"{policy.min_bars} bars per symbol, ending at distinct bars; {args.warmup} warm-up "
          f"+ {args.calls} timed calls")
    return {n: windows(bars, n, policy.min_bars, count) for n in args.symbols}


# ------------------------------------------------------------------ profile
def code_of(fn: Callable[..., Any]) -> types.CodeType:
    """The code object cProfile records for calls of ``fn`` (a function, a
    bound or unbound method, a functools.partial of one)."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, types.MethodType):
            fn = fn.__func__
        else:
            break
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"{fn!r} is not a Python function; cProfile cannot time it as a part")
    return code


def profile_call(fn: Callable[[], Any], parts: Mapping[str, types.CodeType]
                 ) -> tuple[Any, dict[str, float], dict[str, int]]:
    """Run ``fn()`` under cProfile; its result, and per part of ``parts``
    (name -> code object) the milliseconds spent in it, subcalls included,
    and how many times it was called."""
    profiler = cProfile.Profile(builtins=False)  # C calls untraced: less overhead
    profiler.enable()
    try:
        result = fn()
    finally:
        profiler.disable()
    names = {id(code): name for name, code in parts.items()}
    ms = dict.fromkeys(parts, 0.0)
    calls = dict.fromkeys(parts, 0)
    for entry in profiler.getstats():
        name = names.get(id(entry.code))  # parts' code objects are alive: ids unique
        if name is not None:
            ms[name] += 1e3 * entry.totaltime
            calls[name] += entry.callcount
    return result, ms, calls


# ------------------------------------------------------------------ statistics
def summary(ms: np.ndarray) -> dict[str, float]:
    """p50, p90, p99, max and mean of per-call times in ms."""
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": p50, "p90": p90, "p99": p99, "max": float(ms.max()), "mean": float(ms.mean())}


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def print_table(rows: dict[int, np.ndarray], cpu: dict[int, float | None], cpu_label: str
                ) -> None:
    """Wall-time percentiles per symbol count, and the mean CPU time per
    call (``cpu_label`` says whose) next to the mean wall time: where the
    CPU time is well below the wall time, the call waited for a core."""
    print(f"  {'symbols':>7s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'max':>8s} {'mean':>8s}"
          f"  {'p50/symbol':>10s}  {'mean CPU ms (' + cpu_label + ')':>22s}")
    for n_symbols, ms in rows.items():
        s = summary(ms)
        used = cpu.get(n_symbols)
        shown = "n/a (no /proc)" if used is None else f"{used:.2f}"
        print(f"  {n_symbols:7d} {s['p50']:8.2f} {s['p90']:8.2f} {s['p99']:8.2f} {s['max']:8.2f} "
              f"{s['mean']:8.2f}  {s['p50'] / n_symbols:10.2f}  {shown:>22s}")


def verdicts(label: str, rows: dict[int, np.ndarray], goals: Sequence[tuple[str, float]]) -> None:
    for n_symbols, ms in rows.items():
        p99 = summary(ms)["p99"]
        parts = [f"{name} p99 < {limit:g} ms: {'met' if p99 < limit else 'NOT met'}"
                 for name, limit in goals]
        print(f"  {label}, {n_symbols} symbol(s), p99 {p99:.2f} ms: " + "; ".join(parts))


def print_part(label: str, ms: np.ndarray, mean_total: float, indent: int = 0) -> None:
    """One breakdown line: mean / p50 / p99 ms per call, share of the mean call."""
    p50, p99 = np.percentile(ms, [50, 99])
    print(f"    {' ' * indent}{label:<{46 - indent}s} {ms.mean():8.2f} {p50:8.2f} {p99:8.2f}"
          f"  {100 * ms.mean() / mean_total:5.1f}%")
