"""SB3's training log reaches MLflow as metrics with their steps."""

from __future__ import annotations

from pathlib import Path

import mlflow

from tradingrl.agents import AgentSettings, train_agent
from tradingrl.agents.curves import mlflow_logger
from tradingrl.envs import synthetic_market_arrays


def test_training_curves_are_logged_per_seed_with_steps(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("curves", artifact_location=str(tmp_path / "art"))
    run = client.create_run(experiment)
    market = synthetic_market_arrays(300, 5)
    settings = AgentSettings(total_timesteps=256, eval_freq=128, checkpoint_freq=128,
                             patience=None, seeds=(0,),
                             algorithm_kwargs={"n_steps": 64, "batch_size": 32, "n_epochs": 1})
    train_agent(market, market, settings, seed=0, out_dir=tmp_path / "agent",
                env_kwargs={"window": 2, "random_start": True, "max_steps": 32},
                sb3_logger=mlflow_logger(run.info.run_id, prefix="seed0/", tracking_uri=uri))
    logged = client.get_run(run.info.run_id).data.metrics
    assert "seed0/rollout/ep_rew_mean" in logged
    assert "seed0/train/loss" in logged
    assert "seed0/eval/mean_reward" in logged
    # The trading curves: turnover, costs, position and the action's percentiles.
    assert logged["seed0/trade/turnover_per_step"] > 0.0
    assert logged["seed0/trade/cost_per_step"] > 0.0
    assert 0.0 < logged["seed0/trade/mean_abs_position"] <= 1.0 + 1e-9
    quantiles = [logged[f"seed0/trade/action_p{q:02d}"] for q in (5, 25, 50, 75, 95)]
    assert quantiles == sorted(quantiles) and quantiles[0] < quantiles[-1]
    history = client.get_metric_history(run.info.run_id, "seed0/train/loss")
    steps = [m.step for m in history]
    assert steps == sorted(steps) and len(steps) >= 3 and steps[-1] <= 256
