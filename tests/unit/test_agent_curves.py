"""SB3's training log reaches MLflow as metrics with their steps, live or
through the file a worker process writes."""

from __future__ import annotations

from pathlib import Path

import mlflow

from tradingrl.agents import AgentSettings, train_agent
from tradingrl.agents.curves import file_logger, log_curve_file, mlflow_logger
from tradingrl.envs import synthetic_market_arrays

SETTINGS = AgentSettings(total_timesteps=256, eval_freq=128, checkpoint_freq=128,
                         patience=None, seeds=(0,),
                         algorithm_kwargs={"n_steps": 64, "batch_size": 32, "n_epochs": 1})
ENV = {"window": 2, "random_start": True, "max_steps": 32}


def store(tmp_path: Path) -> tuple[str, mlflow.MlflowClient, str]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("curves", artifact_location=str(tmp_path / "art"))
    return uri, client, experiment


def test_training_curves_are_logged_per_seed_with_steps(tmp_path: Path) -> None:
    uri, client, experiment = store(tmp_path)
    run = client.create_run(experiment)
    market = synthetic_market_arrays(300, 5)
    train_agent(market, market, SETTINGS, seed=0, out_dir=tmp_path / "agent", env_kwargs=ENV,
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


def test_the_file_log_posted_afterwards_equals_the_live_log(tmp_path: Path) -> None:
    uri, client, experiment = store(tmp_path)
    live, posted = client.create_run(experiment), client.create_run(experiment)
    market = synthetic_market_arrays(300, 5)
    train_agent(market, market, SETTINGS, seed=0, out_dir=tmp_path / "live", env_kwargs=ENV,
                sb3_logger=mlflow_logger(live.info.run_id, prefix="seed0/", tracking_uri=uri))
    log = tmp_path / "file" / "log.jsonl"
    train_agent(market, market, SETTINGS, seed=0, out_dir=tmp_path / "file", env_kwargs=ENV,
                sb3_logger=file_logger(log))
    steps = log_curve_file(log, posted.info.run_id, prefix="seed0/", tracking_uri=uri)
    assert steps >= 3
    live_metrics = client.get_run(live.info.run_id).data.metrics
    assert client.get_run(posted.info.run_id).data.metrics.keys() == live_metrics.keys()
    # Time-dependent records (fps, time_elapsed) differ; the learning curve does not.
    for key in ("seed0/train/loss", "seed0/eval/mean_reward", "seed0/trade/action_std"):
        assert ([(m.step, m.value) for m in client.get_metric_history(posted.info.run_id, key)]
                == [(m.step, m.value) for m in client.get_metric_history(live.info.run_id, key)])


def test_a_step_written_twice_is_posted_once_with_its_last_values(tmp_path: Path) -> None:
    uri, client, experiment = store(tmp_path)
    run = client.create_run(experiment)
    log = tmp_path / "log.jsonl"
    # A resumed run repeats the steps after its checkpoint.
    log.write_text('{"step": 64, "values": {"train/loss": 1.0}}\n'
                   '{"step": 128, "values": {"train/loss": 2.0, "trade/x": 5.0}}\n'
                   '{"step": 128, "values": {"train/loss": 3.0}}\n\n')
    assert log_curve_file(log, run.info.run_id, tracking_uri=uri) == 2
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(64, 1.0), (128, 3.0)]
    assert client.get_run(run.info.run_id).data.metrics["trade/x"] == 5.0
    assert log_curve_file(tmp_path / "missing.jsonl", run.info.run_id, tracking_uri=uri) == 0


def test_a_portfolio_agent_logs_its_trading_curves_summed_over_symbols(tmp_path: Path) -> None:
    """Portfolio infos hold arrays per symbol and weights, not a position:
    turnover and exposure are sums over the symbols (gross <= 1, long-only)."""
    from dataclasses import replace

    from tradingrl.envs import synthetic_portfolio_arrays

    uri, client, experiment = store(tmp_path)
    run = client.create_run(experiment)
    markets = list(synthetic_portfolio_arrays(3, 300, 5))
    train_agent(markets, markets, replace(SETTINGS, env="portfolio"), seed=0,
                out_dir=tmp_path / "agent", env_kwargs=ENV,
                sb3_logger=mlflow_logger(run.info.run_id, prefix="p/", tracking_uri=uri))
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged["p/trade/turnover_per_step"] > 0.0
    assert logged["p/trade/cost_per_step"] > 0.0
    # An untrained long-only portfolio holds about N / (N + 1) of equity in stock.
    assert 0.3 < logged["p/trade/mean_abs_position"] <= 1.0 + 1e-6


def test_the_curve_plots_hold_the_seeds_spread_per_step(tmp_path: Path) -> None:
    import pandas as pd

    from tradingrl.agents.curves import write_curve_plots

    first, second = tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"
    first.write_text('{"step": 256, "values": {"eval/mean_reward": 0.5, "train/loss": 1.0}}\n'
                     '{"step": 512, "values": {"eval/mean_reward": 0.25}}\n'
                     '{"step": 512, "values": {"eval/mean_reward": 0.75}}\n')  # resumed: last wins
    # Seed 1 stopped after one validation and never logged a trading record.
    second.write_text('{"step": 256, "values": {"eval/mean_reward": -0.5}}\n')
    written = write_curve_plots({1: second, 0: first}, tmp_path / "plots")
    assert [p.name for p in written] == ["validation_reward.csv", "training_reward.csv",
                                         "turnover_per_step.csv"]
    validation = pd.read_csv(tmp_path / "plots" / "validation_reward.csv")
    assert list(validation.columns) == ["step", "seeds_mean", "seeds_min", "seeds_max"]
    assert validation["step"].tolist() == [256, 512]
    assert validation["seeds_mean"].tolist() == [0.0, 0.75]  # step 512: seed 0 alone
    assert validation["seeds_min"].tolist() == [-0.5, 0.75]
    assert validation["seeds_max"].tolist() == [0.5, 0.75]
    turnover = pd.read_csv(tmp_path / "plots" / "turnover_per_step.csv")
    assert list(turnover.columns) == ["step", "seeds_mean", "seeds_min", "seeds_max"]
    assert turnover.empty
