"""Why does the agent do what it does? One walk-forward fold, one seed, the
learning curve on the validation span next to the test block's, checkpoint
by checkpoint.

A study tool, not a selection tool: it reads the test block, so nothing it
shows may choose a setting (the pipeline chooses on validation only). What
it answers: does training improve the validation book over the untrained
policy (action 0: the supervised position in the residual mode, flat in the
target mode), and does the validation book predict the test book?

The agent is trained as the evaluate stage trains a fold's agent
(:func:`tradingrl.evaluation.policy_eval.fold_markets`, ``train_agent``) with
one of :data:`benchmarks.bench_agent_ablation.CONFIGS`, but without early
stopping and with a checkpoint every ``--every`` steps. Every checkpoint
(and the untrained policy, step 0) trades every symbol's validation span and
the test block through the block rules of the evaluation (costs, risk
layer, flat at the end). Printed per checkpoint: validation total log return
of the book, its paired t-statistic against the untrained policy's book
(per-bar differences of the equal-weight book's log returns), validation
turnover per exposure, and the test block's Sharpe and turnover per
exposure.

    python -m benchmarks.diagnose_agent_fold --from-repo /path/to/clone --fold 1 \\
        --config shipped [--seed 0] [--timesteps 30000] [--every 5000]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_agent_ablation import CONFIGS, MARKETS, market_inputs
from benchmarks.bench_null_gate import load_sections, with_overrides


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market", choices=MARKETS, default="default")
    parser.add_argument("--market-seeds", type=int, nargs=1, default=[7])
    parser.add_argument("--symbols", type=int, default=None)
    parser.add_argument("--bars", type=int, default=None)
    parser.add_argument("--from-repo", type=Path, default=None)
    parser.add_argument("--model", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="shipped")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                        help="further departures, e.g. algorithm_kwargs.ppo.gamma=0.9")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=30000)
    parser.add_argument("--every", type=int, default=5000)
    return parser.parse_args(argv)


def book_stats(markets: Sequence[Any], model: Any, env: dict[str, Any],
               bars_per_year: int) -> dict[str, Any]:
    from tradingrl.agents.training import rollout_policy
    from tradingrl.evaluation.books import equal_weight_book, rollout_steps, summarise

    rollouts = [rollout_policy(m, model, env) for m in markets]
    stamps = [m.timestamps[r["bar"].astype(np.int64)] for m, r in zip(markets, rollouts,
                                                                      strict=True)]
    book = equal_weight_book([rollout_steps(r) for r in rollouts], stamps)
    stats = summarise(book, bars_per_year=bars_per_year)
    exposure = stats.get("exposure") or 0.0
    return {"log_return": book.log_return, "total": float(book.log_return.sum()),
            "sharpe": stats.get("sharpe"),
            "turnover_per_exposure": (stats["turnover"] / exposure) if exposure else None,
            "mean_abs_action": float(np.mean([np.abs(r["action"]).mean() for r in rollouts]))}


def paired_t(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(a) - np.asarray(b)
    sd = d.std(ddof=1)
    return float("nan") if sd == 0 else float(d.mean() / (sd / math.sqrt(len(d))))


def main(argv: Sequence[str] | None = None) -> None:
    import json

    import torch

    from tradingrl.agents.data import build_agent_table
    from tradingrl.agents.run import env_kwargs_from_params
    from tradingrl.agents.training import (
        AgentSettings,
        algorithm_classes,
        train_agent,
    )
    from tradingrl.evaluation.books import BaselineSettings, block_env
    from tradingrl.evaluation.policy_eval import FoldConfig, fold_markets

    args = parse_args(argv)
    sections = dict(load_sections())
    torch.set_num_threads(1)
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    agent_params = with_overrides(sections["train_agent"], {**CONFIGS[args.config], **extra})
    agent_params.update(total_timesteps=args.timesteps, checkpoint_freq=args.every,
                        eval_freq=args.every, patience=None, seeds=[args.seed])
    settings = AgentSettings.from_params(agent_params)
    bars_per_year = int(sections["evaluate"]["bars_per_year"])
    with tempfile.TemporaryDirectory(prefix="diagnose_") as tmp:
        work = Path(tmp)
        frame, bars, oof, folds = market_inputs(args, args.market_seeds[0], sections, work)
        features = tuple(agent_params["features"])
        names = tuple(agent_params["prediction_columns"])
        table, _ = build_agent_table(frame, bars, oof, features, names)
        env_kwargs = env_kwargs_from_params(agent_params, settings.env)
        config = FoldConfig(settings=settings, env_kwargs=env_kwargs, features=features,
                            prediction_names=names, val_fraction=agent_params["val_fraction"],
                            out_dir=work / "agent",
                            baselines=BaselineSettings(**sections["evaluate"]["baselines"]))
        fold = folds[args.fold]
        spans, train, val, test = fold_markets(table, fold, config)
        print(f"fold {fold.index}: train {spans['train_start'].date()}..{spans['train_end'].date()}"
              f", val {spans['val_start'].date()}..{spans['val_end'].date()}, test "
              f"{fold.test_start.date()}..{fold.test_end.date()}; config {args.config} {extra}")
        train_agent(train, val, settings, seed=args.seed, out_dir=work / "agent",
                    env_kwargs=env_kwargs)
        env = block_env(env_kwargs)
        algorithm = algorithm_classes()[settings.algorithm]
        checkpoints = sorted((work / "agent" / "checkpoints").glob("agent_*_steps.zip"),
                             key=lambda p: int(p.stem.split("_")[1]))
        candidates = [(0, algorithm.load(work / "agent" / "initial_model.zip", device="cpu"))]
        candidates += [(int(p.stem.split("_")[1]), algorithm.load(p, device="cpu"))
                       for p in checkpoints]
        base_val = None
        print("| step | val total log return | val t vs step 0 | val turnover/exp | "
              "mean abs action | test Sharpe | test turnover/exp |\n|---|---|---|---|---|---|---|")
        for step, model in candidates:
            v = book_stats(val, model, env, bars_per_year)
            t = book_stats(test, model, env, bars_per_year)
            if base_val is None:
                base_val = v["log_return"]
            print(f"| {step} | {v['total']:+.4f} | {paired_t(v['log_return'], base_val):+.2f} | "
                  f"{_f(v['turnover_per_exposure'])} | {v['mean_abs_action']:.3f} | "
                  f"{_f(t['sharpe'], '+.2f')} | {_f(t['turnover_per_exposure'])} |", flush=True)


def _f(value: Any, spec: str = ".0f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


if __name__ == "__main__":
    main()
