"""Which decision tier earns its keep? An ablation of the RL agent's settings,
judged as the pipeline judges it: the walk-forward evaluation of the evaluate
stage (purged, embargoed folds; costs; risk layer; every baseline) and the
promotion gate at params.yaml's thresholds.

Each configuration (:data:`CONFIGS`) is a set of departures from params.yaml's
``train_agent`` section; everything else is the shipped defaults. A run
evaluates every configuration on one market; ``--market`` picks it:

- ``default``: the built-in synthetic market of params.yaml's ``ingest``
  section. With ``--from-repo DIR`` the features, bars and out-of-fold
  CNN+LSTM predictions are read from a repository where ``dvc repro
  predict_oof`` ran (the pipeline's own predictions, default model);
  otherwise they are computed as below.
- a planted regularity on an otherwise random-walk market (the negative
  control's knobs, tests/integration/test_controls.py, with one source of
  predictability switched on; no setting is tuned per market):

  * ``momentum``: lag-1 momentum 0.3 in every bar (the positive control's);
  * ``reversion``: lag-1 reversal 0.3 in every bar (r_t = -0.3 r_{t-1} + noise);
  * ``vol_trend``: trending episodes (mean 63 bars) with an annualised drift
    of 0.8 whose sign is drawn per episode, between calmer mean-reverting
    and volatile episodes without drift (the generator's regimes);
  * ``random_walk``: none at all (the gate must refuse).

  Their out-of-fold predictions come from the real out-of-fold procedure
  with ``--model``: ``tiny`` (the repro test's CNN+LSTM, seconds) or
  ``default`` (params.yaml's, minutes per market); ``noise`` is
  bench_null_gate's stand-in (random logits), for smoke tests only.

``--market-seeds`` gives the market seeds (each a separate market).

Printed: one row per (market seed, configuration): the policy's
out-of-sample Sharpe (the fold's seed chosen on validation), the mean and
std of the seeds' own Sharpes, turnover per unit of exposure (turnover /
mean gross position), costs paid (cost drag, fraction of equity), DSR, the
gate's decision, and the supervised and buy-and-hold baselines' Sharpe and
turnover per exposure. Everything goes to ``--out`` (JSON, with the code
hash of the evaluate stage).

    python -m benchmarks.bench_agent_ablation --market default --from-repo /path/to/clone
    python -m benchmarks.bench_agent_ablation --market momentum --market-seeds 1 2 3 \\
        --configs shipped target window10

Results are read in docs/agent_study.md; the numbers there come from this
script's JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.bench_null_gate import (
    RANDOM_WALK,
    cnn_lstm_predictions,
    dsr_trials,
    load_sections,
    noise_predictions,
    walk_forward_inputs,
    with_overrides,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Planted markets: the random walk plus one regularity (module docstring).
PLANTED: dict[str, dict[str, Any]] = {
    "random_walk": dict(RANDOM_WALK),
    "momentum": {**RANDOM_WALK, "trend_momentum": 0.3,
                 "regime_durations": (1_000_000.0, 1.0, 1.0)},
    "reversion": {**RANDOM_WALK, "reversal": 0.3, "regime_durations": (1.0, 1_000_000.0, 1.0)},
    "vol_trend": {**RANDOM_WALK, "trend_drift": 0.8},
}
MARKETS: tuple[str, ...] = ("default", *PLANTED)

# Departures from params.yaml's train_agent section, by dotted key: one
# factor at a time away from the shipped defaults (residual action, window
# 1, PPO gamma 0.5 and exploration std exp(-1), the t rule of 2.0).
CONFIGS: dict[str, dict[str, Any]] = {
    # As params.yaml ships it: no departure.
    "shipped": {},
    # The action is the target position (untrained: flat) instead of an
    # adjustment of the supervised position.
    "target": {"env.action_mode": "target"},
    # A no-trade band of 0.1 of equity (cost-aware target / residual).
    "band": {"env.no_trade_band": 0.1},
    "target_band": {"env.action_mode": "target", "env.no_trade_band": 0.1},
    # A residual that can move the signal by at most 0.5.
    "residual_half": {"env.residual_scale": 0.5},
    # Ten bars of features in the observation instead of one.
    "window10": {"env.window": 10},
    # SB3's exploration std 1 (log_std_init 0) instead of 0.37.
    "explore_std1": {"algorithm_kwargs.ppo.policy_kwargs.log_std_init": 0.0},
    # PPO gamma 0.99 (SB3 default) instead of 0.5.
    "gamma099": {"algorithm_kwargs.ppo.gamma": 0.99},
    # The best validation checkpoint whatever its margin over the untrained policy.
    "no_t_rule": {"min_improvement_t": None},
    # The other algorithms, same budget and env.
    "sac": {"algorithm": "sac"},
    "td3": {"algorithm": "td3"},
    # The agent search (tradingrl/agents/search.py, params.yaml's space) with
    # 6 trials of 10,000 steps per fold; the trials multiply the DSR's N.
    "search": {"search.n_trials": 6, "search.timesteps": 10000},
    # One portfolio agent over all symbols (Portfolio-v0, long-only), judged
    # against the portfolio baselines: the shipped residual action (each
    # symbol's 1/N sleeve adjusts p_up - p_down), or target weights plus cash.
    "portfolio": {"env_kind": "portfolio"},
    "portfolio_target": {"env_kind": "portfolio", "env.action_mode": "target"},
    # The tier as it was before this study: target action, window 10, gamma
    # 0.99, exploration std 1, best validation checkpoint.
    "before": {"env.action_mode": "target", "env.window": 10,
               "algorithm_kwargs.ppo.gamma": 0.99,
               "algorithm_kwargs.ppo.policy_kwargs.log_std_init": 0.0,
               "min_improvement_t": None},
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market", choices=MARKETS, default="default")
    parser.add_argument("--market-seeds", type=int, nargs="+", default=None,
                        help="market seeds (default: params.yaml's ingest seed for 'default', "
                             "1 otherwise)")
    parser.add_argument("--symbols", type=int, default=None,
                        help="symbols (default: params.yaml's for 'default', 4 for planted)")
    parser.add_argument("--bars", type=int, default=None,
                        help="bars per symbol (default: params.yaml's for 'default', 1600 "
                             "for planted)")
    parser.add_argument("--from-repo", type=Path, default=None,
                        help="read features, bars and out-of-fold predictions from this "
                             "repository (market 'default', one seed: the repository's)")
    parser.add_argument("--model", choices=("tiny", "default", "noise"), default="tiny",
                        help="CNN+LSTM of the out-of-fold predictions when computed (noise: "
                             "bench_null_gate's stand-in, for smoke tests)")
    parser.add_argument("--configs", nargs="+", default=["shipped", "target", "no_t_rule"],
                        help=f"configurations, of {sorted(CONFIGS)}")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                        help="departures applied under every configuration, e.g. a smaller "
                             "budget total_timesteps=2048 (recorded in the JSON)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON (default reports/ablation/<market>.json)")
    args = parser.parse_args(argv)
    try:
        args.common = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    except ValueError as error:
        parser.error(f"--set takes KEY=JSON items: {error}")
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configurations {unknown}; known: {sorted(CONFIGS)}")
    if args.from_repo is not None and args.market != "default":
        parser.error("--from-repo reads the default market's pipeline outputs only")
    return args


def market_bars(market: str, seed: int, symbols: int | None = None,
                n_bars: int | None = None) -> pd.DataFrame:
    """The OHLCV bars of one market: params.yaml's synthetic market
    (``default``) or a planted one (4 symbols x 1,600 bars from params.yaml's
    start), with ``symbols`` / ``n_bars`` overriding the shape."""
    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
    from tradingrl.params import load_params

    ingest = load_params("ingest", REPO_ROOT / "params.yaml")["synthetic"]
    if market == "default":
        knobs = {k: v for k, v in ingest.items() if k not in ("seed",)}
    else:
        knobs = {"n_symbols": 4, "n_bars": 1600, "start": ingest["start"], **PLANTED[market]}
    if symbols is not None:
        knobs["n_symbols"] = symbols
    if n_bars is not None:
        knobs["n_bars"] = n_bars
    return generate_market(SyntheticMarketConfig(**knobs, seed=seed))


def market_inputs(args: argparse.Namespace, seed: int, sections: Mapping[str, Any],
                  work: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[Any]]:
    """(features table, bars, out-of-fold predictions, folds) of one market."""
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.labels import LabelSpec
    from tradingrl.splits.walk_forward import folds_from_params

    walk_forward = sections["walk_forward"]
    if args.from_repo is not None:
        repo = args.from_repo
        frame = pd.read_parquet(repo / "data" / "features" / "features.parquet")
        bars = pd.read_parquet(repo / "data" / "validated" / "ohlcv.parquet")
        oof = pd.read_parquet(repo / "data" / "predictions" / "oof.parquet")
        return frame, bars, oof, folds_from_params(frame["timestamp"], walk_forward)

    bars = market_bars(args.market, seed, symbols=args.symbols, n_bars=args.bars)
    features = sections["features"]
    frame, report = build_feature_table(bars, LabelSpec(**features["label"]),
                                        warmup_bars=features["warmup_bars"])
    folds = folds_from_params(frame["timestamp"], walk_forward)
    if args.model == "noise":
        oof = noise_predictions(frame, folds, seed)
    elif args.model == "tiny":
        oof = cnn_lstm_predictions(frame, report["features"], folds, sections["train_model"],
                                   work)
    else:
        from tradingrl.models.fit import TrainSettings
        from tradingrl.models.oof import out_of_fold_predictions

        oof, _ = out_of_fold_predictions(
            frame, report["features"], TrainSettings.from_params(sections["train_model"]),
            folds, checkpoint_root=work / "oof", run_key="bench_agent_ablation",
            log=lambda _: None)
    return frame, bars, oof, folds


def turnover_per_exposure(stats: Mapping[str, Any]) -> float | None:
    """Turnover (sum of traded notional / equity) per unit of mean gross
    position; None for a book that never held a position."""
    turnover, exposure = stats.get("turnover"), stats.get("exposure")
    if turnover is None or not exposure:
        return None
    return float(turnover) / float(exposure)


def evaluate_config(name: str, inputs: tuple[Any, ...], sections: Mapping[str, Any],
                    work: Path, common: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The walk-forward evaluation and gate of configuration ``name``."""
    from tradingrl.evaluation.record import run_walk_forward, walk_forward_record
    from tradingrl.parallel import runner_from_env
    from tradingrl.registry.gate import GateThresholds, run_gate

    start = time.perf_counter()
    frame, bars, oof, folds = inputs
    agent_params = with_overrides(sections["train_agent"], {**(common or {}), **CONFIGS[name]})
    table, config = walk_forward_inputs(frame, bars, oof, agent_params, sections, work / name)
    settings = config.settings
    results = run_walk_forward(table, folds, config, runs_root=work / name,
                               torch_threads=int(agent_params["torch_threads"]),
                               runner=runner_from_env(), log=lambda _: None)
    evaluation = walk_forward_record(
        results, bars_per_year=int(sections["evaluate"]["bars_per_year"]),
        trials=dsr_trials(len(settings.seeds), sections, config),
        pbo_splits=int(sections["evaluate"]["pbo_splits"]),
        config={"algorithm": settings.algorithm, "departures": CONFIGS[name]})
    passed, checks = run_gate(evaluation, GateThresholds.from_params(sections["promote"]),
                              champion=None)
    policy = evaluation["policy"]["overall"]
    baselines = {n: b["overall"] for n, b in evaluation["baselines"].items()}
    seeds = [s for s in evaluation["policy"]["seeds"]["sharpe_per_seed"] if s is not None]
    return {
        "config": name, "departures": CONFIGS[name],
        "promoted": bool(passed),
        "failed_checks": [c.name for c in checks if not c.passed],
        "policy": {k: policy.get(k) for k in ("sharpe", "max_drawdown", "turnover",
                                              "exposure", "cost_drag", "annualised_return")},
        "policy_turnover_per_exposure": turnover_per_exposure(policy),
        "per_fold_sharpe": [f["sharpe"] for f in evaluation["policy"]["per_fold"]],
        "seed_sharpes": seeds,
        "seed_sharpe_mean": float(np.mean(seeds)) if seeds else None,
        "seed_sharpe_std": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None,
        "chosen_seeds": evaluation["policy"]["chosen_seeds"],
        "dsr": evaluation["policy"]["dsr"].get("dsr"),
        "n_trials": evaluation["trials"]["n_trials"],
        # Per fold, the agent search's trials and choice (None without a search).
        "agent_search": [f.get("agent_search") for f in evaluation["folds"]],
        "baselines": {n: {"sharpe": b.get("sharpe"), "turnover": b.get("turnover"),
                          "exposure": b.get("exposure"), "cost_drag": b.get("cost_drag"),
                          "turnover_per_exposure": turnover_per_exposure(b)}
                      for n, b in baselines.items()},
        "best_baseline": evaluation["best_baseline"],
        "seconds": time.perf_counter() - start,
    }


def _f(value: Any, spec: str = "+.2f") -> str:
    return "n/a" if value is None else format(value, spec)


def row_text(market: str, seed: int, r: Mapping[str, Any]) -> str:
    supervised = r["baselines"].get("supervised", {})
    bh = r["baselines"]["buy_and_hold"]
    return (f"| {market} | {seed} | {r['config']} | {_f(r['policy']['sharpe'])} | "
            f"{_f(r['seed_sharpe_mean'])} +- {_f(r['seed_sharpe_std'], '.2f')} | "
            f"{_f(r['policy_turnover_per_exposure'], '.0f')} | "
            f"{_f(r['policy']['cost_drag'], '.3f')} | {_f(r['dsr'], '.3f')} | "
            f"{'promoted' if r['promoted'] else 'refused'} | {_f(supervised.get('sharpe'))} / "
            f"{_f(supervised.get('turnover_per_exposure'), '.0f')} | {_f(bh['sharpe'])} | "
            f"{r['seconds']:.0f} s |")


HEADER = ("| market | seed | config | Sharpe | seeds mean +- std | turnover/exposure | "
          "cost drag | DSR | gate | supervised Sharpe / turnover/exp | buy & hold | time |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from tradingrl.params import load_params
    from tradingrl.resume import code_hash

    code = code_hash("evaluate")[:16]
    sections = dict(load_sections())
    torch.set_num_threads(int(sections["train_agent"]["torch_threads"]))
    if args.market_seeds is None:
        default_seed = load_params("ingest", REPO_ROOT / "params.yaml")["synthetic"]["seed"]
        args.market_seeds = [int(default_seed)] if args.market == "default" else [1]
    if args.from_repo is not None and len(args.market_seeds) != 1:
        raise SystemExit("--from-repo holds one market: give one --market-seeds (or none)")
    out = args.out or REPO_ROOT / "reports" / "ablation" / f"{args.market}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    for seed in args.market_seeds:
        with tempfile.TemporaryDirectory(prefix="ablation_") as tmp:
            work = Path(tmp)
            began = time.perf_counter()
            inputs = market_inputs(args, seed, sections, work)
            prepared = time.perf_counter() - began
            for name in args.configs:
                result = evaluate_config(name, inputs, sections, work, args.common)
                result.update(market=args.market, market_seed=seed,
                              inputs_seconds=prepared)
                rows.append(result)
                print(row_text(args.market, seed, result), flush=True)
                payload = {"code_evaluate": code, "market": args.market,
                           "planted": PLANTED.get(args.market),
                           "from_repo": None if args.from_repo is None else str(args.from_repo),
                           "model": None if args.from_repo is not None else args.model,
                           "common_departures": args.common,
                           "results": rows}
                out.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
