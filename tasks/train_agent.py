"""Stage train_agent: features + validated bars + out-of-fold predictions -> models/agent.

The agent's span is the part of the data that has out-of-fold CNN+LSTM
predictions (data/predictions, stage predict_oof): every prediction in its
state was made by a model fitted before that bar's block. The work is
:func:`tradingrl.agents.run.train_hybrid_agent`: one agent per seed
(``seeds``; the count is recorded as trials for the deflated Sharpe ratio;
they train in worker processes, one per core, :mod:`tradingrl.parallel`),
the seed with the best validation score is the stage's agent. A killed run
resumes from the checkpoints in models/agent_runs (kept when code, params and
inputs are unchanged; a seed that finished is read back, not trained
further); a rerun after the stage finished starts clean
(:mod:`tradingrl.resume`).

Outputs: models/agent (agent.zip, every seed's best model, env_config.json,
scaler.json, results.json), reports/agent_metrics.json; one MLflow run with a
nested run per seed (validation curve), the agent and its env config as
artifacts, and a new version of the registered model ``rl-agent``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl import headline
from tradingrl.params import flat_params, load_params
from tradingrl.registry.champion import AGENT_MODEL
from tradingrl.resume import code_hash, file_md5, fingerprint, finish_resumable, prepare_resumable
from tradingrl.stage import run_stage, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
# The DVC outputs this stage reads, logged as the run's MLflow datasets.
DATA_INPUTS = ["data/validated", "data/features", "data/predictions"]
CURVE_FILE = "training_log.jsonl"


def main(params: dict[str, Any] | None = None, repo_root: Path = REPO_ROOT) -> dict[str, Any]:
    """Run the stage (``params`` and ``repo_root`` exist for tests)."""
    import mlflow
    import torch

    from tradingrl.agents.curves import file_logger, log_curve_file, write_curve_plots
    from tradingrl.agents.data import build_agent_table
    from tradingrl.agents.export import log_and_register_agent
    from tradingrl.agents.run import env_kwargs_from_params, train_hybrid_agent, write_agent_dir
    from tradingrl.agents.search import AgentSearchSettings
    from tradingrl.agents.training import AgentSettings, seed_dir
    from tradingrl.parallel import runner_from_env
    from tradingrl.tracking import (
        log_data_inputs,
        log_to_parent,
        provenance_tags,
        stage_run,
        tracking_uri,
        use_experiment,
    )

    params = params if params is not None else load_params("train_agent",
                                                           repo_root / "params.yaml")
    torch.set_num_threads(int(params["torch_threads"]))
    features_path = repo_root / "data" / "features" / "features.parquet"
    oof_path = repo_root / "data" / "predictions" / "oof.parquet"
    out_dir, runs_dir = repo_root / "models" / "agent", repo_root / "models" / "agent_runs"
    settings = AgentSettings.from_params(params)
    search = AgentSearchSettings.from_params(params.get("search"))
    env_kwargs = env_kwargs_from_params(params, settings.env)
    feature_names, prediction_names = list(params["features"]), list(params["prediction_columns"])
    table, counts = build_agent_table(
        pd.read_parquet(features_path),
        pd.read_parquet(repo_root / "data" / "validated" / "ohlcv.parquet"),
        pd.read_parquet(oof_path), feature_names, prediction_names)
    prepare_resumable(runs_dir, fingerprint(params, file_md5(oof_path) + file_md5(features_path),
                                            code_hash("train_agent")))
    oof_md5, features_md5 = file_md5(oof_path), file_md5(features_path)

    tags = provenance_tags(repo_root, "data/predictions")
    experiment_id = use_experiment(repo_root, params["experiment"])
    with stage_run(repo_root, experiment_id, "train_agent", tags) as run:
        mlflow.log_params(flat_params({"train_agent": params}))
        log_data_inputs(repo_root, DATA_INPUTS, "training")
        trained = train_hybrid_agent(
            table, settings, env_kwargs, feature_names=feature_names,
            prediction_names=prediction_names, val_fraction=params["val_fraction"],
            runs_dir=runs_dir, logger_for_seed=lambda seed: file_logger(
                seed_dir(runs_dir, seed) / CURVE_FILE),
            search=search, runner=runner_from_env())
        spans = {k: v.isoformat() for k, v in trained.spans.items()}
        mlflow.log_dict(spans, "spans.json")
        results, chosen = trained.results, trained.chosen
        per_seed = []
        for agent in results.agents:
            # The seeds trained in worker processes (tradingrl/parallel.py):
            # their training logs reach MLflow from here.
            log_curve_file(seed_dir(runs_dir, agent.seed) / CURVE_FILE, run.info.run_id,
                           prefix=f"seed{agent.seed}/", tracking_uri=tracking_uri(repo_root))
            _log_seed_run(runs_dir / f"seed_{agent.seed}" / "evaluations.npz", agent, tags)
            per_seed.append({"seed": agent.seed, "best_val_mean_reward": agent.best_val_mean_reward,
                             "timesteps": agent.timesteps,
                             "resumed_from": str(agent.resumed_from) if agent.resumed_from else None,
                             "reused": agent.reused})
        write_curve_plots({a.seed: seed_dir(runs_dir, a.seed) / CURVE_FILE for a in results.agents},
                          repo_root / "reports" / "agent_plots")
        env_config = {
            "algorithm": settings.algorithm, "env_kind": settings.env,
            "observation_size": trained.observation_size, "action_shape": trained.action_shape,
            "features": feature_names, "prediction_columns": prediction_names,
            # The symbols it trained on; a portfolio agent's weights are in this order.
            "symbols": [m.symbol for m in trained.train_markets],
            "env": params["env"], "costs": params["costs"], "risk": params["risk"],
            "spans": spans, "chosen_seed": chosen.seed,
            # What it was trained from, for promote's provenance check.
            "inputs_md5": {"data/predictions/oof.parquet": oof_md5,
                           "data/features/features.parquet": features_md5},
        }
        write_agent_dir(out_dir, trained, env_config)
        report = {
            "algorithm": settings.algorithm, "env_kind": settings.env, "rows": counts,
            "symbols_train": [m.symbol for m in trained.train_markets], "spans": spans,
            "seeds": per_seed,
            "val_mean_reward": {"mean": results.val_mean, "std": results.val_std,
                                "n_seeds": results.n_trials},
            "n_trials": results.n_trials, "chosen_seed": chosen.seed,
            "search": None if results.search is None else results.search.to_json(),
            "validation": trained.validation, "mlflow_run_id": run.info.run_id,
        }
        write_json(out_dir / "results.json", report)
        mlflow.log_metrics({"val_mean_reward_mean": results.val_mean,
                            "val_mean_reward_std": results.val_std,
                            "n_trials": results.n_trials})
        mlflow.log_artifacts(str(out_dir), "agent")
        version = log_and_register_agent(
            out_dir / "agent.zip", env_config, trained.example_observation[None, :],
            name=AGENT_MODEL, tags={**tags, "run_id": run.info.run_id,
                                         "seed": str(chosen.seed),
                                         "n_trials": str(results.n_trials)})
        report["registered"] = {"name": AGENT_MODEL, "version": version}
        write_json(repo_root / "reports" / "agent_metrics.json", report)
        log_to_parent(headline.write(repo_root, "train_agent", report), "train_agent")
        mlflow.log_artifact(str(repo_root / "reports" / "agent_metrics.json"))
    finish_resumable(runs_dir)

    line = (f"train_agent: {settings.algorithm} x {results.n_trials} seeds, validation mean "
            f"reward {results.val_mean:.4f} +- {results.val_std:.4f}")
    if trained.validation:
        agent, hold = trained.validation["agent"], trained.validation["buy_and_hold"]
        line += (f"; chosen seed {chosen.seed} log return {agent['mean_total_log_return']:.4f}"
                 f" vs buy-and-hold {hold['mean_total_log_return']:.4f} per symbol")
    print(f"{line}; {AGENT_MODEL} v{version} (experiment {experiment_id})")
    return report


def _log_seed_run(curve: Path, agent: Any, tags: dict[str, str]) -> None:
    """A nested MLflow run per seed: its validation curve and best score."""
    import mlflow

    with mlflow.start_run(run_name=f"seed-{agent.seed}", nested=True, tags=tags):
        mlflow.log_param("seed", agent.seed)
        if curve.is_file():
            with np.load(curve) as history:
                for step, rewards in zip(history["timesteps"], history["results"], strict=True):
                    mlflow.log_metric("val_mean_reward", float(np.mean(rewards)), step=int(step))
        mlflow.log_metric("best_val_mean_reward", agent.best_val_mean_reward)


if __name__ == "__main__":
    run_stage(main)
