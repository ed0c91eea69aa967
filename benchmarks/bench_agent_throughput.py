"""Training throughput of the agent as the pipeline trains it: environment
steps per second of wall time of :func:`tradingrl.agents.training.train_agent`
with params.yaml's ``train_agent`` settings (env, costs, risk layer, network,
the untrained policy's validation and the t rule), for several vectorisations.

The markets are ``synthetic_market_arrays``: 4 training symbols of 1,200 bars,
2 validation symbols of 300 (validated once at the start and once at the end:
``eval_freq`` is set beyond the budget, early stopping off). Each row keeps
the rollout per update at ``--rollout`` env steps (PPO's ``n_steps`` is
``rollout / n_envs`` per env), so the rows differ in how the steps are taken,
not in how much is learned per update. One torch thread. The wall time
includes model construction, the validations and the t rule's rollouts.

    python -m benchmarks.bench_agent_throughput [--timesteps 16384] [--rollout 1024]
        [--rows 1:dummy,4:dummy,4:subproc] [--algorithm ppo]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=16384)
    parser.add_argument("--rollout", type=int, default=1024,
                        help="PPO env steps per update, all envs together")
    parser.add_argument("--rows", default="1:dummy,4:dummy,4:subproc",
                        help="comma-separated n_envs:vec_env")
    parser.add_argument("--algorithm", choices=("ppo", "sac", "td3"), default="ppo")
    args = parser.parse_args(argv)
    try:
        args.rows = [(int(n), v) for n, v in (r.split(":") for r in args.rows.split(","))]
    except ValueError:
        parser.error("--rows takes n_envs:vec_env items, e.g. 1:dummy,4:subproc")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from tradingrl.agents.run import env_kwargs_from_params
    from tradingrl.agents.training import AgentSettings, train_agent
    from tradingrl.envs import synthetic_market_arrays
    from tradingrl.params import load_params

    torch.set_num_threads(1)
    params = load_params("train_agent", REPO_ROOT / "params.yaml")
    env_kwargs = env_kwargs_from_params(params, "single_asset")
    train = [synthetic_market_arrays(1200, s) for s in range(4)]
    val = [synthetic_market_arrays(300, 10 + s) for s in range(2)]
    print("| algorithm | n_envs | vec_env | steps | seconds | steps/s |\n|---|---|---|---|---|---|")
    for n_envs, vec_env in args.rows:
        algorithm_kwargs = dict(params["algorithm_kwargs"][args.algorithm])
        if args.algorithm == "ppo":
            algorithm_kwargs["n_steps"] = max(args.rollout // n_envs, 2)
        settings = AgentSettings.from_params({
            **params, "algorithm": args.algorithm, "n_envs": n_envs, "vec_env": vec_env,
            "total_timesteps": args.timesteps, "eval_freq": 10 * args.timesteps,
            "checkpoint_freq": 10 * args.timesteps, "patience": None, "seeds": [0],
            "algorithm_kwargs": {args.algorithm: algorithm_kwargs}})
        with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
            start = time.perf_counter()
            agent = train_agent(train, val, settings, seed=0, out_dir=tmp, env_kwargs=env_kwargs)
            seconds = time.perf_counter() - start
        print(f"| {args.algorithm} | {n_envs} | {vec_env} | {agent.timesteps} | {seconds:.1f} | "
              f"{agent.timesteps / seconds:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
