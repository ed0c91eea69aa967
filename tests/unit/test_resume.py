"""The fingerprint of resumable work covers code, params and data; a folder
is kept only for an interrupted run of the same of all three; finished units
inside it are read back, not redone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tradingrl.models.predict import PREDICTION_COLUMNS
from tradingrl.resume import (
    FINISHED_FILE,
    code_hash,
    fingerprint,
    finish_resumable,
    prepare_resumable,
    stage_code_paths,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A checkout with one stage whose code deps are a file and a package."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks/train.py").write_text("print('train')\n")
    (tmp_path / "tradingrl/agents/__pycache__").mkdir(parents=True)
    (tmp_path / "tradingrl/agents/__init__.py").write_text("")
    (tmp_path / "tradingrl/agents/training.py").write_text("LR = 0.1\n")
    (tmp_path / "tradingrl/agents/__pycache__/training.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "tradingrl/other.py").write_text("X = 1\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python -m tasks.train\n    deps:\n"
        "      - tasks/train.py\n      - tradingrl/agents\n      - data/features\n")
    return tmp_path


def test_code_hash_changes_with_one_line_of_a_dep_and_nothing_else(tree):
    assert stage_code_paths("train", tree) == ["tasks/train.py", "tradingrl/agents"]
    before = code_hash("train", tree)
    assert code_hash("train", tree) == before
    (tree / "tradingrl/other.py").write_text("X = 2\n")  # not a dep
    (tree / "tradingrl/agents/__pycache__/training.cpython-311.pyc").write_bytes(b"y")
    assert code_hash("train", tree) == before
    (tree / "tradingrl/agents/training.py").write_text("LR = 0.2\n")
    assert code_hash("train", tree) != before
    (tree / "tradingrl/agents/training.py").write_text("LR = 0.1\n")
    assert code_hash("train", tree) == before
    (tree / "tradingrl/agents/new.py").write_text("")  # a new module of the package
    assert code_hash("train", tree) != before


def test_code_hash_refuses_a_missing_stage_or_dep(tree):
    with pytest.raises(KeyError, match="no stage 'evaluate'"):
        code_hash("evaluate", tree)
    shutil.rmtree(tree / "tradingrl/agents")
    with pytest.raises(FileNotFoundError, match="tradingrl/agents"):
        code_hash("train", tree)


def test_every_resumable_stage_of_the_repository_has_a_code_hash():
    hashes = {s: code_hash(s) for s in ("train_model", "predict_oof", "train_agent", "evaluate")}
    assert len(set(hashes.values())) == 4
    assert "tradingrl/agents" in stage_code_paths("train_agent")


def test_a_folder_is_kept_only_for_an_interrupted_run_of_the_same_fingerprint(tmp_path):
    folder = tmp_path / "runs"
    key = fingerprint({"lr": 0.1}, "data-md5", "code-1")
    assert prepare_resumable(folder, key) is False  # nothing there yet
    (folder / "partial").write_text("work")
    assert prepare_resumable(folder, key) is True  # interrupted: resumed
    assert (folder / "partial").is_file()
    for other in (fingerprint({"lr": 0.2}, "data-md5", "code-1"),
                  fingerprint({"lr": 0.1}, "data-md5-2", "code-1"),
                  fingerprint({"lr": 0.1}, "data-md5", "code-2")):
        assert other != key
        (folder / "partial").write_text("work")
        assert prepare_resumable(folder, other) is False
        assert not (folder / "partial").exists()
        prepare_resumable(folder, key)
    (folder / "partial").write_text("work")
    finish_resumable(folder)  # the stage finished: a rerun (dvc repro -f) starts clean
    assert prepare_resumable(folder, key) is False
    assert not (folder / "partial").exists() and not (folder / FINISHED_FILE).exists()


def test_finished_folds_are_read_back_and_a_finished_stage_refits_all(tmp_path, monkeypatch):
    from tradingrl.models import oof
    from tradingrl.splits.walk_forward import walk_forward_folds

    stamps = pd.Series(pd.bdate_range("2020-01-01", periods=100, tz="UTC"))
    folds = walk_forward_folds(stamps, initial_fraction=0.4, n_folds=3)
    fitted = []

    def predict_fold(frame, features, settings, fold, *, checkpoint_dir):
        fitted.append(fold.index)
        if fold.index == 2 and len(fitted) == 3:
            raise KeyboardInterrupt  # the first run is killed in fold 2
        rows = frame[(frame["timestamp"] >= fold.test_start)
                     & (frame["timestamp"] <= fold.test_end)]
        predictions = rows[["timestamp", "symbol"]].assign(
            fold=fold.index, **{c: 0.25 for c in PREDICTION_COLUMNS})
        return predictions, {"rows_predicted": len(predictions)}

    monkeypatch.setattr(oof, "predict_fold", predict_fold)
    frame = pd.DataFrame({"timestamp": stamps, "symbol": "A"})
    root, key = tmp_path / "oof", "key-1"

    def run():
        prepare_resumable(root, key)
        return oof.out_of_fold_predictions(frame, [], None, folds, checkpoint_root=root,
                                           run_key=key, log=lambda line: None)

    with pytest.raises(KeyboardInterrupt):
        run()
    assert fitted == [0, 1, 2]
    predictions, infos = run()  # the interrupted run resumes: folds 0 and 1 are read back
    assert fitted == [0, 1, 2, 2]
    assert [info.get("resumed", False) for info in infos] == [True, True, False]
    finish_resumable(root)
    again, infos = run()  # after the stage finished: every fold is fitted anew
    assert fitted == [0, 1, 2, 2, 0, 1, 2]
    assert not any(info.get("resumed", False) for info in infos)
    pd.testing.assert_frame_equal(again, predictions)
