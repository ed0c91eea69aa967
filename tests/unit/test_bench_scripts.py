"""Smoke tests of benchmarks/bench_sb3_training.py: its options, the step
accounting it checks SB3 against, and one tiny real run."""

from __future__ import annotations

import pytest

from benchmarks import bench_sb3_training as bench


def test_defaults_and_quick() -> None:
    args = bench.parse_args([])
    assert args.algorithms == ("ppo", "sac", "td3")
    assert args.n_envs == (1, 2, 4)
    assert (args.repeats, args.warmup, args.env_steps, args.torch_threads) == (3, 300, 20_000, 1)
    assert args.timesteps is None
    assert args.vec_env == "auto"
    quick = bench.parse_args(["--quick"])
    assert (quick.repeats, quick.warmup, quick.env_steps) == (1, 200, 5000)
    # Explicit values win over --quick.
    assert bench.parse_args(["--quick", "--repeats", "2"]).repeats == 2
    parsed = bench.parse_args(["--algorithms", "TD3,ppo", "--n-envs", "2,1", "--timesteps", "99"])
    assert parsed.algorithms == ("td3", "ppo")
    assert parsed.n_envs == (2, 1)
    assert bench.timesteps_for("sac", parsed.timesteps, quick=False) == 99
    assert bench.timesteps_for("sac", None, quick=False) == 500
    assert bench.timesteps_for("ppo", None, quick=True) == 2048


@pytest.mark.parametrize("argv, message", [
    (["--algorithms", "ppo,a2c"], "a2c"),
    (["--n-envs", "1,0"], "values must be >= 1"),
    (["--n-envs", "1,x"], "comma-separated ints"),
    (["--timesteps", "0"], "must be >= 1"),
    (["--warmup", "100"], "must exceed learning_starts"),
    (["--vec-env", "ray"], "invalid choice"),
])
def test_bad_options_exit_with_a_message(argv: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_steps_learn_runs_rounds_to_sb3_units() -> None:
    # PPO: whole rollouts of 2048 x n_envs.
    assert bench.steps_learn_runs("ppo", 8192, 1) == 8192
    assert bench.steps_learn_runs("ppo", 8192, 4) == 8192
    assert bench.steps_learn_runs("ppo", 3000, 1) == 4096
    assert bench.steps_learn_runs("ppo", 3000, 2) == 4096
    assert bench.steps_learn_runs("ppo", 3000, 4) == 8192
    # SAC/TD3: whole VecEnv.step calls of n_envs.
    assert bench.steps_learn_runs("sac", 400, 4) == 400
    assert bench.steps_learn_runs("td3", 401, 4) == 404
    assert bench.steps_learn_runs("sac", 7, 1) == 7


def test_buffer_is_capped_at_one_million() -> None:
    assert bench.algorithm_kwargs("sac", 5000)["buffer_size"] == 5000
    assert bench.algorithm_kwargs("td3", 2_000_000)["buffer_size"] == 1_000_000
    assert bench.algorithm_kwargs("ppo", 5000) == {"n_steps": 2048, "batch_size": 64,
                                                   "n_epochs": 10}


def test_table_reports_median_range_and_env_share() -> None:
    result = bench.Result(algorithm="sac", n_envs=2, vec_env="SubprocVecEnv", steps_per_call=400,
                          rates=(300.0, 100.0, 200.0), seconds=(1.0, 4.0, 2.0),
                          update_share=87.4, env_only_rate=10_000.0)
    assert result.median_rate == 200.0
    assert result.env_share == pytest.approx(2.0)  # 200 / 10,000 steps/s
    row = bench.format_table([result]).splitlines()[2]
    assert row == "| SAC | 2 | Subproc | 400 | 200 | 100–300 | 2.00 | 87 | 10,000 | 2.0 |"


@pytest.fixture
def one_torch_thread():
    """As the script's default: on a busy 2-core machine two intra-op threads
    make a gradient step up to ~100x slower. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("vec_env, n_envs, steps, expected_class", [
    ("auto", 1, 3, "DummyVecEnv"),
    ("dummy", 2, 4, "DummyVecEnv"),  # 3 asked, rounded up to 2 VecEnv.step calls of 2 envs
])
def test_tiny_real_run_counts_the_steps_sb3_took(vec_env: str, n_envs: int, steps: int,
                                                 expected_class: str) -> None:
    # SAC: 102 warm-up steps (past learning_starts 100, so gradient steps run),
    # then two timed calls of 3 requested steps; bench_one raises if SB3 ran
    # another count than steps_learn_runs predicts.
    result = bench.bench_one("sac", n_envs, timesteps=3, repeats=2, warmup=102, env_steps=200,
                             vec_env=vec_env)
    assert result.steps_per_call == steps
    assert result.vec_env == expected_class
    assert len(result.rates) == len(result.seconds) == 2
    for rate, seconds in zip(result.rates, result.seconds, strict=True):
        assert rate == pytest.approx(steps / seconds)
    # Past learning_starts every VecEnv.step call takes a gradient step, timed as updates.
    assert 0.0 < result.update_share < 100.0
    assert result.env_only_rate > 0.0
