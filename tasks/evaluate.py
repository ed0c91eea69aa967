"""Stage evaluate: walk-forward, out-of-sample judgement of the hybrid policy.

For every walk-forward fold after the first, the agent is trained on the
data before the block with the ``train_agent`` settings and trades the
block; the baselines trade it through the backtester with the same costs and
risk layer (:mod:`tradingrl.evaluation.policy_eval`). The folds' test blocks
are consecutive, so their books concatenate into one out-of-sample record
(:mod:`tradingrl.evaluation.record`: statistics, deflated Sharpe ratio, PBO).

This judges the *procedure* that produced models/agent: the deployed agent
was trained on all the data, so no span is out of sample for it.

Outputs: reports/metrics.json, reports/plots/*.csv (equity and drawdown per
series, for ``dvc plots``), reports/evaluation/curves.parquet (per-bar series
of every book), reports/evaluation.html; an MLflow run with the metrics and
the report as artifacts. Agents of each fold are trained in
models/evaluation_runs/fold-<k> (a killed run resumes them, like train_agent;
a rerun after the stage finished, ``dvc repro -f`` included, trains anew).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tradingrl import headline
from tradingrl.params import flat_params, load_params
from tradingrl.resume import code_hash, file_md5, fingerprint, finish_resumable, prepare_resumable
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
# The DVC outputs this stage reads, logged as the run's MLflow datasets.
DATA_INPUTS = ["data/validated", "data/features", "data/predictions"]


def main(params: dict[str, Any] | None = None, agent_params: dict[str, Any] | None = None,
         walk_forward: dict[str, Any] | None = None, repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    """Run the stage (arguments exist for tests; DVC uses the defaults)."""
    import mlflow
    import torch

    from tradingrl.agents.data import build_agent_table
    from tradingrl.agents.run import env_kwargs_from_params
    from tradingrl.agents.search import AgentSearchSettings
    from tradingrl.agents.training import AgentSettings
    from tradingrl.evaluation.books import BaselineSettings
    from tradingrl.evaluation.policy_eval import FoldConfig
    from tradingrl.evaluation.record import (
        curves_frame,
        run_walk_forward,
        trial_count,
        walk_forward_record,
        write_plot_data,
    )
    from tradingrl.evaluation.report import write_evaluation_report
    from tradingrl.evaluation.trials import trial_config, trial_family, trial_history, trial_tags
    from tradingrl.parallel import runner_from_env
    from tradingrl.registry.provenance import evaluation_inputs
    from tradingrl.splits.walk_forward import Fold
    from tradingrl.tracking import (
        log_data_inputs,
        log_to_parent,
        provenance_tags,
        stage_run,
        use_experiment,
    )

    params_file = repo_root / "params.yaml"
    params = params if params is not None else load_params("evaluate", params_file)
    agent_params = (agent_params if agent_params is not None
                    else load_params("train_agent", params_file))
    walk_forward = (walk_forward if walk_forward is not None
                    else load_params("walk_forward", params_file))
    torch.set_num_threads(int(agent_params["torch_threads"]))
    bars_per_year = int(params["bars_per_year"])
    reports, predictions_dir = repo_root / "reports", repo_root / "data" / "predictions"

    settings = AgentSettings.from_params(agent_params)
    features = tuple(agent_params["features"])
    prediction_names = tuple(agent_params["prediction_columns"])
    table, _ = build_agent_table(
        pd.read_parquet(repo_root / "data" / "features" / "features.parquet"),
        pd.read_parquet(repo_root / "data" / "validated" / "ohlcv.parquet"),
        pd.read_parquet(predictions_dir / "oof.parquet"), features, prediction_names)
    plan = json.loads((predictions_dir / "folds.json").read_text())
    folds = [Fold.from_dict(f["fold"]) for f in plan["folds"]]
    search = AgentSearchSettings.from_params(agent_params.get("search"))
    trials = trial_count(len(settings.seeds),
                         json.loads((reports / "model_metrics.json").read_text()),
                         agent_trials=search.n_trials)

    runs_root = repo_root / "models" / "evaluation_runs"
    embargo = int(walk_forward.get("embargo_timestamps", 0))
    oof_md5, code = file_md5(predictions_dir / "oof.parquet"), code_hash("evaluate")
    # Only what the folds' agents depend on: report options do not retrain them.
    prepare_resumable(runs_root, fingerprint({"train_agent": agent_params, "embargo": embargo},
                                             oof_md5, code))
    # The DSR counts every configuration evaluated on these bars and folds
    # (tradingrl/evaluation/trials.py): the MLflow history of this family.
    experiment_id = use_experiment(repo_root, params["experiment"])
    family = trial_family(file_md5(repo_root / "data" / "validated" / "ohlcv.parquet"),
                          [f["fold"] for f in plan["folds"]])
    configuration = trial_config(train_agent=agent_params, embargo=embargo,
                                 predictions=oof_md5, model_trials=trials, code=code)
    history = trial_history(mlflow.MlflowClient(), experiment_id, family, configuration)
    config = FoldConfig(settings=settings, env_kwargs=env_kwargs_from_params(agent_params,
                                                                               settings.env),
                        features=features, prediction_names=prediction_names,
                        val_fraction=agent_params["val_fraction"], out_dir=runs_root,
                        embargo_timestamps=embargo,
                        baselines=BaselineSettings(**params["baselines"]), search=search)
    # Folds and seeds are independent: their agents train in worker processes
    # (tradingrl/parallel.py: one per core, or the training flow's runner).
    results = run_walk_forward(table, folds, config, runs_root=runs_root,
                               torch_threads=int(agent_params["torch_threads"]),
                               runner=runner_from_env())
    evaluation = walk_forward_record(
        results, bars_per_year=bars_per_year, trials=trials, history=history,
        pbo_splits=int(params["pbo_splits"]),
        config={"algorithm": settings.algorithm, "seeds": list(settings.seeds),
                "total_timesteps": settings.total_timesteps, "folds_evaluated": len(results),
                "symbols": results[0].symbols, "costs": agent_params["costs"],
                "risk_layer": bool(agent_params["risk"]["enabled"]),
                "bars_per_year": bars_per_year,
                "rolling_sharpe_window": int(params["rolling_sharpe_window"])})
    # What the evaluated policy came from, for promote's provenance check
    # (tradingrl/registry/provenance.py): these files' and train_agent's md5.
    evaluation["inputs"] = evaluation_inputs(repo_root, agent_params)

    curves = curves_frame(results)
    (reports / "evaluation").mkdir(parents=True, exist_ok=True)
    curves.to_parquet(reports / "evaluation" / "curves.parquet", index=False)
    write_plot_data(curves, reports / "plots")
    write_json(reports / "metrics.json", evaluation)
    write_evaluation_report(evaluation, curves, reports / "evaluation.html",
                            rolling_window=int(params["rolling_sharpe_window"]),
                            bars_per_year=bars_per_year)

    counted = evaluation["trials"]
    tags = {**provenance_tags(repo_root, "data/predictions"),
            **trial_tags(family, configuration, counted["this_run"],
                         counted["trial_sharpes"][:len(settings.seeds)])}
    with stage_run(repo_root, experiment_id, "evaluate", tags) as run:
        mlflow.log_params(flat_params({"evaluate": params}))
        log_data_inputs(repo_root, DATA_INPUTS, "evaluation")
        flat = {f"policy.{k}": v for k, v in evaluation["policy"]["overall"].items()
                if isinstance(v, int | float)}
        flat.update({f"baseline.{n}.sharpe": b["overall"]["sharpe"]
                     for n, b in evaluation["baselines"].items()
                     if b["overall"]["sharpe"] is not None})
        dsr = evaluation["policy"]["dsr"]
        if dsr.get("dsr") is not None:
            flat["policy.dsr"] = dsr["dsr"]
        mlflow.log_metrics(flat)
        mlflow.log_artifact(str(reports / "metrics.json"))
        mlflow.log_artifact(str(reports / "evaluation.html"))
        mlflow.log_artifacts(str(reports / "plots"), "plots")
        log_to_parent(headline.evaluate(evaluation), "evaluate")
        evaluation["mlflow_run_id"] = run.info.run_id
    write_json(reports / "metrics.json", evaluation)
    headline.write(repo_root, "evaluate", evaluation)
    finish_resumable(runs_root)

    overall, best_name = evaluation["policy"]["overall"], evaluation["best_baseline"]
    best = evaluation["baselines"][best_name]["overall"] if best_name else {}
    print(f"evaluate: {len(results)} folds, policy Sharpe {overall['sharpe']} vs best baseline "
          f"{best_name} {best.get('sharpe')}; DSR {dsr.get('dsr')} over "
          f"{counted['n_trials']} trials ({counted['this_run']} in this run, "
          f"{len(counted['history'])} earlier configurations on the same data)")
    return evaluation


if __name__ == "__main__":
    run_stage(main)
