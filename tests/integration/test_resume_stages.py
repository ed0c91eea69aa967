"""Resumed work is what the current code would produce: the train_agent
stage (its real ``main``, on a small hand-made input) resumes an interrupted
run of the same code, params and data, reading finished seeds back; it trains
from scratch after a code change and after a run that finished (what
``dvc repro -f`` asks for); and every route gives the same agents."""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import tasks.train_agent as stage
from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.resume import FINISHED_FILE

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
PREDS = ["p_down", "p_flat", "p_up", "expected_return", "confidence"]


def _params() -> dict:
    """params.yaml's train_agent section, made cheap: these departures only
    shorten training (two seeds, 256 steps, small PPO batches, short
    windows); the resume rules under test do not depend on them."""
    params = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text())["train_agent"])
    params.update({"total_timesteps": 256, "seeds": [0, 1], "eval_freq": 128,
                   "checkpoint_freq": 128, "features": ["ret_1", "level"]})
    params["algorithm_kwargs"]["ppo"] = {"n_steps": 64, "batch_size": 32, "n_epochs": 1}
    params["policy_kwargs"] = {"net_arch": [8]}
    params["env"].update({"window": 3, "max_steps": 40})
    return params


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    bars = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=260, seed=5))
    bars = bars.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    close = bars["close"]
    features = bars[["timestamp", "symbol"]].assign(
        ret_1=np.log(close).groupby(bars["symbol"]).diff().fillna(0.0), level=close / 100.0)
    features = features.groupby("symbol").tail(230)
    predicted = features.groupby("symbol").tail(150)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=len(predicted))
    oof = predicted[["timestamp", "symbol"]].assign(
        p_down=p[:, 0], p_flat=p[:, 1], p_up=p[:, 2],
        expected_return=rng.normal(0, 0.01, len(predicted)), confidence=rng.random(len(predicted)))
    for folder, name, frame in (("data/features", "features.parquet", features),
                                ("data/validated", "ohlcv.parquet", bars),
                                ("data/predictions", "oof.parquet", oof)):
        (tmp_path / folder).mkdir(parents=True)
        frame.to_parquet(tmp_path / folder / name, index=False)
    return tmp_path


def _seeds(report: dict) -> list[tuple[int, bool, bool]]:
    return [(s["seed"], s["reused"], s["resumed_from"] is not None) for s in report["seeds"]]


def _zips(repo: Path) -> dict[str, dict[str, list]]:
    """Each seed's saved policy weights (the zip's own bytes carry the time
    it was written)."""
    import torch

    out = {}
    for path in sorted((repo / "models/agent").glob("seed_*.zip")):
        with zipfile.ZipFile(path) as archive:
            state = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu")
        out[path.name] = {k: v.numpy().tolist() for k, v in state.items()}
    return out


def test_train_agent_resumes_only_an_interrupted_run_of_the_same_code(repo, monkeypatch):
    runs, params = repo / "models/agent_runs", _params()
    # The code's hash, pinned for the test (edits elsewhere in a working
    # checkout would change it mid-test); the real one is tested in
    # tests/unit/test_resume.py. The stage asks for its own stage's hash.
    asked = []
    monkeypatch.setattr(stage, "code_hash", lambda name: asked.append(name) or "version-1")
    first = stage.main(copy.deepcopy(params), repo_root=repo)
    assert _seeds(first) == [(0, False, False), (1, False, False)]
    assert (runs / FINISHED_FILE).is_file()
    trained = _zips(repo)

    # Interrupted while seed 1 trained (seed 0 done): seed 0 is read back as
    # it was, seed 1 continues from its checkpoint (SB3 does not checkpoint
    # the env's random state, so a continued seed is not bit-identical to an
    # uninterrupted one; a finished seed is).
    (runs / FINISHED_FILE).unlink()
    for path in (runs / "seed_1").iterdir():
        # Killed after its first checkpoint: the untrained policy, saved
        # before training, and the checkpoints are what it had written.
        if path.name not in ("checkpoints", "initial_model.zip"):
            path.unlink()
    for late in (runs / "seed_1/checkpoints").glob("agent_256_steps.zip"):
        late.unlink()
    resumed = stage.main(copy.deepcopy(params), repo_root=repo)
    assert _seeds(resumed) == [(0, True, False), (1, False, True)]
    assert _zips(repo)["seed_0.zip"] == trained["seed_0.zip"]
    assert resumed["seeds"][0] == {**first["seeds"][0], "reused": True}

    # A rerun after the stage finished (dvc repro -f): trained from scratch.
    forced = stage.main(copy.deepcopy(params), repo_root=repo)
    assert _seeds(forced) == [(0, False, False), (1, False, False)]
    assert _zips(repo) == trained

    # Interrupted, but the code changed since: nothing of it is resumed.
    (runs / FINISHED_FILE).unlink()
    monkeypatch.setattr(stage, "code_hash", lambda name: "version-2")
    changed = stage.main(copy.deepcopy(params), repo_root=repo)
    assert _seeds(changed) == [(0, False, False), (1, False, False)]
    assert set(asked) == {"train_agent"}
