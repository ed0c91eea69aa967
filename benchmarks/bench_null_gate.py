"""How often does the promotion gate promote noise? The gate's false-promotion
rate on pure random-walk markets (the project's goal: at most 5%).

Each market is the built-in synthetic generator with every source of
predictability switched off, the negative control's ``RANDOM_WALK`` knobs
(tests/integration/test_controls.py): no drift of any kind, no momentum,
no mean reversion, no jumps. Log prices are a random walk; the regimes still
switch the volatility level, tails and correlations, never the odds of a
return's sign. Market shape: ``--symbols 4`` x ``--bars 1600`` (the negative
control's; params.yaml ships 8 x 2,520): with the default walk-forward plan
(40% initial span, 4 blocks, the first only trains) that leaves 3 blocks of
222 sessions, 666 out-of-sample bars per symbol, at half the symbols' cost.
Every market has its own seed (``SeedSequence(--seed)``), so
one ``--seed`` gives the same markets and, with one torch thread, the same
results.

Per market, the path the pipeline runs from ingest to promote:

1. bars: ``generate_market`` (the validate stage is skipped: the generator's
   bars pass the contract by construction, and the stage only filters);
2. features and labels: ``build_feature_table`` with params.yaml's
   ``features`` section;
3. walk-forward folds: params.yaml's ``walk_forward`` section, unchanged;
4. out-of-fold predictions (``--predictions``):

   * ``cnn_lstm`` (default): the real procedure of the predict_oof stage,
     ``out_of_fold_predictions`` (one CNN+LSTM per walk-forward fold, fitted
     before its block, temperature-calibrated), with the repro test's tiny
     model (``TINY_MODEL``): window 60 -> 20 bars, 5 -> 1 epoch, batch 256 ->
     128, 20 -> 2 MC-dropout passes. Why tiny: the market holds no signal, so
     no amount of training can put any into the predictions; the default
     model would cost minutes a market, the tiny one ~3 s. What matters to
     the gate is kept: predictions that are out of fold and shaped like the
     model's (smooth, correlated with the features), so the agent's state and
     the ``supervised`` baseline behave as in the pipeline;
   * ``noise``: a cheaper stand-in (~3 s a market less), documented as such:
     each predicted bar (every test block, as the real stage) gets logits
     ~ N(0, 1) -> softmax (p_down, p_flat, p_up), ``expected_return`` ~
     N(0, 0.01) and ``confidence = 1 - entropy / log 3`` as the model
     computes it. Independent noise per bar makes the ``supervised``
     baseline a high-turnover strategy that costs eat, a lower bar for the
     margin check than a trained model's smooth predictions;

5. the walk-forward agent evaluation: ``run_walk_forward`` and
   ``walk_forward_record`` as tasks/evaluate.py calls them, with a cheap
   agent (``CHEAP_AGENT``: each departure from params.yaml's ``train_agent``
   is named there with its reason); the trial count of the DSR comes from
   ``trial_count`` (:func:`dsr_trials`, the one place to adapt when its
   signature changes);
6. the promotion gate: ``run_gate`` with params.yaml's ``promote.gate``
   thresholds and no champion (as the first promotion of a registry).

Printed: the false-promotion rate with a 95% Clopper-Pearson interval, the
DSR distribution (median, 95th percentile), how many markets failed each gate
check, and wall time per market. Every market's results go to ``--out``
(JSON; reports/ is git-ignored and this file is no DVC output), with a hash
of the code the evaluate and promote stages run.

Measured (2026-12-03, defaults, code evaluate 722973105653924b): 0 of 50
markets promoted, 0.0% (95% CI 0.0% .. 7.1%); DSR median 0.087, 95th
percentile 0.469, max 0.775; every market failed ``dsr``, 42 also
``beats_baselines``; 14.2 s a market (median), 12.4 min in all. Zero
promotions in 50 cannot show <= 5% at 95% confidence (the upper bound is
7.1%); that takes >= 72 markets without one. ``--seed 1`` (50 other
markets, 19.5 s a market on a busier machine): 0 of 50 again, DSR median
0.102, 95th percentile 0.409, max 0.794; the 100 together: 0.0%, 95% CI
0.0% .. 3.6%, within the goal. ``--predictions noise`` on the default
markets: 0 of 50, DSR median 0.101, 95th percentile 0.528, max 0.776
(36 failed ``beats_baselines``). The cheap agent barely trades (median gross
exposure ~4%) and loses its costs (median out-of-sample Sharpe -0.25): a
null whose expected Sharpe is below zero, easier to refuse than a
skill-free policy without costs.

    python -m benchmarks.bench_null_gate [--markets 50] [--seed 0] [--symbols 4]
        [--bars 1600] [--predictions cnn_lstm|noise] [--out reports/null_gate.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS = REPO_ROOT / "params.yaml"

# The negative control's random walk (tests/integration/test_controls.py).
RANDOM_WALK = {
    "market_drift": 0.0, "trend_drift": 0.0, "trend_momentum": 0.0,
    "mean_reversion": 0.0, "reversal": 0.0,
    "jump_intensity": (0.0, 0.0, 0.0), "market_jump_intensity": (0.0, 0.0, 0.0),
}

# Departures from params.yaml's train_agent section, each to keep a market at
# seconds instead of the default's minutes (30,000 steps x 3 seeds x 3 folds):
CHEAP_AGENT: dict[str, Any] = {
    # 30,000 -> 2,048 env steps per seed. Collecting steps is most of a
    # market's time (measured, 3 seeds: 4,096 steps ~25 s a market, 2,048
    # ~12 s; the default would take ~3 minutes). Less training fits noise
    # less; the gate's checks must hold for any amount of it, and this asks
    # it of a cheaply trained agent only.
    "total_timesteps": 2048,
    # n_steps 1024 -> 256: 8 PPO updates in 2,048 steps (the default
    # n_steps would make 2); n_epochs 10 -> 5: half the gradient passes per
    # update (batch 128, gamma and exploration kept).
    "algorithm_kwargs.ppo.n_steps": 256,
    "algorithm_kwargs.ppo.n_epochs": 5,
    # net [64, 64] -> [32, 32]: a quarter of the weights to update.
    "policy_kwargs.net_arch": [32, 32],
    # eval_freq 5000 -> 512: with 2,048 steps the default would validate
    # only at the end; early stopping (patience 3 kept) and the seed choice
    # need several validations.
    "eval_freq": 512,
    # checkpoint_freq 5000 -> 2048: checkpoints only serve a resume, which
    # a benchmark in a temporary folder never does.
    "checkpoint_freq": 2048,
    # Kept: PPO, seeds [0, 1, 2] (the DSR's trial count), learning rate,
    # the env (action rule, window, 252-step episodes), the t rule, costs and
    # the risk layer.
}

# tests/integration/test_dvc_repro.py's TINY_MODEL (departures from params.yaml's
# train_model: module docstring, step 4), for --predictions cnn_lstm.
TINY_MODEL = {"window": 20, "max_epochs": 1, "batch_size": 128}
TINY_MC_SAMPLES = 2

# The gate's checks, in its order; any other check it reports is counted too.
CHECKS = ("dsr", "beats_baselines", "max_drawdown", "beats_champion")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=50, help="random-walk markets (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the market seeds")
    parser.add_argument("--symbols", type=int, default=4, help="symbols per market")
    parser.add_argument("--bars", type=int, default=1600, help="daily bars per symbol")
    parser.add_argument("--predictions", choices=("cnn_lstm", "noise"), default="cnn_lstm",
                        help="out-of-fold predictions: tiny CNN+LSTM or the noise stand-in")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "null_gate.json")
    args = parser.parse_args(argv)
    if args.markets < 1 or args.symbols < 1:
        parser.error("--markets and --symbols must be >= 1")
    if args.bars < 400:
        parser.error("--bars must be >= 400 (120 warm-up bars, then 4 walk-forward blocks)")
    return args


def load_sections() -> dict[str, dict[str, Any]]:
    from tradingrl.params import load_params

    return {name: load_params(name, PARAMS) for name in
            ("features", "walk_forward", "train_model", "train_agent", "evaluate", "promote")}


def with_overrides(section: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``section`` (deep-copied) with each dotted key of ``overrides`` set."""
    out = copy.deepcopy(dict(section))
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = copy.deepcopy(value)
    return out


def cheap_agent_params(train_agent: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml's train_agent section with :data:`CHEAP_AGENT` on top."""
    return with_overrides(train_agent, CHEAP_AGENT)


def market_seeds(seed: int, n: int) -> list[int]:
    """One independent 32-bit seed per market, from ``SeedSequence(seed)``."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


def null_market(seed: int, n_symbols: int, n_bars: int) -> pd.DataFrame:
    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market

    return generate_market(SyntheticMarketConfig(n_symbols=n_symbols, n_bars=n_bars,
                                                 seed=seed, **RANDOM_WALK))


def noise_predictions(frame: pd.DataFrame, folds: Sequence[Any], seed: int) -> pd.DataFrame:
    """The stand-in for out-of-fold CNN+LSTM predictions (module docstring):
    the rows of every fold's test block, with noise in the model's columns."""
    rng = np.random.default_rng(seed)
    parts = []
    for fold in folds:
        rows = frame.loc[fold.test_mask(frame["timestamp"]), ["timestamp", "symbol"]]
        logits = rng.standard_normal((len(rows), 3))
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        entropy = -(probs * np.log(probs)).sum(axis=1)
        parts.append(rows.assign(
            fold=np.int16(fold.index), p_down=probs[:, 0], p_flat=probs[:, 1], p_up=probs[:, 2],
            expected_return=rng.normal(0.0, 0.01, len(rows)),
            confidence=np.clip(1.0 - entropy / np.log(3.0), 0.0, 1.0)))
    return pd.concat(parts, ignore_index=True)


def cnn_lstm_predictions(frame: pd.DataFrame, feature_names: Sequence[str], folds: Sequence[Any],
                         train_model: Mapping[str, Any], work: Path) -> pd.DataFrame:
    """The real out-of-fold procedure with the tiny CNN+LSTM (``TINY_MODEL``)."""
    import logging
    import warnings

    from tradingrl.models.fit import TrainSettings
    from tradingrl.models.oof import out_of_fold_predictions

    # Lightning's per-fit notices ("max_epochs=1 reached") would bury the table.
    for name in ("lightning.pytorch", "lightning.fabric"):  # and "Seed set to 42"
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")

    settings = TrainSettings.from_params({**train_model, **TINY_MODEL,
                                          "uncertainty": {**train_model["uncertainty"],
                                                          "mc_samples": TINY_MC_SAMPLES}})
    oof, _ = out_of_fold_predictions(frame, feature_names, settings, folds,
                                     checkpoint_root=work / "oof", run_key="bench_null_gate",
                                     log=lambda _: None)
    return oof


def dsr_trials(n_seeds: int, sections: Mapping[str, Any], config: Any = None) -> dict[str, int]:
    """The DSR's trial count, as tasks/evaluate.py computes it. The model
    report's search is params.yaml's (``train_model.search.n_trials``, 0 as
    shipped), the agent search's that of ``config`` (a FoldConfig); the only
    place to adapt when ``trial_count`` changes."""
    from tradingrl.evaluation.record import trial_count

    n_trials = int(sections["train_model"]["search"]["n_trials"])
    agent_trials = 0 if config is None or config.search is None else config.search.n_trials
    return trial_count(n_seeds, {"search": {"n_trials": n_trials}}, agent_trials=agent_trials)


def walk_forward_inputs(frame: pd.DataFrame, bars: pd.DataFrame, oof: pd.DataFrame,
                        agent_params: Mapping[str, Any], sections: Mapping[str, Any],
                        out_dir: Path) -> tuple[pd.DataFrame, Any]:
    """The agent table and the FoldConfig the evaluate stage builds from
    ``agent_params`` (a train_agent section) and params.yaml's other sections."""
    from tradingrl.agents.data import build_agent_table
    from tradingrl.agents.run import env_kwargs_from_params
    from tradingrl.agents.search import AgentSearchSettings
    from tradingrl.agents.training import AgentSettings
    from tradingrl.evaluation.books import BaselineSettings
    from tradingrl.evaluation.policy_eval import FoldConfig

    settings = AgentSettings.from_params(agent_params)
    features = tuple(agent_params["features"])
    prediction_names = tuple(agent_params["prediction_columns"])
    table, _ = build_agent_table(frame, bars, oof, features, prediction_names)
    config = FoldConfig(
        settings=settings, env_kwargs=env_kwargs_from_params(agent_params, settings.env),
        features=features, prediction_names=prediction_names,
        val_fraction=agent_params["val_fraction"], out_dir=out_dir,
        embargo_timestamps=int(sections["walk_forward"].get("embargo_timestamps", 0)),
        baselines=BaselineSettings(**sections["evaluate"]["baselines"]),
        search=AgentSearchSettings.from_params(agent_params.get("search")))
    return table, config


def evaluate_market(seed: int, args: argparse.Namespace,
                    sections: Mapping[str, Any]) -> dict[str, Any]:
    """One market from bars to the gate's decision; its per-market result."""
    from tradingrl.evaluation.record import run_walk_forward, walk_forward_record
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.labels import LabelSpec
    from tradingrl.parallel import runner_from_env
    from tradingrl.registry.gate import GateThresholds, run_gate
    from tradingrl.splits.walk_forward import folds_from_params

    start = time.perf_counter()
    features_params, walk_forward = sections["features"], sections["walk_forward"]
    agent_params = cheap_agent_params(sections["train_agent"])
    bars = null_market(seed, args.symbols, args.bars)
    frame, report = build_feature_table(bars, LabelSpec(**features_params["label"]),
                                        warmup_bars=features_params["warmup_bars"])
    folds = folds_from_params(frame["timestamp"], walk_forward)
    with tempfile.TemporaryDirectory(prefix="null_gate_") as tmp:
        work = Path(tmp)
        if args.predictions == "noise":
            oof = noise_predictions(frame, folds, seed)
        else:
            oof = cnn_lstm_predictions(frame, report["features"], folds,
                                       sections["train_model"], work)
        predicted = time.perf_counter()
        table, config = walk_forward_inputs(frame, bars, oof, agent_params, sections,
                                            work / "runs")
        settings = config.settings
        results = run_walk_forward(table, folds, config, runs_root=work / "runs",
                                   torch_threads=int(agent_params["torch_threads"]),
                                   runner=runner_from_env(), log=lambda _: None)
    trials = dsr_trials(len(settings.seeds), sections, config)
    bars_per_year = int(sections["evaluate"]["bars_per_year"])
    evaluation = walk_forward_record(
        results, bars_per_year=bars_per_year, trials=trials,
        pbo_splits=int(sections["evaluate"]["pbo_splits"]),
        config={"algorithm": settings.algorithm, "seeds": list(settings.seeds),
                "total_timesteps": settings.total_timesteps, "folds_evaluated": len(results)})
    passed, checks = run_gate(evaluation, GateThresholds.from_params(sections["promote"]),
                              champion=None)
    overall = evaluation["policy"]["overall"]
    best = evaluation["best_baseline"]
    return {
        "market_seed": seed,
        "promoted": bool(passed),
        "checks": {c.name: {"passed": bool(c.passed), "status": getattr(c, "status", None),
                            "value": c.value, "threshold": c.threshold, "detail": c.detail}
                   for c in checks},
        "dsr": evaluation["policy"]["dsr"].get("dsr"),
        "dsr_detail": evaluation["policy"]["dsr"],
        "policy": {k: overall.get(k) for k in ("sharpe", "sharpe_per_period", "max_drawdown",
                                               "annualised_return", "n_bars", "exposure")},
        "seed_sharpes": evaluation["policy"]["seeds"]["sharpe_per_seed"],
        "chosen_seeds": evaluation["policy"]["chosen_seeds"],
        "best_baseline": best,
        "baseline_sharpes": {n: b["overall"]["sharpe"]
                             for n, b in evaluation["baselines"].items()},
        "pbo": evaluation["policy"]["pbo"].get("pbo"),
        "trials": trials,
        "out_of_sample_sessions": sum(f.n_test_timestamps for f in folds[1:]),
        "seconds": {"predictions": predicted - start,
                    "total": time.perf_counter() - start},
    }


def check_names(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """:data:`CHECKS` first, then any other check the gate reported."""
    seen = [name for r in results for name in r["checks"]]
    return [*CHECKS, *dict.fromkeys(n for n in seen if n not in CHECKS)]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval of k successes in n trials."""
    from scipy.stats import beta

    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(results)
    promoted = sum(r["promoted"] for r in results)
    dsrs = [r["dsr"] for r in results if r["dsr"] is not None]
    seconds = [r["seconds"]["total"] for r in results]
    low, high = clopper_pearson(promoted, n)
    return {
        "markets": n, "promoted": promoted, "false_promotion_rate": promoted / n,
        "ci95_clopper_pearson": [low, high], "goal_max_rate": 0.05,
        "dsr": {"defined": len(dsrs), "undefined": n - len(dsrs),
                "median": float(np.median(dsrs)) if dsrs else None,
                "p95": float(np.percentile(dsrs, 95)) if dsrs else None,
                "max": max(dsrs) if dsrs else None},
        "failed_checks": {c: sum(not r["checks"][c]["passed"] for r in results
                                 if c in r["checks"]) for c in check_names(results)},
        "seconds_per_market": {"median": statistics.median(seconds), "min": min(seconds),
                               "max": max(seconds), "total": sum(seconds)},
    }


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from tradingrl.resume import code_hash

    # The code the two stages run (dvc.yaml's deps), read before any of it is
    # imported: results of another version of it are not comparable.
    code = {stage: code_hash(stage)[:16] for stage in ("evaluate", "promote")}
    sections = load_sections()
    torch.set_num_threads(int(sections["train_agent"]["torch_threads"]))
    seeds = market_seeds(args.seed, args.markets)
    gate = sections["promote"]["gate"]
    print(f"{args.markets} random-walk markets ({args.symbols} symbols x {args.bars} bars, "
          f"seed {args.seed}), predictions: {args.predictions}; gate {gate}, no champion")
    settings = {"markets": args.markets, "seed": args.seed, "symbols": args.symbols,
                "bars": args.bars, "predictions": args.predictions, "random_walk": RANDOM_WALK,
                "agent_departures": CHEAP_AGENT, "gate": gate,
                "walk_forward": sections["walk_forward"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for k, seed in enumerate(seeds):
        result = evaluate_market(seed, args, sections)
        results.append(result)
        failed = [name for name, c in result["checks"].items() if not c["passed"]]
        print(f"market {k + 1:3d}/{args.markets} seed {seed:10d}: "
              f"{'PROMOTED' if result['promoted'] else 'refused '} DSR {_fmt(result['dsr'])}, "
              f"Sharpe {_fmt(result['policy']['sharpe'], '+.2f')} vs {result['best_baseline']} "
              f"{_fmt(result['baseline_sharpes'].get(result['best_baseline']), '+.2f')}, "
              f"max DD {_fmt(result['policy']['max_drawdown'], '.2f')}; "
              f"failed {', '.join(failed) or '-'}; {result['seconds']['total']:.1f} s",
              flush=True)
        # Written after every market: a run stopped early keeps what it did.
        write_results(args.out, code, settings, results, complete=k + 1 == len(seeds))
    figures = summary(results)
    low, high = figures["ci95_clopper_pearson"]
    dsr = figures["dsr"]
    per = figures["seconds_per_market"]
    print(f"false promotions: {figures['promoted']}/{figures['markets']} = "
          f"{figures['false_promotion_rate']:.1%} (95% Clopper-Pearson {low:.1%} .. {high:.1%}; "
          f"goal <= 5%)")
    print(f"DSR: median {_fmt(dsr['median'])}, 95th percentile {_fmt(dsr['p95'])}, "
          f"max {_fmt(dsr['max'])} ({dsr['undefined']} undefined)")
    print("failed checks (markets): " + ", ".join(f"{c} {v}" for c, v in
                                                  figures["failed_checks"].items()))
    print(f"wall time per market: median {per['median']:.1f} s, min {per['min']:.1f} s, "
          f"max {per['max']:.1f} s; total {per['total'] / 60:.1f} min")
    print(f"per-market results: {args.out}", file=sys.stderr)


def write_results(path: Path, code: Mapping[str, str], settings: Mapping[str, Any],
                  results: Sequence[Mapping[str, Any]], *, complete: bool) -> None:
    """The JSON of ``--out``: code hashes, settings, summary, every market;
    ``complete`` False while markets are still to come. Replaced atomically."""
    payload = {"code": dict(code), "complete": complete, "settings": dict(settings),
               "summary": summary(results), "markets": list(results)}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    partial.replace(path)

if __name__ == "__main__":
    main()
