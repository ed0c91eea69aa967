"""Agent training: a planted signal is learned, checkpoints resume, SAC/TD3 run,
and the evaluation reports the env's own numbers."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.markets import random_market
from tradingrl.agents import (
    AgentSettings,
    algorithm_classes,
    evaluate_policy_on,
    latest_checkpoint,
    make_env_fn,
    make_vec_env_for,
    train_agent,
    train_seeds,
)
from tradingrl.agents.reference import ConstantPolicy, RandomPolicy
from tradingrl.envs import DEFAULT_PREDICTION_COLUMNS, ExecutionCosts, MarketArrays

LOW_COSTS = ExecutionCosts(commission_bps=0.5, spread_bps=0.5, impact_coef=0.0,
                           participation_limit=1.0)
TRAIN_KWARGS: dict[str, Any] = {"window": 1, "costs": LOW_COSTS, "random_start": True,
                                "max_steps": 64}
PPO_FAST: dict[str, Any] = {"n_steps": 64, "batch_size": 32, "n_epochs": 4}


def planted_market(n: int, seed: int, *, move: float = 0.01) -> MarketArrays:
    """Bars opening at the previous close and moving +-``move`` (log) open-to-close
    at random; the prediction columns at bar t hold the sign of bar t+1's move,
    the bar a decision at t fills in (at its open) and is marked at (its close).
    The features are noise."""
    rng = np.random.default_rng(seed)
    moves = np.where(rng.random(n) < 0.5, move, -move)
    close = 100.0 * np.exp(np.cumsum(moves))
    open_ = np.concatenate([[100.0], close[:-1]])
    sign_next = np.zeros(n)
    sign_next[:-1] = np.sign(moves[1:])
    predictions = np.column_stack([
        (sign_next < 0).astype(float),  # p_down
        np.zeros(n),  # p_flat
        (sign_next > 0).astype(float),  # p_up
        0.01 * sign_next,  # expected_return
        np.ones(n),  # confidence
    ])
    return MarketArrays(
        symbol="PLANTED", open=open_, high=np.maximum(open_, close) * 1.001,
        low=np.minimum(open_, close) * 0.999, close=close, volume=np.full(n, 1e9),
        features=rng.normal(size=(n, 1)), feature_names=("noise",),
        predictions=predictions, prediction_names=DEFAULT_PREDICTION_COLUMNS)


def tiny_settings(**overrides: Any) -> AgentSettings:
    base: dict[str, Any] = {
        "total_timesteps": 128, "eval_freq": 64, "checkpoint_freq": 64, "patience": None,
        "policy_kwargs": {"net_arch": [16]}, "algorithm_kwargs": PPO_FAST,
    }
    base.update(overrides)
    return AgentSettings(**base)


# ------------------------------------------------------------------ behaviour
def test_ppo_learns_a_planted_signal_better_than_random_and_flat(tmp_path: Path) -> None:
    train, val, test = planted_market(400, 1), planted_market(150, 2), planted_market(200, 3)
    settings = AgentSettings(
        total_timesteps=3_000, eval_freq=1_000, checkpoint_freq=10_000, patience=None,
        learning_rate=3e-3, policy_kwargs={"net_arch": [32, 32]},
        algorithm_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 10, "gamma": 0.0,
                          "ent_coef": 0.0})
    agent = train_agent(train, val, settings, seed=0, out_dir=tmp_path, env_kwargs=TRAIN_KWARGS)

    learned = evaluate_policy_on(test, agent.model, TRAIN_KWARGS)["total_log_return"]
    best = evaluate_policy_on(test, ConstantPolicy(0.0), TRAIN_KWARGS)  # flat: exactly 0
    random_mean = np.mean([evaluate_policy_on(test, RandomPolicy(s), TRAIN_KWARGS)
                           ["total_log_return"] for s in range(5)])
    assert best["total_log_return"] == 0.0
    # Perfect foresight earns ~0.01 a bar over ~200 bars; demand a large share of it.
    assert learned > 1.0
    assert learned > random_mean + 0.5
    assert agent.best_val_mean_reward > 0.5
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["kept_untrained"] is False and done["improvement_t"] >= 2.0  # params' default


def test_an_agent_that_learned_nothing_significant_keeps_the_untrained_policy(
        tmp_path: Path) -> None:
    """Noise features, noise returns: whatever checkpoint validated best, it
    does not beat the untrained policy (action 0: flat here) by a t of 2 on
    validation, so the seed's best model is the untrained one, byte for
    byte, and its validation score is the untrained policy's (0: flat)."""
    market = random_market(300, seed=5, n_features=2)
    settings = tiny_settings(total_timesteps=512, eval_freq=128, checkpoint_freq=512,
                             learning_rate=3e-3)
    agent = train_agent(market, random_market(150, seed=6, n_features=2), settings, seed=0,
                        out_dir=tmp_path, env_kwargs={"window": 2, "costs": ExecutionCosts()})
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["kept_untrained"] is True, done
    assert (tmp_path / "best_model.zip").read_bytes() == (
        tmp_path / "initial_model.zip").read_bytes()
    assert agent.best_val_mean_reward == 0.0
    # The rule off: the best validation checkpoint stays, whatever its margin.
    off = train_agent(market, random_market(150, seed=6, n_features=2),
                      tiny_settings(total_timesteps=512, eval_freq=128, checkpoint_freq=512,
                                    learning_rate=3e-3, min_improvement_t=None),
                      seed=0, out_dir=tmp_path / "off",
                      env_kwargs={"window": 2, "costs": ExecutionCosts()})
    assert json.loads((tmp_path / "off" / "done.json").read_text())["kept_untrained"] is None
    assert off.best_val_mean_reward >= 0.0


def test_the_t_rule_holds_a_portfolio_agent_to_its_one_book(tmp_path: Path) -> None:
    """A portfolio agent's trained checkpoint must beat its untrained policy
    by the t of the one book's per-bar difference, as a single-asset agent's
    must beat its own: the rule is applied (kept_untrained is not None), and
    a policy compared with itself has no t (NaN)."""
    from tradingrl.agents.training import validation_improvement

    def markets(seed: int, n: int) -> list[MarketArrays]:
        return [random_market(n, seed=seed + k, symbol=f"S{k}", n_features=2,
                              timestamps_from="2020-01-01") for k in range(2)]

    env = {"window": 2, "costs": ExecutionCosts()}
    settings = tiny_settings(total_timesteps=512, eval_freq=128, checkpoint_freq=512,
                             learning_rate=3e-3, env="portfolio")
    train_agent(markets(5, 300), markets(7, 150), settings, seed=0, out_dir=tmp_path,
                env_kwargs=env)
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["kept_untrained"] in (True, False), done
    if done["kept_untrained"]:
        assert (tmp_path / "best_model.zip").read_bytes() == (
            tmp_path / "initial_model.zip").read_bytes()
    else:
        assert done["improvement_t"] >= settings.min_improvement_t
    class Fixed:  # a portfolio action: 2 symbols plus cash, long-only
        def __init__(self, action: list[float]) -> None:
            self.action = np.asarray(action, dtype=np.float32)

        def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
            return self.action, None

    flat, long = Fixed([-1.0, -1.0, 1.0]), Fixed([1.0, 1.0, -1.0])  # all cash; half in each
    assert math.isnan(validation_improvement(flat, flat, markets(7, 150), env,
                                             kind="portfolio"))
    assert math.isfinite(validation_improvement(long, flat, markets(7, 150), env,
                                                kind="portfolio"))


def test_evaluate_flat_policy_is_zero_and_long_policy_reports_env_numbers() -> None:
    market = planted_market(120, 7)
    flat = evaluate_policy_on(market, ConstantPolicy(0.0), {"window": 1, "costs": LOW_COSTS})
    assert flat["total_log_return"] == 0.0
    assert flat["n_trades"] == 0 and flat["turnover"] == 0.0
    assert flat["final_equity_ratio"] == 1.0 and flat["max_drawdown"] == 0.0
    assert flat["n_steps"] == 120 - 3  # decision bars 2 (after sigma warm-up) .. 118

    long = evaluate_policy_on(market, ConstantPolicy(1.0),
                              {"window": 1, "costs": ExecutionCosts.zero(), "random_start": True,
                               "max_steps": 5})  # switched off: one episode over the span
    assert long["n_steps"] == 117 and long["n_trades"] >= 1
    assert long["total_log_return"] == pytest.approx(math.log(long["final_equity_ratio"]))
    # Fully long from the open of bar 3 with no costs: equity follows the price.
    expected = math.log(1.0 + (market.close[-1] - market.open[3]) / market.close[2])
    assert long["total_log_return"] == pytest.approx(expected, rel=1e-6)
    assert long["max_drawdown"] > 0.0


# ------------------------------------------------------------------ checkpoints and resume
class Killed(RuntimeError):
    """Stands for the process being killed mid-training."""


def kill_at(calls: int) -> Any:
    """An SB3 callback that raises :class:`Killed` at its ``calls``-th step,
    after the checkpoint of that step is written (callbacks run in order)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Kill(BaseCallback):
        def _on_step(self) -> bool:
            if self.n_calls >= calls:
                raise Killed(f"killed at call {self.n_calls}")
            return True

    return Kill()


def count_steps() -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class CountSteps(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def _on_step(self) -> bool:
            self.calls += 1
            return True

    return CountSteps()


def test_a_finished_run_writes_its_best_model_and_is_read_back_not_retrained(tmp_path):
    market = planted_market(200, 4)
    first = train_agent(market, market, tiny_settings(), seed=3, out_dir=tmp_path,
                        env_kwargs=TRAIN_KWARGS)
    assert first.timesteps == 128 and first.resumed_from is None and not first.reused
    assert first.best_model_path == tmp_path / "best_model.zip"
    assert first.best_model_path.is_file()
    assert math.isfinite(first.best_val_mean_reward)
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "agent_128_steps.zip"
    with np.load(tmp_path / "evaluations.npz") as history:
        assert list(history["timesteps"]) == [0, 64, 128]  # 0: the untrained policy

    counter = count_steps()
    again = train_agent(market, market, tiny_settings(), seed=3, out_dir=tmp_path,
                        env_kwargs=TRAIN_KWARGS, callbacks=[counter])
    assert again.reused and counter.calls == 0
    assert (again.timesteps, again.best_val_mean_reward) == (128, first.best_val_mean_reward)
    # A finished folder is never extended, neither with other settings nor another env.
    with pytest.raises(ValueError, match="other settings"):
        train_agent(market, market, tiny_settings(total_timesteps=256), seed=3,
                    out_dir=tmp_path, env_kwargs=TRAIN_KWARGS)
    with pytest.raises(ValueError, match="other settings"):
        train_agent(market, market, tiny_settings(), seed=3, out_dir=tmp_path,
                    env_kwargs={**TRAIN_KWARGS, "window": 2})


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    market = planted_market(200, 4)
    with pytest.raises(Killed):
        train_agent(market, market, tiny_settings(total_timesteps=256), seed=3,
                    out_dir=tmp_path, env_kwargs=TRAIN_KWARGS, callbacks=[kill_at(128)])
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "agent_128_steps.zip"
    assert not (tmp_path / "done.json").exists()
    with np.load(tmp_path / "evaluations.npz") as history:
        assert list(history["timesteps"]) == [0, 64, 128]  # 0: the untrained policy
        best_before = float(np.max(history["results"].mean(axis=1)))

    counter = count_steps()
    second = train_agent(market, market, tiny_settings(total_timesteps=256), seed=3,
                         out_dir=tmp_path, env_kwargs=TRAIN_KWARGS, callbacks=[counter])
    assert second.resumed_from == tmp_path / "checkpoints" / "agent_128_steps.zip"
    assert second.timesteps == 256 and not second.reused
    assert counter.calls == 128  # continued from 128, did not restart at 0
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "agent_256_steps.zip"
    with np.load(tmp_path / "evaluations.npz") as history:
        assert list(history["timesteps"]) == [0, 64, 128, 192, 256]
    assert second.best_val_mean_reward >= best_before

    third = train_agent(market, market, tiny_settings(total_timesteps=256), seed=3,
                        out_dir=tmp_path, env_kwargs=TRAIN_KWARGS)
    assert third.reused and third.timesteps == 256  # done: nothing more is trained


def test_an_early_stopped_seed_stays_as_it_stopped(tmp_path: Path) -> None:
    """A seed that stopped early is finished: a rerun reads it back instead of
    training on to total_timesteps (which made the same params give other
    agents on every rerun)."""
    market = planted_market(200, 6)
    settings = tiny_settings(total_timesteps=2_000, patience=1, min_evals=1,
                             learning_rate=1e-12, checkpoint_freq=64)
    stopped = train_agent(market, market, settings, seed=0, out_dir=tmp_path,
                          env_kwargs=TRAIN_KWARGS)
    assert stopped.timesteps < 2_000
    weights = (tmp_path / "best_model.zip").read_bytes()
    counter = count_steps()
    rerun = train_agent(market, market, settings, seed=0, out_dir=tmp_path,
                        env_kwargs=TRAIN_KWARGS, callbacks=[counter])
    assert rerun.reused and counter.calls == 0 and rerun.timesteps == stopped.timesteps
    assert rerun.best_val_mean_reward == stopped.best_val_mean_reward
    assert (tmp_path / "best_model.zip").read_bytes() == weights


@pytest.mark.parametrize("algorithm", ["sac", "td3"])
def test_off_policy_algorithms_train_and_save_replay_buffers(algorithm: str,
                                                             tmp_path: Path) -> None:
    market = planted_market(200, 5)
    settings = AgentSettings(
        algorithm=algorithm, total_timesteps=300, eval_freq=150, checkpoint_freq=150,
        patience=None, policy_kwargs={"net_arch": [16]},
        algorithm_kwargs={"learning_starts": 100, "buffer_size": 1_000, "batch_size": 32})
    agent = train_agent(market, market, settings, seed=0, out_dir=tmp_path,
                        env_kwargs=TRAIN_KWARGS)
    assert agent.timesteps == 300
    assert type(agent.model).__name__ == algorithm.upper()
    assert agent.best_model_path.is_file()
    assert (tmp_path / "checkpoints" / "agent_replay_buffer_300_steps.pkl").is_file()
    metrics = evaluate_policy_on(market, agent.model, TRAIN_KWARGS)
    assert metrics["n_steps"] == len(market) - 3

    longer = dataclasses.replace(settings, total_timesteps=450)
    with pytest.raises(Killed):  # killed right after the checkpoint at 300 steps
        train_agent(market, market, longer, seed=0, out_dir=tmp_path / "killed",
                    env_kwargs=TRAIN_KWARGS, callbacks=[kill_at(300)])
    resumed = train_agent(market, market, longer, seed=0, out_dir=tmp_path / "killed",
                          env_kwargs=TRAIN_KWARGS)
    assert resumed.timesteps == 450
    # The saved buffer was loaded, not refilled (150 new steps alone would give 150);
    # SB3 saves it in on_step, before that step's transition is stored: 299 + 150.
    assert resumed.model.replay_buffer.size() == 449


# ------------------------------------------------------------------ plumbing
def test_env_factory_pickles_and_subprocess_vec_env_runs() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    market = planted_market(80, 8)
    factory = pickle.loads(pickle.dumps(make_env_fn(market, window=2)))
    env = factory()
    assert type(env).__name__ == "Monitor" and env.unwrapped.window == 2

    single = make_vec_env_for(market, {"window": 1}, n_envs=1, seed=0)
    assert isinstance(single, DummyVecEnv)
    single.close()
    batched = make_vec_env_for(market, {"window": 1}, n_envs=2, seed=0)  # vec_env "dummy"
    assert isinstance(batched, DummyVecEnv) and batched.num_envs == 2
    batched.close()
    with pytest.raises(ValueError, match="vec_env"):
        make_vec_env_for(market, {"window": 1}, n_envs=2, seed=0, vec_env="threads")
    vec = make_vec_env_for(market, {"window": 1, "random_start": True}, n_envs=2, seed=0,
                           vec_env="subproc")
    try:
        assert isinstance(vec, SubprocVecEnv) and vec.num_envs == 2
        vec.reset()
        _, rewards, _, infos = vec.step(np.ones((2, 1), dtype=np.float32))
        assert rewards.shape == (2,)
        assert all(r == pytest.approx(i["log_return"]) for r, i in zip(rewards, infos, strict=True))
    finally:
        vec.close()


def test_train_seeds_reports_mean_std_and_trial_count(tmp_path: Path) -> None:
    market = planted_market(150, 9)
    results = train_seeds(market, market, tiny_settings(seeds=(0, 1)), out_dir=tmp_path,
                          env_kwargs=TRAIN_KWARGS)
    values = [a.best_val_mean_reward for a in results.agents]
    assert results.n_trials == 2 and [a.seed for a in results.agents] == [0, 1]
    assert results.val_mean == pytest.approx(np.mean(values))
    assert results.val_std == pytest.approx(np.std(values, ddof=1))
    assert (tmp_path / "seed_0" / "best_model.zip").is_file()
    assert (tmp_path / "seed_1" / "best_model.zip").is_file()


def test_seeds_trained_in_worker_processes_equal_the_serial_seeds(tmp_path: Path) -> None:
    from tradingrl.agents.curves import file_logger
    from tradingrl.orchestration import TaskRunnerSettings

    market = planted_market(150, 9)
    settings = tiny_settings(seeds=(0, 1))
    results = {}
    for name, runner in (("serial", None),
                         ("processes", TaskRunnerSettings(kind="processes", max_workers=2))):
        out = tmp_path / name
        results[name] = train_seeds(
            market, market, settings, out_dir=out, env_kwargs=TRAIN_KWARGS, runner=runner,
            logger_for_seed=lambda seed, out=out: file_logger(out / f"log_{seed}.jsonl"))
    serial, parallel = results["serial"], results["processes"]
    # Trained by the workers, read back here, reported as the workers' runs.
    assert [(a.reused, a.resumed_from) for a in parallel.agents] == [(False, None)] * 2
    assert [(a.reused, a.resumed_from) for a in serial.agents] == [(False, None)] * 2
    assert ([a.best_val_mean_reward for a in parallel.agents]
            == [a.best_val_mean_reward for a in serial.agents])
    assert parallel.val_std == serial.val_std and parallel.val_std > 0.0
    for seed in (0, 1):
        with np.load(tmp_path / "serial" / f"seed_{seed}" / "evaluations.npz") as a, \
                np.load(tmp_path / "processes" / f"seed_{seed}" / "evaluations.npz") as b:
            assert np.array_equal(a["results"], b["results"])
        # The training log, written in the worker, is the serial one (but
        # for its clock: frames per second, time elapsed).
        logs = [[{k: v for k, v in json.loads(line)["values"].items()
                  if k not in ("time/fps", "time/time_elapsed")} | {"step": json.loads(line)["step"]}
                 for line in (tmp_path / name / f"log_{seed}.jsonl").read_text().splitlines()]
                for name in ("serial", "processes")]
        assert logs[0] == logs[1] and len(logs[0]) >= 2


@pytest.mark.parametrize("bad", [
    {"algorithm": "dqn"}, {"total_timesteps": 0}, {"seeds": ()}, {"seeds": (1, 1)},
    {"patience": 0}, {"learning_rate": -1.0},
])
def test_settings_refuse_invalid_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AgentSettings(**bad)


def test_settings_default_to_ppo_with_three_seeds() -> None:
    settings = AgentSettings()
    assert settings.algorithm == "ppo" and len(settings.seeds) == 3


def test_a_checkpoint_cut_short_by_a_kill_is_skipped(tmp_path, caplog):
    """A process killed while writing agent_<n>_steps.zip leaves a zip with no
    central directory; resuming takes the complete one before it."""
    import zipfile

    directory = tmp_path / "checkpoints"
    directory.mkdir()
    with zipfile.ZipFile(directory / "agent_128_steps.zip", "w") as archive:
        archive.writestr("data", "complete")
    with zipfile.ZipFile(directory / "agent_256_steps.zip", "w") as archive:
        archive.writestr("data", "x" * 1000)
    whole = (directory / "agent_256_steps.zip").read_bytes()
    (directory / "agent_256_steps.zip").write_bytes(whole[: len(whole) // 2])
    with caplog.at_level("WARNING"):
        assert latest_checkpoint(tmp_path) == directory / "agent_128_steps.zip"
    assert "agent_256_steps.zip is incomplete" in caplog.text
    (directory / "agent_128_steps.zip").write_bytes(b"")
    assert latest_checkpoint(tmp_path) is None


def test_resume_after_a_kill_mid_write_keeps_a_whole_best_model(tmp_path):
    """A kill while the validation history and best model are written: the
    best model is never half-written (saved to a temporary name, then
    renamed), a cut-short history restarts, and the score to beat on resume is
    the saved best model's own, validated again."""
    market = planted_market(200, 4)
    with pytest.raises(Killed):
        train_agent(market, market, tiny_settings(total_timesteps=256), seed=3,
                    out_dir=tmp_path, env_kwargs=TRAIN_KWARGS, callbacks=[kill_at(128)])
    assert not list(tmp_path.glob(".*.tmp.zip"))  # the temporary file was renamed
    history = tmp_path / "evaluations.npz"
    with np.load(history) as old:
        best_before = float(np.max(old["results"].mean(axis=1)))
    whole = history.read_bytes()
    history.write_bytes(whole[: len(whole) // 2])  # killed while np.savez wrote it
    second = train_agent(market, market, tiny_settings(total_timesteps=256), seed=3,
                         out_dir=tmp_path, env_kwargs=TRAIN_KWARGS)
    assert second.resumed_from == tmp_path / "checkpoints" / "agent_128_steps.zip"
    assert second.best_val_mean_reward >= best_before
    loaded = algorithm_classes()["ppo"].load(second.best_model_path, device="cpu")
    assert loaded.num_timesteps > 0


def test_from_params_merges_the_algorithms_own_policy_kwargs() -> None:
    """params.yaml's PPO entry carries log_std_init, which TD3's policy
    refuses: it reaches PPO's policy_kwargs only."""
    from tradingrl.params import load_params

    params = load_params("train_agent", Path(__file__).resolve().parents[2] / "params.yaml")
    ppo = AgentSettings.from_params(params)
    assert ppo.policy_kwargs["log_std_init"] == params["algorithm_kwargs"]["ppo"][
        "policy_kwargs"]["log_std_init"]
    assert "policy_kwargs" not in ppo.algorithm_kwargs
    assert ppo.policy_kwargs["net_arch"] == params["policy_kwargs"]["net_arch"]
    td3 = AgentSettings.from_params({**params, "algorithm": "td3"})
    assert "log_std_init" not in td3.policy_kwargs
