"""Stage train_agent: features + validated bars + out-of-fold predictions -> models/agent.

The agent's span is the part of the data that has out-of-fold CNN+LSTM
predictions (data/predictions, stage predict_oof): every prediction in its
state was made by a model fitted before that bar's block. The last
``val_fraction`` of the span's sessions validates (early stopping and the
choice among seeds); the rest trains. The scaler of the agent's features is
fitted on the training part only.

One agent per seed (``seeds``; the count is recorded as trials for the
deflated Sharpe ratio), reported as mean and spread; the seed with the best
validation score is the stage's agent. A killed run resumes from the
checkpoints in models/agent_runs (kept when params and inputs are unchanged).

Outputs: models/agent (agent.zip, every seed's best model, env_config.json,
scaler.json, results.json), reports/agent_metrics.json; one MLflow run with a
nested run per seed (validation curve), the agent and its env config as
artifacts, and a new version of the registered model ``rl-agent``.
"""

from __future__ import annotations

import shutil
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

REGISTERED_MODEL = "rl-agent"


def settings_from_params(params: dict[str, Any]) -> Any:
    from tradingrl.agents.training import AgentSettings

    return AgentSettings(
        algorithm=params["algorithm"],
        env=params["env_kind"],
        total_timesteps=params["total_timesteps"],
        n_envs=params["n_envs"],
        seeds=tuple(params["seeds"]),
        learning_rate=params["learning_rate"],
        policy_kwargs=dict(params.get("policy_kwargs") or {}),
        algorithm_kwargs=dict((params.get("algorithm_kwargs") or {}).get(params["algorithm"], {})),
        eval_freq=params["eval_freq"],
        patience=params["patience"],
        min_evals=params["min_evals"],
        checkpoint_freq=params["checkpoint_freq"],
    )


def env_kwargs_from_params(params: dict[str, Any], kind: str) -> dict[str, Any]:
    """The env's keyword arguments (costs and the risk layer built from params)."""
    from tradingrl.envs.costs import ExecutionCosts
    from tradingrl.risk.limits import RiskLimits

    env = dict(params["env"])
    kwargs = {k: env[k] for k in ("window", "initial_cash", "fill", "reward_mode", "risk_lambda",
                                  "dsr_eta", "max_steps", "random_start", "min_episode_steps",
                                  "end_of_data", "risk_lookback")}
    kwargs["costs"] = ExecutionCosts(**params["costs"])
    risk = dict(params["risk"])
    if risk.pop("enabled"):
        horizon = int(risk.pop("forecast_horizon_bars"))
        limits = RiskLimits(**risk)
        if kind == "portfolio":
            from tradingrl.envs.portfolio import portfolio_risk_layer_hook

            kwargs["risk_fn"] = portfolio_risk_layer_hook(limits, forecast_horizon_bars=horizon)
        else:
            from tradingrl.envs.risk_hook import risk_layer_hook

            kwargs["risk_fn"] = risk_layer_hook(limits, forecast_horizon_bars=horizon)
    return kwargs


def main(
    params: dict[str, Any] | None = None,
    repo_root: Path = REPO_ROOT,
) -> dict[str, Any]:
    """Run the stage (``params`` and ``repo_root`` exist for tests)."""
    import mlflow

    from tradingrl.agents.data import (
        agent_spans,
        build_agent_table,
        fit_agent_scaler,
        span_markets,
    )
    from tradingrl.agents.reference import ConstantPolicy
    from tradingrl.agents.training import build_env, evaluate_policy_on, train_seeds
    from tradingrl.tracking import provenance_tags, use_experiment

    params = params if params is not None else load_params("train_agent")
    import torch

    torch.set_num_threads(int(params["torch_threads"]))
    features_dir = repo_root / "data" / "features"
    oof_path = repo_root / "data" / "predictions" / "oof.parquet"
    out_dir = repo_root / "models" / "agent"
    runs_dir = repo_root / "models" / "agent_runs"
    reports_dir = repo_root / "reports"

    settings = settings_from_params(params)
    env_kwargs = env_kwargs_from_params(params, settings.env)
    feature_names = list(params["features"])
    prediction_names = list(params["prediction_columns"])
    table, counts = build_agent_table(
        pd.read_parquet(features_dir / "features.parquet", columns=None),
        pd.read_parquet(repo_root / "data" / "validated" / "ohlcv.parquet"),
        pd.read_parquet(oof_path), feature_names, prediction_names)
    spans = agent_spans(table, params["val_fraction"])
    scaler = fit_agent_scaler(table, feature_names, spans["train_start"], spans["train_end"])
    window = env_kwargs["window"]
    train_markets = span_markets(table, scaler, prediction_names, start=spans["train_start"],
                                 end=spans["train_end"], lookback=0)
    val_markets = span_markets(table, scaler, prediction_names, start=spans["val_start"],
                               end=spans["val_end"], lookback=window)

    run_key = fingerprint(params, file_md5(oof_path) + file_md5(
        features_dir / "features.parquet"))
    prepare_resumable(runs_dir, run_key)
    tags = provenance_tags(repo_root, "data/predictions")
    experiment_id = use_experiment(repo_root, params["experiment"])
    with mlflow.start_run(run_name="train_agent", tags=tags) as run:
        mlflow.log_params(flat_params({"train_agent": params}))
        mlflow.log_dict({k: v.isoformat() for k, v in spans.items()}, "spans.json")
        from tradingrl.agents.curves import mlflow_logger
        from tradingrl.tracking import tracking_uri

        results = train_seeds(
            train_markets, val_markets, settings, out_dir=runs_dir, env_kwargs=env_kwargs,
            logger_for_seed=lambda seed: mlflow_logger(
                run.info.run_id, prefix=f"seed{seed}/", tracking_uri=tracking_uri(repo_root)))
        per_seed = []
        for agent in results.agents:
            curve = runs_dir / f"seed_{agent.seed}" / "evaluations.npz"
            with mlflow.start_run(run_name=f"seed-{agent.seed}", nested=True, tags=tags):
                mlflow.log_param("seed", agent.seed)
                if curve.is_file():
                    with np.load(curve) as history:
                        for step, rewards in zip(history["timesteps"], history["results"],
                                                 strict=True):
                            mlflow.log_metric("val_mean_reward", float(np.mean(rewards)),
                                              step=int(step))
                mlflow.log_metric("best_val_mean_reward", agent.best_val_mean_reward)
            per_seed.append({"seed": agent.seed, "best_val_mean_reward": agent.best_val_mean_reward,
                             "timesteps": agent.timesteps,
                             "resumed_from": str(agent.resumed_from) if agent.resumed_from else None})
        chosen = max(results.agents, key=lambda a: a.best_val_mean_reward)

        # Deterministic validation rollouts of the chosen agent and of two
        # reference policies over every symbol's validation span.
        from tradingrl.agents.training import algorithm_classes

        policy = algorithm_classes()[settings.algorithm].load(chosen.best_model_path, device="cpu")
        validation = {}
        if settings.env == "single_asset":
            for name, model in (("agent", policy), ("flat", ConstantPolicy(0.0)),
                                ("buy_and_hold", ConstantPolicy(1.0))):
                rows = [evaluate_policy_on(m, model, env_kwargs) for m in val_markets]
                validation[name] = {
                    "mean_total_log_return": float(np.mean([r["total_log_return"] for r in rows])),
                    "mean_turnover": float(np.mean([r["turnover"] for r in rows])),
                    "mean_costs": float(np.mean([r["costs"] for r in rows])),
                    "mean_max_drawdown": float(np.mean([r["max_drawdown"] for r in rows])),
                    "per_symbol": {m.symbol: r for m, r in zip(val_markets, rows, strict=True)},
                }

        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        shutil.copy2(chosen.best_model_path, out_dir / "agent.zip")
        for agent in results.agents:
            shutil.copy2(agent.best_model_path, out_dir / f"seed_{agent.seed}.zip")
        scaler.save(out_dir / "scaler.json")
        probe = build_env(val_markets, {**env_kwargs, "risk_fn": None}, kind=settings.env)
        example, _ = probe.reset(seed=0)
        env_config = {
            "algorithm": settings.algorithm,
            "env_kind": settings.env,
            "observation_size": int(probe.observation_space.shape[0]),
            "action_shape": list(probe.action_space.shape),
            "features": feature_names,
            "prediction_columns": prediction_names,
            "env": params["env"],
            "costs": params["costs"],
            "risk": params["risk"],
            "spans": {k: v.isoformat() for k, v in spans.items()},
            "chosen_seed": chosen.seed,
        }
        write_json(out_dir / "env_config.json", env_config)
        report = {
            "algorithm": settings.algorithm,
            "env_kind": settings.env,
            "rows": counts,
            "symbols_train": [m.symbol for m in train_markets],
            "spans": env_config["spans"],
            "seeds": per_seed,
            "val_mean_reward": {"mean": results.val_mean, "std": results.val_std,
                                "n_seeds": results.n_trials},
            "n_trials": results.n_trials,
            "chosen_seed": chosen.seed,
            "validation": validation,
            "mlflow_run_id": run.info.run_id,
        }
        write_json(out_dir / "results.json", report)
        mlflow.log_metrics({"val_mean_reward_mean": results.val_mean,
                            "val_mean_reward_std": results.val_std,
                            "n_trials": results.n_trials})
        mlflow.log_artifacts(str(out_dir), "agent")

        from tradingrl.agents.export import log_and_register_agent

        version = log_and_register_agent(
            out_dir / "agent.zip", env_config, example[None, :], name=REGISTERED_MODEL,
            tags={**tags, "run_id": run.info.run_id, "seed": str(chosen.seed),
                  "n_trials": str(results.n_trials)})
        report["registered"] = {"name": REGISTERED_MODEL, "version": version}
        write_json(reports_dir / "agent_metrics.json", report)
        mlflow.log_artifact(str(reports_dir / "agent_metrics.json"))

    line = (f"train_agent: {settings.algorithm} x {results.n_trials} seeds, validation mean "
            f"reward {results.val_mean:.4f} +- {results.val_std:.4f}")
    if validation:
        line += (f"; chosen seed {chosen.seed} log return {validation['agent']['mean_total_log_return']:.4f}"
                 f" vs buy-and-hold {validation['buy_and_hold']['mean_total_log_return']:.4f}"
                 f" per symbol")
    print(f"{line}; {REGISTERED_MODEL} v{version} (experiment {experiment_id})")
    return report


if __name__ == "__main__":
    run_stage(main)
