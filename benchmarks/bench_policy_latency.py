"""Decision latency of the ``trading-policy`` model in process
(:meth:`TradingPolicy.decide`), for 1 symbol and for 8 symbols, on the
minimum history window; ``bench_policy_latency_http.py`` times the same
decisions over HTTP.

    python -m benchmarks.bench_policy_latency [--bundle models/trading_policy]
        [--data data/validated/ohlcv.parquet | --data synthetic] [--symbols 1 8]
        [--calls 200] [--warmup 5] [--no-code-check]

Goal: p99 under 10 ms on CPU (the served route's limit is 100 ms).

``--bundle`` is a folder written by :func:`~tradingrl.registry.bundle.build_policy_bundle`
(``models/trading_policy`` after ``make run``); the script does not build
one. The windows are those of :mod:`benchmarks.policy_latency`. ``--warmup``
calls (numba JIT, torch allocator) run before the ``--calls`` timed ones;
torch runs with 1 intra-op thread. Next to the wall times, this process's
mean CPU time per call: well below the wall time means the call waited for
a core.

The breakdown: the same windows are decided on once more, each call under
cProfile, which gives per call the time spent in (subcalls included)
``check_ohlcv`` (input checks), ``feature_block`` (and within it
``feature_matrix``, the indicators), the trend model's ``predict_windows``
(within it ``_ensemble_passes``, the MC-dropout forward passes; the rest is
scaling and averaging the passes), the agent's ``predict`` and the risk
layer; "other" is the rest of the call (grouping by symbol, building the
observation, the output frame). The script checks that each part ran as
often as the policy's code path says (once per symbol per call;
``check_ohlcv`` once per call) and stops if not, so a changed code path
cannot silently move time into "other".
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.policy_latency import (
    DESIGN_TARGET_MS,
    IN_PROCESS_GOAL_MS,
    add_common_arguments,
    check_common_arguments,
    code_of,
    load_average,
    load_policy,
    print_part,
    print_table,
    profile_call,
    verdicts,
    windows_per_symbol_count,
)

# (name, label, parent, expected calls: once per decided "symbol" or per decide "call")
PARTS: tuple[tuple[str, str, str | None, str], ...] = (
    ("prepare_ohlcv", "check_ohlcv (input checks)", None, "call"),
    ("features", "features (feature_block)", None, "symbol"),
    ("compute_features", "indicators (feature_matrix)", "features", "symbol"),
    ("trend_model", "trend model (predict_windows)", None, "symbol"),
    ("mc_forward_passes", "CNN+LSTM passes (_ensemble_passes)", "trend_model", "symbol"),
    ("agent", "agent (SB3 predict)", None, "symbol"),
    ("risk_layer", "risk layer", None, "symbol"),
)
LABELS = {name: label for name, label, _, _ in PARTS}
CALLS_PER = {name: per for name, _, _, per in PARTS} | {"decide": "call"}


def part_functions(policy: Any) -> dict[str, Any]:
    """The functions :meth:`TradingPolicy.decide` calls, per part name (the
    ones it looks up at call time, so these are the ones it runs)."""
    from tradingrl.features import build, fast_features
    from tradingrl.models import uncertainty
    from tradingrl.registry import policy as policy_module

    functions = {
        "decide": type(policy).decide,
        "prepare_ohlcv": policy_module.check_ohlcv,
        "features": build.feature_block,
        "compute_features": fast_features.feature_matrix,
        "trend_model": type(policy.trend_model).predict_windows,
        "mc_forward_passes": uncertainty._ensemble_passes,
        "agent": type(policy.agent).predict,
    }
    if policy.risk_fn is not None:
        functions["risk_layer"] = policy.risk_fn
    return functions


def timed_calls(policy: Any, wins: list[pd.DataFrame], n_symbols: int, warmup: int
                ) -> tuple[np.ndarray, float]:
    """Per-call ms of ``policy.decide`` over ``wins[warmup:]`` (after deciding
    on ``wins[:warmup]``) and this process's mean CPU ms per call."""
    for window in wins[:warmup]:
        policy.decide(window)
    totals, cpu = [], 0.0
    for window in wins[warmup:]:
        cpu_start = time.process_time()
        start = time.perf_counter()
        decisions = policy.decide(window)
        totals.append(time.perf_counter() - start)
        cpu += time.process_time() - cpu_start
        if len(decisions) != n_symbols:
            raise RuntimeError(f"decide answered {len(decisions)} rows for {n_symbols} symbols")
    return np.asarray(totals) * 1e3, 1e3 * cpu / len(totals)


def profiled_calls(policy: Any, wins: list[pd.DataFrame], n_symbols: int
                   ) -> dict[str, np.ndarray]:
    """Per part (and "decide", the whole call), the ms of each call of
    ``policy.decide`` over ``wins``, each call under cProfile."""
    codes = {name: code_of(fn) for name, fn in part_functions(policy).items()}
    per_call: dict[str, list[float]] = defaultdict(list)
    calls = dict.fromkeys(codes, 0)
    for window in wins:
        _, ms, counted = profile_call(lambda window=window: policy.decide(window), codes)
        for name in codes:
            per_call[name].append(ms[name])
            calls[name] += counted[name]
    for name in codes:
        expected = len(wins) * (n_symbols if CALLS_PER[name] == "symbol" else 1)
        if calls[name] != expected:
            raise RuntimeError(f"{name} ran {calls[name]} times in {len(wins)} calls, expected "
                               f"{expected}: TradingPolicy's code path changed; update this "
                               "benchmark's breakdown")
    return {name: np.asarray(ms) for name, ms in per_call.items()}


def print_breakdown(n_symbols: int, unprofiled: np.ndarray, parts: dict[str, np.ndarray]
                    ) -> None:
    total = parts["decide"]
    print(f"  where the time goes, {n_symbols} symbol(s): {len(total)} more calls, each under "
          f"cProfile (mean {total.mean():.2f} ms, against {unprofiled.mean():.2f} ms "
          "unprofiled); ms per call: mean / p50 / p99, share of the mean profiled call:")
    mean_total = total.mean()
    top = np.zeros_like(total)
    for name, label, parent, _ in PARTS:
        if name not in parts or parent is not None:
            continue
        print_part(label, parts[name], mean_total)
        top += parts[name]
        children = [child for child, _, up, _ in PARTS if up == name and child in parts]
        if children:
            for child in children:
                print_part(LABELS[child], parts[child], mean_total, indent=2)
            print_part("rest", parts[name] - sum(parts[c] for c in children), mean_total,
                       indent=2)
    print_part("other (grouping, observation, output)", total - top, mean_total)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--no-code-check", action="store_true",
                        help="load a bundle built with other decision code (to time a code "
                        "change before rebuilding the bundle)")
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    policy = load_policy(Path(args.bundle), check_code=not args.no_code_check)
    wins = windows_per_symbol_count(args, policy)

    local: dict[int, np.ndarray] = {}
    local_cpu: dict[int, float | None] = {}
    before = load_average()
    for n in args.symbols:
        local[n], local_cpu[n] = timed_calls(policy, wins[n], n, args.warmup)
    after = load_average()
    breakdown = {n: profiled_calls(policy, wins[n][args.warmup:], n) for n in args.symbols}
    print("\nin process, TradingPolicy.decide, ms per call")
    print(f"  before: {before}; after: {after}")
    print_table(local, local_cpu, "this process")
    for n in args.symbols:
        print_breakdown(n, local[n], breakdown[n])

    print("\ngoals:")
    verdicts("in process", local, (("goal", IN_PROCESS_GOAL_MS),
                                   ("design target", DESIGN_TARGET_MS)))
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
