"""Tracking URI rules and provenance tags."""

from __future__ import annotations

import subprocess

from tradingrl.tracking import (
    artifact_root,
    dvc_output_hash,
    git_commit,
    provenance_tags,
    tracking_uri,
    workspace_root,
)


def test_default_tracking_uri_is_absolute_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking_uri(tmp_path / "repo" / ".." / "repo")
    assert uri == f"sqlite:///{(tmp_path / 'repo').resolve()}/mlflow.db"
    assert uri.startswith("sqlite:////")  # an absolute path after the scheme


def test_environment_overrides_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_dvc_output_hash_reads_the_lock_file(tmp_path):
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  features:\n    cmd: x\n    outs:\n"
        "    - path: data/features\n      hash: md5\n      md5: abc123.dir\n"
    )
    assert dvc_output_hash(tmp_path, "data/features") == "abc123.dir"
    assert dvc_output_hash(tmp_path, "data/raw") is None


def test_git_commit_marks_dirty_checkouts(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    assert git_commit(tmp_path) is None
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-qm", "one")
    clean = git_commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path) == clean + "-dirty"
    tags = provenance_tags(tmp_path, "data/features")
    assert tags == {"git_commit": clean + "-dirty", "data_path": "data/features", "data_dvc_md5": "untracked"}


def test_artifacts_live_beside_a_sqlite_store_not_in_the_working_folder(tmp_path):
    assert artifact_root(f"sqlite:///{tmp_path}/mlflow.db") == (tmp_path / "mlartifacts").as_uri()
    assert artifact_root("http://127.0.0.1:5000") is None


def test_dvc_temp_experiments_log_to_the_checkouts_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    temp_copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    assert workspace_root(temp_copy) == (tmp_path / "repo").resolve()
    assert tracking_uri(temp_copy) == f"sqlite:///{(tmp_path / 'repo').resolve()}/mlflow.db"
    assert workspace_root(tmp_path / "repo") == (tmp_path / "repo").resolve()
