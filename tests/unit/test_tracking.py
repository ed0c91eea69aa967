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


def test_the_experiment_opens_as_model_training_unless_someone_chose_its_kind(
        tmp_path, monkeypatch):
    import mlflow

    from tradingrl.tracking import EXPERIMENT_KIND_TAG, use_experiment

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    previous = mlflow.get_tracking_uri()
    try:
        first = use_experiment(tmp_path, "fresh")
        client = mlflow.MlflowClient(tracking_uri(tmp_path))
        assert client.get_experiment(first).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
        # One made before the tag existed gets it; one whose kind a person set keeps it.
        old = client.create_experiment("old")
        chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
        assert use_experiment(tmp_path, "old") == old
        use_experiment(tmp_path, "chosen")
        assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
        assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_runs_input_data_is_named_by_its_dvc_hash(tmp_path, monkeypatch):
    import mlflow

    from tradingrl.tracking import log_data_inputs, use_experiment

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  features:\n    cmd: x\n    outs:\n"
        "    - path: data/features\n      hash: md5\n      md5: 0123456789abcdef0123456789abcdef.dir\n")
    previous = mlflow.get_tracking_uri()
    try:
        use_experiment(tmp_path, "lineage")
        with mlflow.start_run() as run:
            # data/predictions is not in dvc.lock: no digest names its version.
            assert log_data_inputs(tmp_path, ["data/features", "data/predictions"],
                                   "training") == ["data/features"]
        inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    finally:
        mlflow.set_tracking_uri(previous)
    assert [(d.dataset.name, d.dataset.digest) for d in inputs] == [
        ("data/features", "0123456789abcdef0123456789abcdef.dir")]
    assert [t.value for t in inputs[0].tags] == ["training"]
    assert (tmp_path / "data" / "features").as_uri() in inputs[0].dataset.source


def test_the_stages_of_one_pipeline_nest_under_one_parent_run(tmp_path, monkeypatch):
    import mlflow
    import pytest

    from tradingrl.tracking import (
        PIPELINE_KEY_ENV,
        log_to_parent,
        pipeline_key,
        stage_run,
        use_experiment,
    )

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PIPELINE_KEY_ENV, raising=False)
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  ingest:\n    cmd: x\n    outs:\n"
        "    - path: data/raw\n      hash: md5\n      md5: 89abcdef0123456789abcdef01234567.dir\n")
    previous = mlflow.get_tracking_uri()
    try:
        experiment = use_experiment(tmp_path, "nesting")
        client = mlflow.MlflowClient()
        assert pipeline_key() is None  # pytest is not run by dvc: a stage run by hand
        with stage_run(tmp_path, experiment, "evaluate", {"git_commit": "abc"}) as alone:
            assert log_to_parent({"sharpe": 1.0}, "evaluate") is None
        assert "mlflow.parentRunId" not in client.get_run(alone.info.run_id).data.tags

        monkeypatch.setenv(PIPELINE_KEY_ENV, "flow:one")
        with stage_run(tmp_path, experiment, "evaluate", {"git_commit": "abc"}) as first:
            parent = log_to_parent({"sharpe": 0.5, "baseline": "supervised", "dsr": None},
                                   "evaluate")
        with pytest.raises(ValueError), stage_run(tmp_path, experiment, "promote", {}) as second:
            raise ValueError("the gate broke")
        monkeypatch.setenv(PIPELINE_KEY_ENV, "flow:two")
        with stage_run(tmp_path, experiment, "evaluate", {}) as other:
            pass
    finally:
        mlflow.set_tracking_uri(previous)
    runs = {r.info.run_id: r for r in client.search_runs([experiment])}
    assert runs[first.info.run_id].data.tags["mlflow.parentRunId"] == parent
    assert runs[second.info.run_id].data.tags["mlflow.parentRunId"] == parent
    assert runs[other.info.run_id].data.tags["mlflow.parentRunId"] not in (parent, None)
    assert runs[first.info.run_id].info.run_name == "evaluate @ data 89abcdef"
    assert runs[first.info.run_id].data.tags["tradingrl.stage"] == "evaluate"
    assert runs[second.info.run_id].info.status == "FAILED"
    head = runs[parent]
    assert head.info.run_name == "pipeline @ data 89abcdef"
    assert head.info.status == "FAILED"  # its latest stage failed
    assert head.data.metrics == {"evaluate.sharpe": 0.5}
    assert head.data.tags["evaluate.baseline"] == "supervised"
    assert (head.data.tags["tradingrl.pipeline"], head.data.tags["tradingrl.pipeline_key"]) == (
        "flow", "flow:one")
    assert len(runs) == 6  # alone, first, second, other and one parent per key
