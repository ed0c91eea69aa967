"""The walk-forward record: every fold run, joined into one out-of-sample book and judged.

:func:`run_walk_forward` evaluates the folds after the first (the first test
block has no earlier out-of-fold predictions to train an agent on), serially
or on a Dask task runner with the same results. :func:`walk_forward_record`
joins their consecutive test blocks into one record: overall and per-fold
statistics of the policy and the baselines, the deflated Sharpe ratio
(:func:`deflated_sharpe_of_seeds`) and the probability of backtest
overfitting over the seeds (:func:`pbo_over_seeds`); it is the body of
reports/metrics.json, which the HTML report and the promotion gate read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.evaluation.books import BookSeries, concatenate, json_safe, summarise
from tradingrl.evaluation.pbo import probability_of_backtest_overfitting
from tradingrl.evaluation.policy_eval import (
    FoldConfig,
    FoldResult,
    evaluate_fold_job,
    search_fold_job,
    train_fold_seed_job,
)
from tradingrl.evaluation.sharpe import deflated_sharpe_ratio
from tradingrl.parallel import map_parallel
from tradingrl.splits.walk_forward import Fold


def trial_count(n_seeds: int, model_report: Mapping[str, Any],
                agent_trials: int = 0) -> dict[str, int]:
    """Configurations tried on the way to the evaluated policy: every Optuna
    trial of the CNN+LSTM (``model_report``: reports/model_metrics.json)
    times every trial of the agent search (``agent_trials``,
    :mod:`tradingrl.agents.search`) times every RL seed (at least the seeds)."""
    optuna_trials = int(model_report.get("search", {}).get("n_trials", 0))
    return {"optuna_trials": optuna_trials, "agent_search_trials": int(agent_trials),
            "rl_seeds": n_seeds,
            "n_trials": max(optuna_trials, 1) * max(int(agent_trials), 1) * n_seeds}


def run_walk_forward(table: pd.DataFrame, folds: Sequence[Fold], config: FoldConfig, *,
                     runs_root: Path, torch_threads: int = 1, runner: Any = None,
                     log: Callable[[str], None] = print) -> list[FoldResult]:
    """:func:`~tradingrl.evaluation.policy_eval.evaluate_fold` of every fold
    but the first, each training its agents in ``runs_root/fold-<k>``
    (``config.out_dir`` is replaced). On a parallel ``runner``
    (:func:`tradingrl.parallel.worker_count` > 1: worker processes or Dask)
    every (fold, seed) agent is first trained as a piece of its own
    (:func:`~tradingrl.evaluation.policy_eval.train_fold_seed_job`), which
    balances the work better than whole folds; the folds then read their
    agents back and trade their blocks in this process. None or ``threads``
    does it all one fold after another. The results are the same either way."""
    from tradingrl.parallel import worker_count

    if len(folds) < 2:
        raise ValueError("walk-forward evaluation needs walk_forward.n_folds >= 2 (the first "
                         "block only trains the first agent)")
    calls = [{"table": table, "fold": fold, "torch_threads": int(torch_threads),
              "config": dataclasses.replace(config, out_dir=runs_root / f"fold-{fold.index}")}
             for fold in folds[1:]]
    pieces = [{**call, "seed": int(seed)} for call in calls for seed in config.settings.seeds]
    if config.search is not None and config.search.enabled and worker_count(runner,
                                                                           len(calls)) > 1:
        # The folds' searches first (one piece a fold: a search's trials
        # follow each other), then the seeds with each fold's best settings.
        log(f"evaluate: {len(calls)} agent searches of {config.search.n_trials} trials on "
            f"task runner {runner.kind}")
        map_parallel(search_fold_job, calls, settings=runner, name="search")
    workers = worker_count(runner, len(pieces))
    if workers > 1:
        log(f"evaluate: {len(pieces)} agents ({len(calls)} folds x "
            f"{len(config.settings.seeds)} seeds) on task runner {runner.kind}, "
            f"{workers} workers")
        map_parallel(train_fold_seed_job, pieces, settings=runner, name="agent")
    results = [evaluate_fold_job(**call) for call in calls]
    for result in results:
        log(f"evaluate: fold {result.fold} {result.test['start'][:10]}..."
            f"{result.test['end'][:10]} done (seed {result.chosen_seed} chosen)")
    return results


def deflated_sharpe_of_seeds(policy: BookSeries, trial_sharpes: Sequence[float | None],
                             n_trials: int) -> dict[str, Any]:
    """The policy's deflated Sharpe ratio over ``n_trials`` trials. The
    variance of the trials' Sharpe ratios is that of ``trial_sharpes`` (the
    out-of-sample per-period Sharpe ratios of this run's seeds and of the
    history's trials, :func:`count_trials`), floored at 1/(n-1) (the sampling
    variance of a Sharpe ratio of zero over n bars): a few trials that happen
    to agree must not make the deflation vanish. Undefined (``dsr`` None,
    with the reason) when the variance is zero: the policy never moved its book."""

    try:
        usable = [float(s) for s in trial_sharpes if s is not None]
        null_variance = 1.0 / (len(policy.log_return) - 1)
        variance = max(float(np.var(usable, ddof=1)) if len(usable) > 1 else 0.0, null_variance)
        dsr = deflated_sharpe_ratio(policy.log_return, n_trials=n_trials, sr_variance=variance)
        dsr["sr_variance_source"] = ("max(variance of the trials' out-of-sample Sharpe ratios "
                                     "(this run's seeds and the history's), 1/(n-1))")
    except ValueError as error:  # zero variance: the policy never moved its book
        dsr = {"dsr": None, "undefined": str(error), "n_trials": n_trials}
    return dsr


def count_trials(trials: Mapping[str, Any], seed_sharpes: Sequence[float | None],
                 history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The trial count of a DSR: this run's ``trials`` (:func:`trial_count`)
    plus every configuration of the ``history``
    (:func:`tradingrl.evaluation.trials.trial_history`) whose trials are not
    this run's own (the same Sharpe ratios: the same trials recorded again).
    Returns ``trials`` with ``this_run`` (its own count), ``history`` (the
    counted configurations), ``n_trials`` (the total), ``trial_sharpes``
    (per period, this run's seeds then the history's) and ``source``."""
    own = [None if s is None else float(s) for s in seed_sharpes]
    counted = [dict(h) for h in history if list(h["sharpe_per_period"]) != own]
    sharpes = own + [s for h in counted for s in h["sharpe_per_period"]]
    return {**trials, "this_run": int(trials["n_trials"]), "history": counted,
            "n_trials": int(trials["n_trials"]) + sum(int(h["n_trials"]) for h in counted),
            "trial_sharpes": sharpes,
            "source": (f"{int(trials['n_trials'])} in this run (CNN+LSTM trials x agent "
                       "search trials x RL seeds) + "
                       f"{len(counted)} other configurations evaluated on the same data and "
                       "fold plan (MLflow evaluate runs)")}


def pbo_over_seeds(seed_books: Sequence[BookSeries], n_splits: int) -> dict[str, Any]:
    """Probability of backtest overfitting (CSCV, ``n_splits`` blocks) with
    the RL seeds as the trials, each traded through every fold; undefined
    (``pbo`` None, with the reason) for one seed, too few bars or a constant
    trial."""

    if len(seed_books) < 2:
        return {"pbo": None, "undefined": "one seed: no choice to overfit"}
    try:
        found = probability_of_backtest_overfitting(
            np.column_stack([b.log_return for b in seed_books]), n_splits=n_splits)
    except ValueError as error:  # too few bars for the blocks, or a constant trial
        return {"pbo": None, "undefined": str(error)}
    return {"pbo": found["pbo"], "prob_oos_loss": found["prob_oos_loss"],
            "n_combinations": found["n_combinations"], "n_splits": n_splits,
            "trials": "the RL seeds, each traded through every fold"}


def walk_forward_record(results: Sequence[FoldResult], *, bars_per_year: int,
                        trials: Mapping[str, int], pbo_splits: int,
                        config: Mapping[str, Any],
                        history: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """reports/metrics.json's body (strict JSON): the policy's overall and
    per-fold statistics, DSR, PBO, chosen seeds and the seeds' spread; every
    baseline's overall and per-fold statistics; the trial count
    (:func:`count_trials` of ``trials`` and the ``history`` of other
    configurations on the same data); the folds;
    ``config`` (what was evaluated, as given); and ``best_baseline``, the
    baseline with the highest Sharpe."""
    policy = concatenate([r.policy for r in results])
    names = list(results[0].baselines)
    baselines = {n: concatenate([r.baselines[n] for r in results]) for n in names}
    n_seeds = len(results[0].seeds)
    seed_books = [concatenate([r.seeds[i].series for r in results]) for i in range(n_seeds)]
    seed_stats = [summarise(b, bars_per_year=bars_per_year) for b in seed_books]
    sharpes = [s["sharpe"] for s in seed_stats if s["sharpe"] is not None]
    counted = count_trials(trials, [s["sharpe_per_period"] for s in seed_stats], history)

    def per_fold(name: str | None = None) -> list[dict[str, Any]]:
        return [{"fold": r.fold, "test_start": r.test["start"], "test_end": r.test["end"],
                 **summarise(r.policy if name is None else r.baselines[name],
                             bars_per_year=bars_per_year)} for r in results]

    record = json_safe({
        "policy": {
            "overall": summarise(policy, bars_per_year=bars_per_year),
            "per_fold": per_fold(),
            "dsr": deflated_sharpe_of_seeds(policy, counted["trial_sharpes"],
                                            counted["n_trials"]),
            "pbo": pbo_over_seeds(seed_books, pbo_splits),
            "chosen_seeds": [r.chosen_seed for r in results],
            "seeds": {
                "sharpe_per_seed": [s["sharpe"] for s in seed_stats],
                "sharpe_mean": float(np.mean(sharpes or [np.nan])),
                "sharpe_std": float(np.std(sharpes, ddof=1)) if n_seeds > 1 else 0.0,
                "n_seeds": n_seeds,
            },
        },
        "baselines": {n: {"overall": summarise(b, bars_per_year=bars_per_year),
                          "per_fold": per_fold(n)} for n, b in baselines.items()},
        "trials": counted,
        "folds": [{"fold": r.fold, "test": r.test, "agent_spans": r.spans,
                   "chosen_seed": r.chosen_seed,
                   **({} if r.search is None else {"agent_search": r.search})}
                  for r in results],
        "config": dict(config),
    })
    record["best_baseline"] = max(
        (n for n in names if record["baselines"][n]["overall"]["sharpe"] is not None),
        key=lambda n: record["baselines"][n]["overall"]["sharpe"], default=None)
    return record


def curves_frame(results: Sequence[FoldResult]) -> pd.DataFrame:
    """Per-bar rows of every book (policy and baselines) of every fold, for
    the report and reports/evaluation/curves.parquet."""
    frames = []
    for r in results:
        frames.append(r.policy.frame("policy", r.fold))
        frames.extend(book.frame(n, r.fold) for n, book in r.baselines.items())
    return pd.concat(frames, ignore_index=True)


def write_plot_data(curves: pd.DataFrame, directory: Path) -> None:
    """Wide CSVs for ``dvc plots``: equity and drawdown of every series per bar."""
    directory.mkdir(parents=True, exist_ok=True)
    wide = curves.pivot(index="timestamp", columns="series", values="log_return").sort_index()
    equity = np.exp(wide.cumsum())
    drawdown = 1.0 - equity / equity.cummax()
    for name, frame in (("equity", equity), ("drawdown", drawdown)):
        out = frame.reset_index()
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d")
        out.to_csv(directory / f"{name}.csv", index=False, float_format="%.6f")
