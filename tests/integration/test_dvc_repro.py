"""The pipeline in a temporary copy of the repository, on a small params
profile. :func:`check_pipeline_outputs` is what a whole run must leave behind
(outputs exist, every row is accounted for, the models are registered in the
copy's own MLflow store, the promotion decision and aliases agree; the whole
DAG runs in test_training_flow.py, through the Prefect flow); here plain
`dvc repro` of the first stages: a CSV source with a bad row quarantines it,
and too many bad rows fail the validate stage with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tradingrl.features.contract import feature_schema

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def sh(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def numba_cache_files() -> list[Path]:
    """The checkout's numba cache of the feature kernels (compiled here first
    when absent), relative to REPO. Compiling them takes ~50 s of one core;
    a copy that carries the cache loads it in a second instead. Numba checks
    each cache entry against its source file's modification time and size,
    which ``shutil.copy2`` keeps, so a copy never loads a stale kernel: if
    the source differs, numba compiles it again."""
    import numpy as np

    from tradingrl.features.fast_features import feature_matrix

    bars = np.linspace(100.0, 110.0, 300)
    feature_matrix(bars, bars * 1.01, bars * 0.99, bars, np.full(300, 1e6))  # writes the cache
    return sorted(p.relative_to(REPO) for pattern in ("*.nbi", "*.nbc")
                  for p in (REPO / "tradingrl").rglob(f"__pycache__/{pattern}"))


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    """A git repository holding the checkout's files (tracked and untracked,
    not ignored), and the numba cache of its feature kernels."""
    files = sh(["git", "ls-files", "-co", "--exclude-standard"], REPO).stdout.split()
    dest = tmp_path / "repo"
    for name in [*files, *map(str, numba_cache_files())]:
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    sh(["git", "init", "-q"], dest)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], dest)
    return dest


def set_params(repo: Path, **sections) -> None:
    """Override params.yaml keys; a dotted key ("env.window") reaches into a mapping."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        for key, value in values.items():
            *parents, leaf = key.split(".")
            node = params[section]
            for parent in parents:
                node = node[parent]
            node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


# Small enough that the whole DAG runs in a couple of minutes on 2 cores.
# min_calibration_windows: the tiny market's first fold has about 30
# calibration windows; the default asks for 200 (real data has them).
TINY_MODEL = {"window": 20, "max_epochs": 1, "batch_size": 128, "uncertainty.mc_samples": 2,
              "uncertainty.min_calibration_windows": 20}
TINY_WALK_FORWARD = {"n_folds": 2}
TINY_AGENT = {
    "total_timesteps": 512, "seeds": [0, 1], "eval_freq": 256, "checkpoint_freq": 256,
    # One env, not params.yaml's four: four finish 512 steps so fast that the
    # training flow's kill test (test_training_flow.py) never sees a
    # checkpoint of a seed still training; the four are tested in test_agents.
    "n_envs": 1,
    "algorithm_kwargs.ppo": {"n_steps": 128, "batch_size": 64, "n_epochs": 2},
    "env.window": 5, "env.max_steps": 64,
}


TINY_INGEST = {"synthetic": {"n_symbols": 3, "n_bars": 400, "start": "2015-01-02", "seed": 3}}


def set_tiny_profile(repo: Path) -> None:
    set_params(repo, ingest=TINY_INGEST, train_model=TINY_MODEL, walk_forward=TINY_WALK_FORWARD,
               train_agent=TINY_AGENT)


def check_pipeline_outputs(repo_copy: Path) -> None:
    """What a whole run of the DAG on the tiny profile must leave behind
    (tests/integration/test_training_flow.py runs it through the Prefect flow,
    stage by stage through DVC, against an MLflow server)."""
    raw = pd.read_parquet(repo_copy / "data/raw/ohlcv.parquet")
    assert len(raw) == 1200
    report = json.loads((repo_copy / "reports/validation.json").read_text())
    assert report["rows_in"] == 1200 == report["rows_valid"] + report["rows_quarantined"]
    assert report["passed"] is True
    assert (repo_copy / "reports/data_docs/index.html").is_file()
    assert report["expectations"]["docs_index"] == "data_docs/index.html"  # no clone path inside
    features = pd.read_parquet(repo_copy / "data/features/features.parquet")
    feature_schema().validate(features)
    assert len(features) == report["rows_valid"] - 3 * 120  # warm-up dropped per symbol
    listed = json.loads((repo_copy / "data/features/feature_list.json").read_text())["features"]
    assert listed == list(features.columns[2:-3])

    model_report = json.loads((repo_copy / "reports/model_metrics.json").read_text())
    assert model_report["registered"] == {"name": "cnn-lstm", "version": "1"}
    assert (repo_copy / "mlflow.db").is_file()  # the copy's own store, absolute path

    # Out-of-fold predictions: fold k predicts only its own test block, after the first 40%.
    oof = pd.read_parquet(repo_copy / "data/predictions/oof.parquet")
    folds = json.loads((repo_copy / "data/predictions/folds.json").read_text())["folds"]
    assert sorted(oof["fold"].unique()) == [0, 1] and len(folds) == 2
    sessions = sorted(features["timestamp"].unique())
    assert oof["timestamp"].min() == sessions[int(len(sessions) * 0.4 + 0.5)]
    for fold in folds:
        assert pd.Timestamp(fold["fold"]["train_end"]) < pd.Timestamp(fold["fold"]["test_start"])
        assert fold["split"]["rows"] <= 3 * fold["fold"]["n_train_timestamps"]
    assert len(oof) == 3 * (len(sessions) - int(len(sessions) * 0.4 + 0.5))

    agent = json.loads((repo_copy / "reports/agent_metrics.json").read_text())
    assert agent["registered"] == {"name": "rl-agent", "version": "1"}
    assert [s["seed"] for s in agent["seeds"]] == [0, 1] and agent["n_trials"] == 2
    assert pd.Timestamp(agent["spans"]["train_start"]) == oof["timestamp"].min()
    assert pd.Timestamp(agent["spans"]["train_end"]) < pd.Timestamp(agent["spans"]["val_start"])
    assert {p.name for p in (repo_copy / "models/agent").iterdir()} >= {
        "agent.zip", "seed_0.zip", "seed_1.zip", "env_config.json", "scaler.json", "results.json"}
    assert agent["validation"]["flat"]["mean_total_log_return"] == 0.0
    # The seeds trained in worker processes; their training logs reached the
    # stage's MLflow run afterwards, with their steps.
    script = ("import mlflow; from tradingrl.tracking import tracking_uri; from pathlib import Path;"
              "c = mlflow.MlflowClient(tracking_uri(Path.cwd()));"
              f"print([sorted(m.step for m in c.get_metric_history({agent['mlflow_run_id']!r}, k))"
              " for k in ('seed0/train/loss', 'seed1/eval/mean_reward')])")
    loss_steps, eval_steps = json.loads(sh([str(BIN / "python"), "-c", script],
                                           repo_copy).stdout.strip().splitlines()[-1])
    trained = [seed["timesteps"] for seed in agent["seeds"]]
    assert loss_steps and loss_steps[-1] <= trained[0]
    assert eval_steps and eval_steps[-1] <= trained[1] and eval_steps == sorted(set(eval_steps))
    # The agent is logged with pinned requirements, stable-baselines3 among them.
    script = ("import mlflow; from pathlib import Path; from tradingrl.tracking import tracking_uri;"
              "mlflow.set_tracking_uri(tracking_uri(Path.cwd()));"
              "print(Path(mlflow.pyfunc.get_model_dependencies('models:/rl-agent/1'))"
              ".read_text().split())")
    requirements = sh([str(BIN / "python"), "-c", script], repo_copy).stdout.strip().splitlines()[-1]
    assert "'stable-baselines3==" in requirements and "'gymnasium==" in requirements

    # Walk-forward evaluation: fold 1 only (fold 0's block trains the first agent).
    metrics = json.loads((repo_copy / "reports/metrics.json").read_text())
    assert [f["fold"] for f in metrics["policy"]["per_fold"]] == [1]
    assert metrics["policy"]["overall"]["n_bars"] == len(sessions) - int(len(sessions) * 0.4 + 0.5) - 84
    assert set(metrics["baselines"]) == {"buy_and_hold", "flat", "sma_crossover", "supervised", "random"}
    assert metrics["baselines"]["flat"]["overall"]["total_return"] == 0.0
    assert metrics["trials"]["n_trials"] == 2
    html = (repo_copy / "reports/evaluation.html").read_text()
    assert "Policy vs baselines" in html and "<script src=" not in html  # plotly.js embedded
    equity = pd.read_csv(repo_copy / "reports/plots/equity.csv")
    assert list(equity.columns[:2]) == ["timestamp", "buy_and_hold"] and len(equity) == 84

    # Promotion: a trading-policy version is challenger; champion only if the gate passed.
    decision = json.loads((repo_copy / "reports/promotion.json").read_text())
    assert decision["decision"] in {"promoted", "refused"} and decision["version"] == "1"
    assert {c["name"] for c in decision["checks"]} == {
        "dsr", "beats_baselines", "max_drawdown", "beats_champion", "consistent_with_walk_forward"}
    script = ("import mlflow; from tradingrl.tracking import tracking_uri; from pathlib import Path;"
              "c = mlflow.MlflowClient(tracking_uri(Path.cwd()));"
              "print(sorted((k, str(v)) for k, v in"
              " c.get_registered_model('trading-policy').aliases.items()))")
    aliases = sh([str(BIN / "python"), "-c", script], repo_copy).stdout.strip()
    # str(): the SQLite store gives version numbers as int, a server as str.
    expected = [("challenger", "1")] + ([("champion", "1")] if decision["decision"] == "promoted"
                                        else [])
    assert aliases == str(sorted(expected))
    assert "Promotion: " + decision["decision"] in (repo_copy / "reports/promotion.html").read_text()
    check_what_people_see(repo_copy, metrics, decision)

    # In-process decisions from a CSV window, with the bundle the promote stage built.
    bars = pd.read_parquet(repo_copy / "data/validated/ohlcv.parquet")
    window = bars[bars["symbol"] == bars["symbol"].iloc[0]].tail(200)
    window.to_csv(repo_copy / "window.csv", index=False)
    printed = sh([str(BIN / "tradingrl"), "predict", "window.csv", "--model",
                  "models/trading_policy", "--out", "decisions.csv"], repo_copy)
    decisions = pd.read_csv(repo_copy / "decisions.csv")
    assert len(decisions) == 1 and -1.0 <= decisions["target"].item() <= 1.0
    assert decisions["symbol"].item() in printed.stdout



def check_what_people_see(repo_copy: Path, metrics: dict, decision: dict) -> None:
    """`dvc metrics show`, `dvc plots show` and the MLflow UI's data after a
    whole run: a narrow metrics table with the reports' own values, every
    declared plot rendered, the experiment marked for model training, each
    run's input data named by its DVC hash, a readable version description."""
    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo_copy).stdout)
    files = shown[0]["data"]["metrics"] if isinstance(shown, list) else shown[""]["data"]
    values = {path: entry["data"] for path, entry in files.items()}
    assert sorted(values) == [f"metrics/{s}.json" for s in (
        "evaluate", "features", "predict_oof", "promote", "train_agent", "train_model", "validate")]
    assert len(set().union(*values.values())) <= 20
    assert values["metrics/evaluate.json"]["sharpe"] == metrics["policy"]["overall"]["sharpe"]
    assert values["metrics/evaluate.json"]["dsr"] == metrics["policy"]["dsr"]["dsr"]
    assert values["metrics/promote.json"] == {"decision": decision["decision"],
                                              "version": decision["version"]}
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], repo_copy).stdout)
    assert not plots.get("errors"), plots.get("errors")
    assert {"equity", "drawdown", "validation_reward", "training_reward", "turnover_per_step",
            "reports/model_plots/calibration.png"} <= set(plots["data"])
    curve = pd.read_csv(repo_copy / "reports/agent_plots/validation_reward.csv")
    assert len(curve) >= 2 and (curve["seeds_min"] <= curve["seeds_max"]).all()

    lock = yaml.safe_load((repo_copy / "dvc.lock").read_text())["stages"]
    md5 = {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}
    script = f"""
import json, mlflow
from pathlib import Path
from tradingrl.tracking import tracking_uri
c = mlflow.MlflowClient(tracking_uri(Path.cwd()))
experiment = c.get_experiment_by_name("tradingrl")
runs = c.search_runs([experiment.experiment_id], "tags.`tradingrl.stage` = 'train_model'")
print(json.dumps({{"kind": experiment.tags.get("mlflow.experimentKind"),
                  "inputs": {{d.dataset.name: [d.dataset.digest, [t.value for t in d.tags]]
                             for d in runs[0].inputs.dataset_inputs}},
                  "description": c.get_model_version("trading-policy",
                                                     "{decision['version']}").description}}))
"""
    seen = json.loads(sh([str(BIN / "python"), "-c", script], repo_copy).stdout.strip()
                      .splitlines()[-1])
    assert seen["kind"] == "custom_model_development"
    assert seen["inputs"] == {"data/features": [md5["data/features"], ["training"]],
                              "data/validated": [md5["data/validated"], ["training"]]}
    assert seen["description"].startswith(f"**Gate: {decision['decision']}**")
    assert "| dsr |" in seen["description"] and "Evaluation run: [" in seen["description"]


def test_repro_from_csv_quarantines_a_bad_row(repo_copy: Path):
    external = repo_copy / "data/external"
    rows = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for i, day in enumerate(pd.bdate_range("2020-01-02", periods=300)):
        price = 100 + (i % 17) * 0.5 + i * 0.05
        rows.append(f"{day.date()},{price},{price + 1},{price - 1},{price + 0.2},{price},{1000 + i}")
    rows[150] = rows[150].rsplit(",", 1)[0] + ",-5"  # negative volume
    (external / "ACME.csv").write_text("\n".join(rows) + "\n")
    set_params(repo_copy, ingest={"source": "csv"})
    sh(["dvc", "repro", "features"], repo_copy)

    report = json.loads((repo_copy / "reports/validation.json").read_text())
    assert report["per_symbol"] == {"ACME": {"in": 300, "valid": 299, "quarantined": 1}}
    assert report["per_reason"] == {"volume:negative": 1}
    quarantine = pd.read_parquet(repo_copy / "data/quarantine/quarantine.parquet")
    assert quarantine["volume"].tolist() == [-5.0]
    assert len(pd.read_parquet(repo_copy / "data/features/features.parquet")) == 299 - 120


def test_validate_stage_fails_with_one_line_over_the_threshold(repo_copy: Path):
    rows = ["date,open,high,low,close,volume"]
    for i, day in enumerate(pd.bdate_range("2020-01-02", periods=200)):
        rows.append(f"{day.date()},10,11,9,10.5,{-1 if i % 10 == 0 else 100}")
    (repo_copy / "data/external/BAD.csv").write_text("\n".join(rows) + "\n")
    set_params(repo_copy, ingest={"source": "csv"})
    result = sh(["dvc", "repro"], repo_copy, check=False)
    assert result.returncode != 0
    assert "error: quarantined 20 of 200 rows (10.00%, limit 1.00%)" in result.stderr
