"""Steps per second of one SingleAssetTradingEnv with random actions (goal >= 100,000).

The environment is the registered default (one synthetic symbol, ~1000 bars,
6 features, window 20, costs on); episodes run to the end of the data and are
reset inside the timed loop. Actions are drawn up front (uniform in [-1, 1],
float32 arrays of shape (1,), as an agent sends them) so the figure is the
environment's own cost. Each variant is timed ``REPEATS`` times; the best run is
printed (steps/s and microseconds per step):

* copy obs: the default; every step returns a fresh observation array.
* no obs copy: ``copy_obs=False``; the environment's buffer is returned (what
  SB3's VecEnvs, which copy it themselves, can take).
* risk hook: a no-op ``risk_fn`` is called with its context every step.
* gymnasium.make: through the registration's wrappers (passive checker,
  order enforcing).

Then the cost of the observation's parts in isolation, and the top of a
cProfile of ``step()``.

    python benchmarks/bench_env.py [--steps 300000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import timeit

import gymnasium as gym
import numpy as np

from tradingrl.envs import SINGLE_ASSET_ENV_ID, make_synthetic_env

REPEATS = 3
N_ACTION_ARRAYS = 4096  # cycled; (1,)-shaped float32 arrays made once


def random_actions(seed: int = 0, n_actions: int = 1) -> list[np.ndarray]:
    """``N_ACTION_ARRAYS`` uniform float32 actions of shape (n_actions,)."""
    draws = np.random.default_rng(seed).uniform(-1.0, 1.0, (N_ACTION_ARRAYS, n_actions))
    return list(draws.astype(np.float32))


def run(env: gym.Env, actions: list[np.ndarray], steps: int) -> float:
    """Seconds for ``steps`` steps (resets included)."""
    env.reset(seed=0)
    step = env.step
    reset = env.reset
    mask = N_ACTION_ARRAYS - 1
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = step(actions[i & mask])
        if terminated or truncated:
            reset()
    return time.perf_counter() - start


def best_rate(env: gym.Env, actions: list[np.ndarray], steps: int) -> float:
    return steps / min(run(env, actions, steps) for _ in range(REPEATS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of step()")
    args = parser.parse_args()
    actions = random_actions()

    variants = {
        "copy obs (default)": make_synthetic_env(),
        "no obs copy": make_synthetic_env(copy_obs=False),
        "copy obs + no-op risk hook": make_synthetic_env(risk_fn=lambda target, context: target),
        "gymnasium.make (wrappers)": gym.make(SINGLE_ASSET_ENV_ID),
    }
    env = variants["copy obs (default)"]
    print(f"market: {len(env.market)} bars, {env.market.n_features} features, "
          f"window {env.window}, observation {env.obs_size} float32; "
          f"{args.steps:,} steps, best of {REPEATS}")
    for name, variant in variants.items():
        rate = best_rate(variant, actions, args.steps)
        print(f"  {name:<28} {rate:>10,.0f} steps/s  {1e6 / rate:6.2f} us/step")

    # The observation's parts alone, at a mid-episode bar.
    env.reset(seed=0, options={"start_bar": 500})
    n = 200_000
    start = (500 + 1) * env.market.n_features - env._win_len
    parts = {
        "write obs (window + preds + account)": lambda: env._write_obs(500),
        "window slice copy only": lambda: env._obs.__setitem__(
            slice(0, env._win_len), env._feat_flat[start:start + env._win_len]),
        "return copy (obs.copy())": env._obs.copy,
    }
    for name, fn in parts.items():
        seconds = min(timeit.repeat(fn, number=n, repeat=REPEATS)) / n
        print(f"  {name:<38} {seconds * 1e6:6.3f} us")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(make_synthetic_env(), actions, 100_000)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
