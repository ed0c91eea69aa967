"""Steps per second of PortfolioTradingEnv with random actions, for N = 1, 4, 8, 30 symbols.

Each environment is the registered default's factory
(:func:`make_synthetic_portfolio_env`: ~1000 synthetic bars per symbol,
6 features, window 20, costs on) with N symbols; episodes run to the end of
the data and are reset inside the timed loop. Actions are drawn up front
(uniform in [-1, 1], float32 arrays, as an agent sends them), so with random
actions nearly every symbol trades every step: the full execution path. Each
variant gets a warm-up run, then is timed ``REPEATS`` times; the best run is
printed (steps/s and microseconds per step):

* long-only: the default (N + 1 actions, last one cash), fresh observation
  arrays (``copy_obs=True``).
* no obs copy: ``copy_obs=False`` (the environment's buffer is returned, what
  SB3's VecEnvs, which copy it themselves, can take).
* short: ``allow_short=True`` (N actions).
* risk hook: long-only with a no-op ``risk_fn`` called with its context.

For scale, the single-asset environment on the same first symbol is timed too.
Wall-clock timings: the 1-minute load average is printed before and after, as
other processes on the machine slow every figure down.

    python benchmarks/bench_portfolio_env.py [--steps 50000] [--symbols 1 4 8 30] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats

import gymnasium as gym
from bench_env import random_actions, run  # the same timed loop as the single-asset figure

from tradingrl.envs import make_synthetic_env, make_synthetic_portfolio_env

REPEATS = 3
WARMUP_STEPS = 2_000


def best_rate(env: gym.Env, steps: int) -> float:
    actions = random_actions(n_actions=env.action_space.shape[0])
    run(env, actions, WARMUP_STEPS)
    return steps / min(run(env, actions, steps) for _ in range(REPEATS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 4, 8, 30])
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of step() for the largest N")
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    single = best_rate(make_synthetic_env(), args.steps)
    print(f"{args.steps:,} steps per run, best of {REPEATS} after {WARMUP_STEPS:,} warm-up "
          f"steps; steps/s (us/step)")
    print(f"single-asset env, same market: {single:,.0f} ({1e6 / single:.1f} us)")
    variants = {
        "long-only": {},
        "no obs copy": {"copy_obs": False},
        "short": {"allow_short": True},
        "risk hook": {"risk_fn": lambda weights, context: weights},
    }
    header = f"{'N':>3} {'obs':>5}" + "".join(f" {name:>19}" for name in variants)
    print(header)
    for n_symbols in args.symbols:
        row = ""
        for kwargs in variants.values():
            env = make_synthetic_portfolio_env(n_symbols=n_symbols, **kwargs)
            rate = best_rate(env, args.steps)
            row += f" {rate:>9,.0f} ({1e6 / rate:5.1f} us)"
        print(f"{n_symbols:>3} {env.obs_size:>5}{row}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    if args.profile:
        env = make_synthetic_portfolio_env(n_symbols=max(args.symbols))
        actions = random_actions(n_actions=env.n_actions)
        profiler = cProfile.Profile()
        profiler.enable()
        run(env, actions, args.steps)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(10)


if __name__ == "__main__":
    main()
