"""Stage evaluate: walk-forward, out-of-sample judgement of the hybrid policy.

For every walk-forward fold after the first (the first test block has no
earlier out-of-fold predictions to train an agent on), the agent is trained
on the data before the block with the ``train_agent`` settings and trades the
block; the baselines trade it through the backtester with the same costs and
risk layer (:mod:`tradingrl.evaluation.policy_eval`). The folds' test blocks
are consecutive, so their books concatenate into one out-of-sample record.

This judges the *procedure* that produced models/agent: the deployed agent
was trained on all the data, so no span is out of sample for it.

Outputs: reports/metrics.json (overall and per fold, policy and baselines,
deflated Sharpe ratio with the trial count), reports/plots/*.csv (equity and
drawdown per series, for ``dvc plots``), reports/evaluation/curves.parquet
(per-bar series of every book), reports/evaluation.html; an MLflow run with
the metrics and the report as artifacts. Agents of each fold are trained in
models/evaluation_runs/fold-<k> (resumable, like train_agent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks._common import (
    REPO_ROOT,
    file_md5,
    fingerprint,
    flat_params,
    load_params,
    prepare_resumable,
    run_stage,
    write_json,
)
from tasks.train_agent import env_kwargs_from_params, settings_from_params


def trial_count(agent_params: dict[str, Any], model_report: dict[str, Any]) -> dict[str, int]:
    """Configurations tried on the way to the evaluated policy: every Optuna
    trial of the CNN+LSTM times every RL seed (at least the seeds)."""
    optuna_trials = int(model_report.get("search", {}).get("n_trials", 0))
    seeds = len(agent_params["seeds"])
    return {"optuna_trials": optuna_trials, "rl_seeds": seeds,
            "n_trials": max(optuna_trials, 1) * seeds}


def main(params: dict[str, Any] | None = None, agent_params: dict[str, Any] | None = None,
         walk_forward: dict[str, Any] | None = None, repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults)."""
    import mlflow

    from tradingrl.agents.data import build_agent_table
    from tradingrl.evaluation.policy_eval import (
        BaselineSettings,
        FoldConfig,
        concatenate,
        evaluate_fold_job,
        json_safe,
        summarise,
    )
    from tradingrl.evaluation.sharpe import deflated_sharpe_ratio
    from tradingrl.evaluation.walk_forward import Fold
    from tradingrl.parallel import map_parallel, runner_from_env
    from tradingrl.tracking import provenance_tags, use_experiment

    params = params if params is not None else load_params("evaluate")
    agent_params = agent_params if agent_params is not None else load_params("train_agent")
    walk_forward = walk_forward if walk_forward is not None else load_params("walk_forward")
    import torch

    torch.set_num_threads(int(agent_params["torch_threads"]))
    bars_per_year = int(params["bars_per_year"])
    reports = repo_root / "reports"
    predictions_dir = repo_root / "data" / "predictions"

    settings = settings_from_params(agent_params)
    if settings.env != "single_asset":
        raise ValueError("evaluate trades single-asset agents per symbol; env_kind "
                         f"{settings.env!r} is not evaluated yet")
    env_kwargs = env_kwargs_from_params(agent_params, settings.env)
    features = tuple(agent_params["features"])
    prediction_names = tuple(agent_params["prediction_columns"])
    table, _ = build_agent_table(
        pd.read_parquet(repo_root / "data" / "features" / "features.parquet"),
        pd.read_parquet(repo_root / "data" / "validated" / "ohlcv.parquet"),
        pd.read_parquet(predictions_dir / "oof.parquet"), features, prediction_names)
    plan = json.loads((predictions_dir / "folds.json").read_text())
    folds = [Fold.from_dict(f["fold"]) for f in plan["folds"]]
    if len(folds) < 2:
        raise ValueError("walk-forward evaluation needs walk_forward.n_folds >= 2 (the first "
                         "block only trains the first agent)")
    model_report = json.loads((reports / "model_metrics.json").read_text())
    trials = trial_count(agent_params, model_report)

    runs_root = repo_root / "models" / "evaluation_runs"
    # Only what the folds' agents depend on: report options do not retrain them.
    run_key = fingerprint({"train_agent": agent_params,
                                "embargo": walk_forward.get("embargo_timestamps", 0)},
                               file_md5(predictions_dir / "oof.parquet"))
    prepare_resumable(runs_root, run_key)

    baseline_settings = BaselineSettings(**params["baselines"])
    calls = [{"table": table, "fold": fold, "torch_threads": int(agent_params["torch_threads"]),
              "config": FoldConfig(
                  settings=settings, env_kwargs=env_kwargs, features=features,
                  prediction_names=prediction_names, val_fraction=agent_params["val_fraction"],
                  out_dir=runs_root / f"fold-{fold.index}",
                  embargo_timestamps=int(walk_forward.get("embargo_timestamps", 0)),
                  baselines=baseline_settings)}
             for fold in folds[1:]]
    # Folds are independent: on a Dask task runner (pipelines.yaml, through
    # the training flow) they run in parallel processes, else one by one.
    runner = runner_from_env()
    if runner is not None:
        print(f"evaluate: {len(calls)} folds on task runner {runner.kind}")
    results = map_parallel(evaluate_fold_job, calls, settings=runner, name="fold")
    for result in results:
        print(f"evaluate: fold {result['fold']} {result['test']['start'][:10]}..."
              f"{result['test']['end'][:10]} done (seed {result['chosen_seed']} chosen)")

    policy = concatenate([r["policy"] for r in results])
    names = list(results[0]["baselines"])
    baselines = {n: concatenate([r["baselines"][n] for r in results]) for n in names}
    n_seeds = len(results[0]["seeds"])
    seed_books = [concatenate([r["seeds"][i]["series"] for r in results]) for i in range(n_seeds)]
    seed_stats = [summarise(b, bars_per_year=bars_per_year) for b in seed_books]

    try:
        sharpes = [s["sharpe_per_period"] for s in seed_stats]
        usable = [s for s in sharpes if s is not None]
        null_variance = 1.0 / (len(policy.log_return) - 1)
        variance = max(float(np.var(usable, ddof=1)) if len(usable) > 1 else 0.0, null_variance)
        dsr = deflated_sharpe_ratio(policy.log_return, n_trials=trials["n_trials"],
                                    sr_variance=variance)
        dsr["sr_variance_source"] = ("max(variance of the seeds' out-of-sample Sharpe ratios, "
                                     "1/(n-1))")
    except ValueError as error:  # zero variance: the policy never moved its book
        dsr = {"dsr": None, "undefined": str(error), "n_trials": trials["n_trials"]}

    pbo: dict[str, Any]
    if n_seeds >= 2:
        from tradingrl.evaluation.pbo import probability_of_backtest_overfitting

        splits = int(params["pbo_splits"])
        try:
            found = probability_of_backtest_overfitting(
                np.column_stack([b.log_return for b in seed_books]), n_splits=splits)
            pbo = {"pbo": found["pbo"], "prob_oos_loss": found["prob_oos_loss"],
                   "n_combinations": found["n_combinations"], "n_splits": splits,
                   "trials": "the RL seeds, each traded through every fold"}
        except ValueError as error:  # too few bars for the blocks, or a constant trial
            pbo = {"pbo": None, "undefined": str(error)}
    else:
        pbo = {"pbo": None, "undefined": "one seed: no choice to overfit"}

    def per_fold(name: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for r in results:
            book = r["policy"] if name is None else r["baselines"][name]
            rows.append({"fold": r["fold"], "test_start": r["test"]["start"],
                         "test_end": r["test"]["end"],
                         **summarise(book, bars_per_year=bars_per_year)})
        return rows

    evaluation = json_safe({
        "policy": {
            "overall": summarise(policy, bars_per_year=bars_per_year),
            "per_fold": per_fold(),
            "dsr": dsr,
            "pbo": pbo,
            "chosen_seeds": [r["chosen_seed"] for r in results],
            "seeds": {
                "sharpe_per_seed": [s["sharpe"] for s in seed_stats],
                "sharpe_mean": float(np.mean([s["sharpe"] for s in seed_stats
                                              if s["sharpe"] is not None] or [np.nan])),
                "sharpe_std": float(np.std([s["sharpe"] for s in seed_stats
                                            if s["sharpe"] is not None], ddof=1))
                if n_seeds > 1 else 0.0,
                "n_seeds": n_seeds,
            },
        },
        "baselines": {n: {"overall": summarise(b, bars_per_year=bars_per_year),
                          "per_fold": per_fold(n)} for n, b in baselines.items()},
        "trials": trials,
        "folds": [{"fold": r["fold"], "test": r["test"], "agent_spans": r["spans"],
                   "chosen_seed": r["chosen_seed"]} for r in results],
        "config": {"algorithm": settings.algorithm, "seeds": list(settings.seeds),
                   "total_timesteps": settings.total_timesteps,
                   "folds_evaluated": len(results), "symbols": results[0]["symbols"],
                   "costs": agent_params["costs"],
                   "risk_layer": bool(agent_params["risk"]["enabled"]),
                   "bars_per_year": bars_per_year,
                   "rolling_sharpe_window": int(params["rolling_sharpe_window"])},
    })
    best_baseline = max(
        (n for n in names if evaluation["baselines"][n]["overall"]["sharpe"] is not None),
        key=lambda n: evaluation["baselines"][n]["overall"]["sharpe"], default=None)
    evaluation["best_baseline"] = best_baseline

    frames = []
    for r in results:
        frames.append(r["policy"].frame("policy", r["fold"]))
        frames.extend(r["baselines"][n].frame(n, r["fold"]) for n in names)
    curves = pd.concat(frames, ignore_index=True)
    out = reports / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    curves.to_parquet(out / "curves.parquet", index=False)
    _write_plot_data(curves, reports / "plots")
    write_json(reports / "metrics.json", evaluation)

    from tradingrl.evaluation.report import write_evaluation_report

    write_evaluation_report(evaluation, curves, reports / "evaluation.html",
                            rolling_window=int(params["rolling_sharpe_window"]),
                            bars_per_year=bars_per_year)

    tags = provenance_tags(repo_root, "data/predictions")
    use_experiment(repo_root, params["experiment"])
    with mlflow.start_run(run_name="evaluate", tags=tags) as run:
        mlflow.log_params(flat_params({"evaluate": params}))
        flat = {f"policy.{k}": v for k, v in evaluation["policy"]["overall"].items()
                if isinstance(v, int | float)}
        flat.update({f"baseline.{n}.sharpe": b["overall"]["sharpe"]
                     for n, b in evaluation["baselines"].items()
                     if b["overall"]["sharpe"] is not None})
        if dsr.get("dsr") is not None:
            flat["policy.dsr"] = dsr["dsr"]
        mlflow.log_metrics(flat)
        mlflow.log_artifact(str(reports / "metrics.json"))
        mlflow.log_artifact(str(reports / "evaluation.html"))
        mlflow.log_artifacts(str(reports / "plots"), "plots")
        evaluation["mlflow_run_id"] = run.info.run_id
    write_json(reports / "metrics.json", evaluation)

    overall = evaluation["policy"]["overall"]
    best = evaluation["baselines"][best_baseline]["overall"] if best_baseline else {}
    print(f"evaluate: {len(results)} folds, policy Sharpe {overall['sharpe']} vs best baseline "
          f"{best_baseline} {best.get('sharpe')}; DSR {dsr.get('dsr')} over "
          f"{trials['n_trials']} trials")
    return evaluation


def _write_plot_data(curves: pd.DataFrame, directory: Path) -> None:
    """Wide CSVs for ``dvc plots``: equity and drawdown of every series per bar."""
    directory.mkdir(parents=True, exist_ok=True)
    wide = curves.pivot(index="timestamp", columns="series", values="log_return").sort_index()
    equity = np.exp(wide.cumsum())
    drawdown = 1.0 - equity / equity.cummax()
    for name, frame in (("equity", equity), ("drawdown", drawdown)):
        out = frame.reset_index()
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d")
        out.to_csv(directory / f"{name}.csv", index=False, float_format="%.6f")


if __name__ == "__main__":
    run_stage(main)
