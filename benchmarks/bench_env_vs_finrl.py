"""Steps per second of SingleAssetTradingEnv vs FinRL's StockTradingEnv, one stock (goal >= 50x).

Both environments step over the same data: one synthetic symbol of
:func:`tradingrl.envs.synthetic_market_arrays` (``generate_market`` with
``n_symbols=1``, past-only features scaled on the first half). Our environment
gets the :class:`MarketArrays` directly (window 20, default costs); FinRL gets
the same bars as its long table (index = day number, columns date, tic, close
and the same scaled feature columns as its ``tech_indicator_list``), with
``stock_dim=1``, ``hmax=100`` shares, 10 bps buy/sell costs, no turbulence
threshold, no plots and its per-episode printing switched off.

Each environment gets random actions from its own ``action_space`` (seeded,
drawn up front and cycled, so the figure is the environment's own cost), and is
reset inside the timed loop when an episode ends. Ours is timed ``--repeats``
times over ``--steps`` steps (best run printed); FinRL once over
``--finrl-steps`` steps (it is slow; pass ``--finrl-repeats`` for more).

FinRL (0.3.7, from PyPI) is never a project dependency: on first use this script
runs ``python -m pip install --no-deps --target <finrl-dir> finrl==0.3.7``
(default ``~/.cache/tradingrl-bench/finrl-0.3.7``) and loads only the file
``finrl/meta/env_stock_trading/env_stocktrading.py`` from there (the package's
``__init__`` imports its training stack, which is not needed). That module
needs only gymnasium, numpy, pandas, matplotlib and stable-baselines3.

    python benchmarks/bench_env_vs_finrl.py [--steps 300000] [--finrl-steps 20000]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from bench_env import N_ACTION_ARRAYS, run  # the same timed loop for both envs

from tradingrl.envs import MarketArrays, SingleAssetTradingEnv, synthetic_market_arrays

FINRL_VERSION = "0.3.7"
FINRL_ENV_FILE = Path("finrl", "meta", "env_stock_trading", "env_stocktrading.py")
DEFAULT_FINRL_DIR = Path.home() / ".cache" / "tradingrl-bench" / f"finrl-{FINRL_VERSION}"


def install_finrl(target: Path) -> None:
    """pip-install FinRL (no dependencies) into ``target`` unless it is there."""
    if (target / FINRL_ENV_FILE).is_file():
        return
    target.mkdir(parents=True, exist_ok=True)
    print(f"installing finrl=={FINRL_VERSION} (--no-deps) into {target} ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
           "--quiet", "--target", str(target), f"finrl=={FINRL_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (target / FINRL_ENV_FILE).is_file():
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        sys.exit(f"error: could not install finrl=={FINRL_VERSION} with pip "
                 f"(is the package registry reachable?): {reason}")


def load_finrl_env_module(target: Path) -> ModuleType:
    """Import FinRL's env_stocktrading.py alone, without the finrl package."""
    path = target / FINRL_ENV_FILE
    spec = importlib.util.spec_from_file_location("_finrl_env_stocktrading", path)
    if spec is None or spec.loader is None:
        sys.exit(f"error: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finrl_installed_version(target: Path) -> str:
    for dist in importlib.metadata.distributions(path=[str(target)]):
        if dist.metadata["Name"].lower() == "finrl":
            return dist.version
    return "unknown"


def finrl_frame(market: MarketArrays) -> pd.DataFrame:
    """FinRL's single-stock table of the same bars: index 0..N-1 (one row per day)."""
    frame = pd.DataFrame({
        "date": pd.DatetimeIndex(market.timestamps).strftime("%Y-%m-%d"),
        "tic": market.symbol,
        "close": market.close,
    })
    for j, name in enumerate(market.feature_names):
        frame[name] = market.features[:, j].astype(np.float64)
    return frame


def make_finrl_env(module: ModuleType, market: MarketArrays) -> gym.Env:
    tech = list(market.feature_names)
    stock_dim = 1
    return module.StockTradingEnv(
        df=finrl_frame(market),
        stock_dim=stock_dim,
        hmax=100,
        initial_amount=1_000_000,
        num_stock_shares=[0] * stock_dim,
        buy_cost_pct=[0.001] * stock_dim,
        sell_cost_pct=[0.001] * stock_dim,
        reward_scaling=1e-4,
        state_space=1 + 2 * stock_dim + len(tech) * stock_dim,
        action_space=stock_dim,
        tech_indicator_list=tech,
        make_plots=False,
        print_verbosity=10**12,  # prints when episode % print_verbosity == 0
    )


def random_actions(env: gym.Env, seed: int) -> list[Any]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(N_ACTION_ARRAYS)]


def best_rate(env: gym.Env, actions: list[Any], steps: int, repeats: int) -> float:
    return steps / min(run(env, actions, steps) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300_000, help="steps for ours")
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours (best kept)")
    parser.add_argument("--finrl-steps", type=int, default=20_000, help="steps for FinRL")
    parser.add_argument("--finrl-repeats", type=int, default=1, help="runs of FinRL (best kept)")
    parser.add_argument("--n-bars", type=int, default=1000, help="bars of the synthetic symbol")
    parser.add_argument("--seed", type=int, default=11, help="market seed")
    parser.add_argument("--action-seed", type=int, default=0)
    parser.add_argument("--finrl-dir", type=Path, default=DEFAULT_FINRL_DIR,
                        help="where FinRL is pip-installed (--target)")
    args = parser.parse_args()

    finrl_dir = args.finrl_dir.expanduser().resolve()
    install_finrl(finrl_dir)
    finrl_module = load_finrl_env_module(finrl_dir)

    market = synthetic_market_arrays(args.n_bars, args.seed)
    ours = SingleAssetTradingEnv(market)
    theirs = make_finrl_env(finrl_module, market)

    versions = {name: importlib.metadata.version(name)
                for name in ("gymnasium", "numpy", "pandas", "stable-baselines3")}
    print(f"python {platform.python_version()}, finrl {finrl_installed_version(finrl_dir)} "
          f"({finrl_dir}), " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"data: 1 synthetic symbol ({market.symbol}), {len(market)} bars, "
          f"{market.n_features} features ({', '.join(market.feature_names)}), seed {args.seed}")
    print(f"  ours : window {ours.window}, observation {ours.obs_size} float32, "
          f"{args.steps:,} steps, best of {args.repeats}")
    print(f"  FinRL: StockTradingEnv stock_dim=1, state {theirs.state_space}, "
          f"{args.finrl_steps:,} steps, best of {args.finrl_repeats}")

    ours_rate = best_rate(ours, random_actions(ours, args.action_seed), args.steps, args.repeats)
    finrl_rate = best_rate(theirs, random_actions(theirs, args.action_seed),
                           args.finrl_steps, args.finrl_repeats)
    print(f"  {'SingleAssetTradingEnv':<24} {ours_rate:>12,.0f} steps/s  "
          f"{1e6 / ours_rate:8.2f} us/step")
    print(f"  {'FinRL StockTradingEnv':<24} {finrl_rate:>12,.0f} steps/s  "
          f"{1e6 / finrl_rate:8.2f} us/step")
    ratio = ours_rate / finrl_rate
    verdict = "meets" if ratio >= 50 else "below"
    print(f"ratio ours / FinRL: {ratio:,.1f}x ({verdict} the 50x goal)")


if __name__ == "__main__":
    main()
