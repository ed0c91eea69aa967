"""SB3 training throughput: environment steps per second of ``model.learn``
(rollouts and gradient updates together) for PPO, SAC and TD3 with 1, 2 and 4
training environments.

The environment is :class:`~tradingrl.envs.SingleAssetTradingEnv` (window 20,
default costs, episodes from the first decision bar to the end of the data)
over ``synthetic_market_arrays(n_bars=2000)``, ``Monitor``-wrapped and
vectorised by :func:`tradingrl.agents.training.make_vec_env_for`
(``DummyVecEnv`` for 1 env, ``SubprocVecEnv`` above; ``--vec-env dummy`` or
``subproc`` forces one class, to compare them at the same n_envs). Models run on the CPU
with ``torch.set_num_threads(--torch-threads)``, 1 by default: the networks are
small (PPO 64x64, SAC/TD3 256x256, batches of 64/256), so a second intra-op
thread gains little, and on a 2-core machine that is busy (other processes,
SubprocVecEnv workers) OpenMP's threads wait on each other at every op, and
the rates fall several-fold (compare ``--torch-threads 2``).

Hyperparameters are SB3's defaults, written out: PPO n_steps 2048 per env,
batch 64, 10 epochs; SAC and TD3 train_freq 1, gradient_steps 1, batch 256,
learning_starts 100, buffer 1e6 capped at the transitions the run stores (so
no transition is ever overwritten and the buffer behaves as 1e6 would). SAC
and TD3 take one gradient step per ``VecEnv.step`` call, i.e. per ``n_envs``
environment steps, as SB3 does with these settings: more envs means fewer
updates per step.

Per (algorithm, n_envs): build the vec env and the model, learn a warm-up
(PPO: one rollout of 2048 x n_envs steps and its update; SAC/TD3:
``--warmup`` steps, past learning_starts), then time ``--repeats`` calls of
``learn(total_timesteps=K, reset_num_timesteps=False)`` with
``time.perf_counter``. A step is one environment step (summed over envs, as
``total_timesteps`` counts); the steps of a call are read off
``model.num_timesteps``, because PPO rounds K up to whole rollouts of
2048 x n_envs steps. Inside the timed calls the time spent in ``model.train``
(gradient updates) is summed. Afterwards the same vec env is stepped with
random actions (no model) for ``--env-steps`` steps: "env only" steps/s, and
"env %" = training steps/s / env-only steps/s, the share of training time the
environment and its vectorisation cost. What is left (100 - updates % - env %)
is the policy's forward pass per step, buffer writes and SB3's bookkeeping.

    python benchmarks/bench_sb3_training.py [--algorithms ppo,sac,td3] [--n-envs 1,2,4]
        [--timesteps K] [--repeats 3] [--torch-threads 1] [--vec-env auto] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALGORITHMS: tuple[str, ...] = ("ppo", "sac", "td3")
N_BARS = 2000
WINDOW = 20
SEED = 0
PPO_N_STEPS = 2048  # per env
MAX_BUFFER = 1_000_000
LEARNING_STARTS = 100
# Steps timed per learn call when --timesteps is not given: PPO one rollout at
# 4 envs (4 at 1 env), SAC/TD3 enough gradient steps for a stable rate.
DEFAULT_TIMESTEPS = {"ppo": 8192, "sac": 500, "td3": 500}
QUICK_TIMESTEPS = {"ppo": 2048, "sac": 200, "td3": 200}
VEC_ENV_CHOICES: tuple[str, ...] = ("auto", "dummy", "subproc")


@dataclass(frozen=True)
class Result:
    """One (algorithm, n_envs) row. Rates in environment steps per second,
    seconds of wall time per timed learn call, shares in percent of it."""

    algorithm: str
    n_envs: int
    vec_env: str  # "DummyVecEnv" or "SubprocVecEnv"
    steps_per_call: int
    rates: tuple[float, ...]
    seconds: tuple[float, ...]
    update_share: float  # % of the timed learn calls spent in model.train
    env_only_rate: float  # steps/s of the vec env alone, random actions

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def env_share(self) -> float:
        """% of training time the vec env's steps would take at the env-only rate."""
        return 100.0 * self.median_rate / self.env_only_rate


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    return values


def _algorithm_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip().lower() for v in text.split(","))
    unknown = [v for v in values if v not in ALGORITHMS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown algorithm(s) {unknown}; choose from {ALGORITHMS}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` sets small timesteps, 1 repeat and
    fewer env-only steps unless those are given explicitly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", type=_algorithm_list, default=ALGORITHMS,
                        help="comma-separated subset of ppo,sac,td3")
    parser.add_argument("--n-envs", type=_int_list, default=(1, 2, 4),
                        help="comma-separated env counts (1: DummyVecEnv, >1: SubprocVecEnv)")
    parser.add_argument("--timesteps", type=_positive_int, default=None,
                        help="env steps per timed learn call, all algorithms (default: "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_TIMESTEPS.items())
                             + "; PPO rounds up to whole rollouts)")
    parser.add_argument("--repeats", type=_positive_int, default=None,
                        help="timed learn calls per row (default 3, --quick 1)")
    parser.add_argument("--warmup", type=_positive_int, default=None,
                        help="SAC/TD3 warm-up env steps before timing (default 300, --quick "
                             "200; PPO always warms up with one rollout)")
    parser.add_argument("--env-steps", type=_positive_int, default=None,
                        help="env steps per env-only timing (default 20000, --quick 5000)")
    parser.add_argument("--torch-threads", type=_positive_int, default=1,
                        help="torch.set_num_threads for the model (default 1)")
    parser.add_argument("--vec-env", choices=VEC_ENV_CHOICES, default="auto",
                        help="auto: DummyVecEnv for 1 env, SubprocVecEnv above (the project's "
                             "make_vec_env_for); dummy / subproc: that class for every n_envs")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: small timesteps, 1 repeat")
    args = parser.parse_args(argv)
    if args.warmup is not None and args.warmup <= LEARNING_STARTS:
        parser.error(f"--warmup must exceed learning_starts ({LEARNING_STARTS}) so updates "
                     f"are warm, got {args.warmup}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.warmup is None:
        args.warmup = 200 if args.quick else 300
    if args.env_steps is None:
        args.env_steps = 5000 if args.quick else 20_000
    return args


def timesteps_for(algorithm: str, requested: int | None, quick: bool) -> int:
    """Env steps asked of each timed learn call."""
    if requested is not None:
        return requested
    return (QUICK_TIMESTEPS if quick else DEFAULT_TIMESTEPS)[algorithm]


def steps_learn_runs(algorithm: str, requested: int, n_envs: int) -> int:
    """Env steps ``learn(total_timesteps=requested)`` actually runs: PPO collects
    whole rollouts of 2048 x n_envs steps, SAC/TD3 whole ``VecEnv.step`` calls
    of n_envs steps (both stop at the first count >= requested)."""
    unit = PPO_N_STEPS * n_envs if algorithm == "ppo" else n_envs
    return math.ceil(requested / unit) * unit


def algorithm_kwargs(algorithm: str, buffer_size: int) -> dict[str, Any]:
    """SB3's default hyperparameters, written out (buffer capped by the caller)."""
    if algorithm == "ppo":
        return {"n_steps": PPO_N_STEPS, "batch_size": 64, "n_epochs": 10}
    return {"buffer_size": min(MAX_BUFFER, buffer_size), "learning_starts": LEARNING_STARTS,
            "batch_size": 256, "train_freq": 1, "gradient_steps": 1}


def make_vec_env(market: Any, n_envs: int, vec_env: str) -> Any:
    """The training vec env: :func:`make_vec_env_for` for "auto", else the same
    Monitor-wrapped envs (seeded ``SEED + i``) in the class asked for."""
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from tradingrl.agents.training import make_env_fn, make_vec_env_for

    if vec_env not in VEC_ENV_CHOICES:
        raise ValueError(f"vec_env must be one of {VEC_ENV_CHOICES}, got {vec_env!r}")
    env_kwargs = {"window": WINDOW}
    if vec_env == "auto":
        return make_vec_env_for(market, env_kwargs, n_envs=n_envs, seed=SEED)
    return sb3_make_vec_env(make_env_fn(market, **env_kwargs), n_envs=n_envs, seed=SEED,
                            vec_env_cls=DummyVecEnv if vec_env == "dummy" else SubprocVecEnv)


def random_actions(n_envs: int, n: int, seed: int = SEED) -> np.ndarray:
    """(n, n_envs, 1) float32 target positions uniform in [-1, 1], drawn up front."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (n, n_envs, 1)).astype(np.float32)


def env_only_rate(vec_env: Any, steps: int) -> float:
    """Env steps/s of ``vec_env`` (all envs together) stepped with random
    actions, best of 3 runs of ``steps`` steps (auto-reset included)."""
    n_envs = vec_env.num_envs
    calls = max(1, steps // n_envs)
    actions = random_actions(n_envs, calls)
    vec_env.reset()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for i in range(calls):
            vec_env.step(actions[i])
        best = min(best, time.perf_counter() - start)
    return calls * n_envs / best


def bench_one(algorithm: str, n_envs: int, *, timesteps: int, repeats: int, warmup: int,
              env_steps: int, vec_env: str = "auto") -> Result:
    """Build, warm up and time one (algorithm, n_envs) configuration."""
    from tradingrl.agents.training import algorithm_classes
    from tradingrl.envs.factory import synthetic_market_arrays

    market = synthetic_market_arrays(n_bars=N_BARS)
    per_call = steps_learn_runs(algorithm, timesteps, n_envs)
    warmup_steps = (PPO_N_STEPS * n_envs if algorithm == "ppo"
                    else steps_learn_runs(algorithm, warmup, n_envs))
    envs = make_vec_env(market, n_envs, vec_env)
    try:
        model = algorithm_classes()[algorithm](
            "MlpPolicy", envs, seed=SEED, device="cpu", verbose=0,
            **algorithm_kwargs(algorithm, warmup_steps + repeats * per_call))

        update_seconds = 0.0
        train = model.train

        def timed_train(*args: Any, **kwargs: Any) -> None:
            nonlocal update_seconds
            start = time.perf_counter()
            train(*args, **kwargs)
            update_seconds += time.perf_counter() - start

        model.train = timed_train  # SB3's learn calls self.train(...)

        model.learn(total_timesteps=warmup_steps)
        if model.num_timesteps != warmup_steps:
            raise RuntimeError(f"warm-up ran {model.num_timesteps} steps, expected {warmup_steps}")
        rates, seconds = [], []
        update_seconds = 0.0
        for _ in range(repeats):
            before = model.num_timesteps
            start = time.perf_counter()
            model.learn(total_timesteps=timesteps, reset_num_timesteps=False)
            elapsed = time.perf_counter() - start
            done = model.num_timesteps - before
            if done != per_call:
                raise RuntimeError(f"{algorithm} learn ran {done} steps, expected {per_call}")
            rates.append(done / elapsed)
            seconds.append(elapsed)
        update_share = 100.0 * update_seconds / sum(seconds)
        env_rate = env_only_rate(envs, env_steps)
    finally:
        envs.close()
    return Result(algorithm=algorithm, n_envs=n_envs, vec_env=type(envs).__name__,
                  steps_per_call=per_call,
                  rates=tuple(rates), seconds=tuple(seconds), update_share=update_share,
                  env_only_rate=env_rate)


def format_table(results: Sequence[Result]) -> str:
    """The markdown table printed at the end."""
    lines = [
        ("| algorithm | n_envs | vec env | steps/call | steps/s (median) | min–max | seconds | updates % "
         "| env-only steps/s | env % |"),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.algorithm.upper()} | {r.n_envs} | {r.vec_env.removesuffix('VecEnv')} | "
            f"{r.steps_per_call:,} | "
            f"{r.median_rate:,.0f} | {min(r.rates):,.0f}–{max(r.rates):,.0f} | "
            f"{statistics.median(r.seconds):.2f} | {r.update_share:.0f} | "
            f"{r.env_only_rate:,.0f} | {r.env_share:.1f} |")
    return "\n".join(lines)


def _load_average() -> str:
    """The 1-minute load average: the machine is shared, so say how busy it was."""
    return f"{os.getloadavg()[0]:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import stable_baselines3
    import torch

    torch.set_num_threads(args.torch_threads)
    from tradingrl.envs.factory import synthetic_market_arrays
    from tradingrl.envs.single_asset import SingleAssetTradingEnv

    env = SingleAssetTradingEnv(synthetic_market_arrays(n_bars=N_BARS), window=WINDOW)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} thread(s)), "
          f"stable-baselines3 {stable_baselines3.__version__}, {os.cpu_count()} CPU(s); "
          f"market {len(env.market)} bars, window {WINDOW}, observation {env.obs_size} float32, "
          f"episode {env.last_bar - env.first_bar} steps; {args.repeats} timed learn call(s) "
          f"per row after a warm-up; env-only: best of 3 x {args.env_steps:,} steps")
    load_before = _load_average()
    start = time.perf_counter()
    results = []
    for algorithm in args.algorithms:
        for n_envs in args.n_envs:
            result = bench_one(algorithm, n_envs,
                               timesteps=timesteps_for(algorithm, args.timesteps, args.quick),
                               repeats=args.repeats, warmup=args.warmup,
                               env_steps=args.env_steps, vec_env=args.vec_env)
            print(f"  {algorithm} x{n_envs}: {result.median_rate:,.0f} steps/s", flush=True)
            results.append(result)
    print()
    print(format_table(results))
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average {load_before} before, "
          f"{_load_average()} after (above {os.cpu_count()}: other processes took CPU)")


if __name__ == "__main__":
    main()
