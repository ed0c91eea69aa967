"""Smoke tests of the benchmark scripts: bench_sb3_training.py (its options,
the step accounting it checks SB3 against, one tiny real run) and the
trading-policy latency benchmarks (options, the one-line refusal without a
bundle, windows, the cProfile breakdown) and bench_null_gate.py (one tiny
market through the gate)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import (
    bench_null_gate,
    bench_policy_latency,
    bench_policy_latency_http,
    policy_latency,
)
from benchmarks import bench_sb3_training as bench

REPO_ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.usefixtures("one_torch_thread")  # as the script's default (tests/conftest.py)
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


# ------------------------------------------------------------- policy latency
@pytest.mark.parametrize("script", [bench_policy_latency, bench_policy_latency_http])
def test_policy_latency_options(script, capsys: pytest.CaptureFixture[str]) -> None:
    args = script.parse_args([])
    assert (args.bundle, args.data) == ("models/trading_policy", "data/validated/ohlcv.parquet")
    assert (args.symbols, args.calls, args.warmup) == ([1, 8], 200, 5)
    assert script.parse_args(["--symbols", "8", "1", "8"]).symbols == [8, 1]
    for argv, message in ((["--symbols", "0"], "--symbols must be >= 1"),
                          (["--calls", "0"], "--calls and --warmup must be >= 1")):
        with pytest.raises(SystemExit) as exc:
            script.parse_args(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    if script is bench_policy_latency_http:
        assert args.port == 0
        with pytest.raises(SystemExit):
            script.parse_args(["--port", "70000"])
    else:
        assert args.no_code_check is False


@pytest.mark.parametrize("module", ["bench_policy_latency", "bench_policy_latency_http"])
def test_policy_latency_without_a_bundle_says_so_in_one_line(module: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--bundle", str(tmp_path / "missing")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"{tmp_path / 'missing'} holds no trading-policy bundle "
                             "(policy.json): run `make run` (stage promote writes "
                             "models/trading_policy) or pass --bundle DIR\n")


def test_windows_end_at_distinct_bars_and_cycle() -> None:
    stamps = pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC")
    bars = pd.DataFrame({"timestamp": np.tile(stamps, 2), "symbol": ["A"] * 10 + ["B"] * 10,
                         "close": np.arange(20.0)})
    wins = policy_latency.windows(bars, n_symbols=2, min_bars=8, count=4)
    assert [len(w) for w in wins] == [16] * 4
    last = [w.groupby("symbol")["timestamp"].max().tolist() for w in wins]
    # 3 distinct windows of 8 bars in 10; the 4th repeats the first.
    assert last[:3] == [[stamps[9]] * 2, [stamps[8]] * 2, [stamps[7]] * 2]
    assert last[3] == last[0]
    assert policy_latency.windows(bars, 1, 8, 1)[0]["symbol"].unique().tolist() == ["A"]


def _inner(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _outer(n: int) -> float:
    return sum(_inner(0.002) for _ in range(n))


class _Owner:
    def method(self) -> int:
        return 1


def test_profile_call_times_parts_with_their_subcalls() -> None:
    parts = {"outer": policy_latency.code_of(_outer), "inner": policy_latency.code_of(_inner),
             "method": policy_latency.code_of(_Owner().method)}
    result, ms, calls = policy_latency.profile_call(lambda: _outer(3), parts)
    assert result == pytest.approx(0.006)
    assert calls == {"outer": 1, "inner": 3, "method": 0}
    assert 6.0 <= ms["inner"] <= ms["outer"]  # three sleeps of 2 ms, inside outer
    assert ms["method"] == 0.0
    assert policy_latency.code_of(functools.partial(_inner, 0.0)) is _inner.__code__
    assert policy_latency.code_of(_Owner.method) is _Owner.method.__code__
    with pytest.raises(TypeError, match="not a Python function"):
        policy_latency.code_of(len)


# ------------------------------------------------------------------ null gate
@pytest.mark.usefixtures("one_torch_thread")  # the script sets torch's threads to params' 1
def test_null_gate_tiny_run_writes_every_market(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = bench_null_gate.parse_args([])
    assert (args.markets, args.symbols, args.bars, args.predictions) == (50, 4, 1600, "cnn_lstm")
    assert bench_null_gate.market_seeds(0, 3) == bench_null_gate.market_seeds(0, 5)[:3]
    low, high = bench_null_gate.clopper_pearson(0, 50)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 50))  # 7.1%
    out = tmp_path / "null_gate.json"
    bench_null_gate.main(["--markets", "1", "--symbols", "2", "--bars", "400",
                          "--predictions", "noise", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "false promotions: " in printed and "DSR: median " in printed
    result = json.loads(out.read_text())
    assert result["complete"] is True
    assert result["summary"]["markets"] == len(result["markets"]) == 1
    market = result["markets"][0]
    assert set(bench_null_gate.CHECKS) <= set(market["checks"])
    assert market["promoted"] == all(c["passed"] for c in market["checks"].values())
    assert market["trials"]["n_trials"] >= 3  # at least params.yaml's three seeds


def test_agent_ablation_tiny_run_judges_each_configuration(tmp_path: Path) -> None:
    """Two configurations on a tiny random walk with a tiny budget: one row
    each, with the gate's decision and the supervised baseline's numbers; a
    residual agent that learned nothing significant trades the supervised
    baseline (same Sharpe and turnover)."""
    from benchmarks import bench_agent_ablation

    out = tmp_path / "ablation.json"
    bench_agent_ablation.main([
        "--market", "random_walk", "--symbols", "2", "--bars", "400", "--model", "noise",
        "--configs", "shipped", "target",
        "--set", "total_timesteps=512", "eval_freq=256", "checkpoint_freq=512",
        "seeds=[0, 1]", "algorithm_kwargs.ppo.n_steps=128", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert [r["config"] for r in rows] == ["shipped", "target"]
    for row in rows:
        assert row["promoted"] is False and "dsr" in row["failed_checks"]
        assert len(row["per_fold_sharpe"]) >= 1
    shipped = rows[0]
    supervised = shipped["baselines"]["supervised"]
    assert shipped["policy"]["sharpe"] == supervised["sharpe"]
    assert shipped["policy_turnover_per_exposure"] == supervised["turnover_per_exposure"]
    with pytest.raises(SystemExit):
        bench_agent_ablation.parse_args(["--configs", "nonsense"])


def test_agent_search_in_the_walk_forward_is_the_same_on_worker_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk-forward with the agent search on (2 trials a fold): run one
    piece at a time (the threads runner) and on two worker processes (the
    stage's default: each fold's search, then its seeds, as pieces), the
    figures, the trials' scores and the chosen settings are the same, and the
    search's trials multiply the DSR's N."""
    from benchmarks import bench_agent_ablation
    from tradingrl.parallel import RUNNER_ENV

    rows = {}
    for kind in ("threads", "processes"):
        monkeypatch.setenv(RUNNER_ENV, json.dumps({"kind": kind, "max_workers": 2}))
        out = tmp_path / f"{kind}.json"
        bench_agent_ablation.main([
            "--market", "random_walk", "--symbols", "2", "--bars", "400", "--model", "noise",
            "--configs", "shipped",
            "--set", "total_timesteps=512", "eval_freq=256", "checkpoint_freq=512",
            "seeds=[0, 1]", "algorithm_kwargs.ppo.n_steps=128", "search.n_trials=2",
            "search.timesteps=256", "--out", str(out)])
        row = json.loads(out.read_text())["results"][0]
        row.pop("seconds", None), row.pop("inputs_seconds", None)  # wall times
        rows[kind] = row
    assert rows["processes"] == rows["threads"]
    assert rows["threads"]["n_trials"] == 2 * 2  # agent trials x seeds
    searches = rows["threads"]["agent_search"]
    assert searches and all(s["n_trials"] == 2 and len(s["trials"]) == 2 for s in searches)


def test_planted_edges_measure_the_planted_sign_and_count_the_span():
    """benchmarks.planted_edges: the lag-1 coefficient it measures has the
    planted sign and size (0.3), the one-bar rule's gross edge is positive
    on both lag-1 markets, and a span keeps only the pairs of bars inside it."""
    from benchmarks.planted_edges import market_edges

    momentum, reversion = market_edges("momentum", 1), market_edges("reversion", 1)
    assert np.all((momentum["autocorrelation"] > 0.2) & (momentum["autocorrelation"] < 0.4))
    assert np.all((reversion["autocorrelation"] < -0.2) & (reversion["autocorrelation"] > -0.4))
    assert momentum["edge_bps"].mean() > 10.0 and reversion["edge_bps"].mean() > 10.0
    assert np.all(momentum["pairs"] == 1598)  # 1,600 bars: 1,599 returns, 1,598 pairs
    # 2014-03-28 .. 2014-08-04 holds 89 sessions (NYSE calendar): 88 pairs.
    inside = market_edges("reversion", 1, span=("2014-03-28", "2014-08-04"))
    assert np.all(inside["pairs"] == 88)
    with pytest.raises(ValueError, match="pairs of bars"):
        market_edges("reversion", 1, span=("2014-03-29", "2014-03-30"))  # a weekend
