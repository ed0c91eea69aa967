"""``training_flow`` under a real temporary Prefect server (``prefect_test_harness``),
tracking to a real ``mlflow server`` over HTTP, on the tiny profile of
test_dvc_repro: every stage runs through DVC in the DAG's order and leaves
what test_dvc_repro.check_pipeline_outputs requires (the registry read back
over HTTP), a second run reruns no stage, a flow killed in the middle of
train_agent resumes from its checkpoints without redoing finished stages, a
failing stage fails the flow with its own message, and a fake API key in the
environment appears in nothing MLflow or Prefect recorded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_dvc_repro import (  # repo_copy is the fixture, used by name
    BIN,
    check_pipeline_outputs,
    repo_copy,  # noqa: F401
    set_params,
    set_tiny_profile,
    sh,
)

from tests.browser import NO_CHROMIUM, chromium, dump_dom, visible_text
from tests.processes import free_port, stop_group
from tradingrl.parallel import RUNNER_ENV

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SECRET_ENV = "TRADINGRL_DATA_API_KEY"


@pytest.fixture()
def mlflow_server(repo_copy: Path):  # noqa: F811
    """A real ``mlflow server`` on a free loopback port, storing into the
    copy's SQLite file and artifact folder (ARCHITECTURE.md's layout)."""
    port = free_port()
    log = open(repo_copy.parent / "mlflow-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{repo_copy / 'mlflow.db'}",
         "--default-artifact-root", str(repo_copy / "mlartifacts"), "--workers", "1"],
        cwd=repo_copy, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("mlflow server did not start:\n"
                                     + (repo_copy.parent / "mlflow-server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)
        log.close()


def kill_flow_during(repo: Path, folder: str, pattern: str, timeout_s: float = 600) -> bool:
    """Run ``training_flow`` on ``repo`` in a subprocess (its own Prefect
    ephemeral API, its own process group) and SIGKILL the whole group as soon
    as a complete zip file matching ``pattern`` exists under ``repo/folder``
    (a checkpoint still being written does not count: a kill then leaves
    nothing to resume). False if the flow ended first."""
    script = ("import sys; from flows.training import training_flow; "
              "training_flow(repo_root=sys.argv[1], retries=0)")
    log = open(repo.parent / "killed-flow.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([str(BIN / "python"), "-c", script, str(repo)], cwd=repo,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    try:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if any(zipfile.is_zipfile(p) for p in (repo / folder).rglob(pattern)):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.2)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _logged_text(client, repo: Path) -> list[tuple[str, bytes]]:
    """Everything MLflow recorded, as (where, bytes): every run's params,
    tags and metric names, every registered model version's tags and
    description, every artifact file, and the store itself."""
    items: list[tuple[str, bytes]] = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            data = {"params": run.data.params, "tags": run.data.tags,
                    "metrics": sorted(run.data.metrics), "name": run.info.run_name}
            items.append((f"run {run.info.run_id}", json.dumps(data).encode()))
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name='{model.name}'"):
            data = {"tags": version.tags, "description": version.description,
                    "source": version.source}
            items.append((f"{model.name} v{version.version}", json.dumps(data).encode()))
    for path in (repo / "mlartifacts").rglob("*"):
        if path.is_file():
            items.append((str(path), path.read_bytes()))
    items.append(("mlflow.db", (repo / "mlflow.db").read_bytes()))
    return items


def test_training_flow_end_to_end_over_an_mlflow_server(repo_copy: Path, mlflow_server: str,  # noqa: F811
                                                         monkeypatch):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.testing.utilities import prefect_test_harness

    from flows.training import pipeline_stages, training_flow

    set_tiny_profile(repo_copy)
    # 2,048 steps per seed instead of the tiny 512: the kill below fires at a
    # seed's first checkpoint (256 steps), and a seed with 256 steps left can
    # finish before the SIGKILL lands on a loaded machine, leaving nothing
    # to resume.
    set_params(repo_copy, train_agent={"total_timesteps": 2048})
    # Walk-forward folds on a local Dask cluster (prefect-dask), as pipelines.yaml says.
    pipelines = yaml.safe_load((repo_copy / "pipelines.yaml").read_text())
    pipelines["task_runner"] = {"kind": "dask", "max_workers": 2, "dask_address": None}
    (repo_copy / "pipelines.yaml").write_text(yaml.safe_dump(pipelines, sort_keys=False))
    secret = f"fake-key-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_ENV, secret)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")

    stages = pipeline_stages(repo_copy)
    assert stages == ["ingest", "validate", "features", "train_model", "predict_oof",
                      "train_agent", "evaluate", "promote"]

    # A crash in the middle of train_agent: the flow's whole process group
    # (flow, dvc, the stage) is SIGKILLed once the first agent checkpoint exists.
    killed = kill_flow_during(repo_copy, "models/agent_runs", "agent_*_steps.zip")
    assert killed, "the flow finished before a train_agent checkpoint appeared"
    assert (repo_copy / "models/cnn_lstm/config.json").is_file()  # finished before the crash
    assert not (repo_copy / "reports/agent_metrics.json").exists()

    with prefect_test_harness(server_startup_timeout=120):
        first = training_flow(repo_root=str(repo_copy), retries=0, return_state=True)
        assert first.is_completed(), first.message
        records = first.result()
        assert [r["stage"] for r in records] == stages
        # Finished stages are not redone; the killed one resumes from its checkpoints.
        assert [r["status"] for r in records] == ["skipped"] * 5 + ["ran"] * 3
        resumed = json.loads((repo_copy / "reports/agent_metrics.json").read_text())["seeds"]
        assert any(seed["resumed_from"] for seed in resumed), resumed

        second = training_flow(repo_root=str(repo_copy), retries=0)
        assert [r["status"] for r in second] == ["skipped"] * len(stages)

        async def recorded(run_id) -> tuple[list[str], str]:
            async with get_client() as prefect:
                logs = await prefect.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
                artifacts = await prefect.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                    key=ArtifactFilterKey(any_=["training-summary", "training-stages",
                                                "gate-checks", "training-progress"])))
            return [log.message for log in logs], {a.key: a.data for a in artifacts}

        prefect_logs, artifacts = asyncio.run(recorded(first.state_details.flow_run_id))
        markdown = str(artifacts["training-summary"])
    assert any("train_agent ran" in message for message in prefect_logs)
    assert any("train_model skipped" in message for message in prefect_logs)

    # Every output of the DAG (the aliases read back through the server).
    check_pipeline_outputs(repo_copy)

    # The registry over HTTP: challenger always, champion only on a pass.
    client = MlflowClient(tracking_uri=mlflow_server)
    decision = json.loads((repo_copy / "reports/promotion.json").read_text())
    version = client.get_model_version_by_alias("trading-policy", "challenger")
    assert version.tags["gate.decision"] == decision["decision"]
    if decision["decision"] == "promoted":
        assert client.get_model_version_by_alias("trading-policy", "champion").version == "1"
    assert f"**{decision['decision']}**" in markdown and "| policy |" in markdown
    assert decision["mlflow_run_id"] in markdown
    assert json.loads(artifacts["training-stages"])[-1]["stage"] == "promote"
    assert artifacts["training-progress"] == 100.0
    assert [c["check"] for c in json.loads(artifacts["gate-checks"])] == [
        c["name"] for c in decision["checks"]]
    # One MLflow parent run per flow run, the stages that ran nested under it,
    # carrying the headline; the killed flow run's parent holds train_model.
    flow_key = f"flow:{first.state_details.flow_run_id}"
    experiment = client.get_experiment_by_name("tradingrl").experiment_id
    parent, = client.search_runs([experiment], f"tags.`tradingrl.pipeline_key` = '{flow_key}'")
    children = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["tradingrl.stage"] for r in children) == [
        "evaluate", "promote", "train_agent"]
    version = parent.data.tags["data_version"]
    assert parent.info.run_name == f"pipeline @ data {version}" and len(version) == 8
    assert all(r.info.run_name.endswith(f" @ data {version}") for r in children)
    assert parent.info.status == "FINISHED" and parent.info.run_id in markdown
    metrics = json.loads((repo_copy / "reports/metrics.json").read_text())
    assert parent.data.metrics["evaluate.sharpe"] == metrics["policy"]["overall"]["sharpe"]
    assert parent.data.tags["promote.decision"] == decision["decision"]
    killed_parent, = client.search_runs(
        [experiment], f"tags.`tradingrl.pipeline` = 'flow' and "
                      f"tags.`tradingrl.pipeline_key` != '{flow_key}'")
    assert [r.data.tags["tradingrl.stage"] for r in client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{killed_parent.info.run_id}' and "
                      "tags.`tradingrl.stage` = 'train_model'")] == ["train_model"]
    assert any((repo_copy / "mlartifacts").rglob("MLmodel"))  # written through the server

    # No secret anywhere: MLflow's runs, registry, artifacts, store; Prefect's logs.
    leaked = [where for where, data in _logged_text(client, repo_copy) if secret.encode() in data]
    leaked += ["prefect log" for message in prefect_logs if secret in message]
    assert leaked == []
    # ... and the search finds it when it is there (the check is not blind).
    planted = client.create_run("0").info.run_id
    client.set_tag(planted, "planted", secret)
    assert any(secret.encode() in data for _, data in _logged_text(client, repo_copy))

    # DVC agrees that nothing is left to run.
    again = sh(["dvc", "repro"], repo_copy)
    assert "Running stage" not in again.stdout

    # The agents and folds ran on Dask; run one by one (the threads runner:
    # serial in the stage), the evaluation's numbers are the same.
    assert any("evaluate: 2 agents (1 folds x 2 seeds) on task runner dask" in m
               for m in prefect_logs)
    # predict_oof ran (and finished) in the killed first flow run, whose output is its log.
    assert "predict_oof: 2 folds on task runner dask" in (
        repo_copy.parent / "killed-flow.log").read_text()
    on_dask = json.loads((repo_copy / "reports/metrics.json").read_text())
    monkeypatch.setenv(RUNNER_ENV, json.dumps({"kind": "threads"}))
    serial = sh(["dvc", "repro", "--force", "--single-item", "evaluate"], repo_copy)
    assert "task runner" not in serial.stdout
    in_order = json.loads((repo_copy / "reports/metrics.json").read_text())
    on_dask.pop("mlflow_run_id"), in_order.pop("mlflow_run_id")
    assert on_dask == in_order

    # An experiment as a user runs one after committing a run: a promote
    # threshold changed (so only promote reruns), then compared with the
    # commit in `dvc exp show` and `dvc plots diff`.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh([*git, "add", "-A"], repo_copy)
    sh([*git, "commit", "-qm", "run"], repo_copy)
    ran = sh(["dvc", "exp", "run", "-n", "lower-dd", "-S", "promote.gate.max_drawdown=0.2"],
             repo_copy)
    assert "Running stage 'promote'" in ran.stdout and "Running stage 'evaluate'" not in ran.stdout
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], repo_copy).stdout)
    rows = {(e["name"] or e["rev"]): e["data"] for e in shown if e["rev"] != "workspace"}
    rows.update({x["name"]: x["revs"][0]["data"] for e in shown for x in e.get("experiments") or []})
    assert {"lower-dd"} < set(rows)
    for name, data in rows.items():
        gate = data["params"]["params.yaml"]["data"]["promote"]["gate"]
        assert gate["max_drawdown"] == (0.2 if name == "lower-dd" else 0.25)
        shown_decision = data["metrics"]["metrics/promote.json"]["data"]
        assert shown_decision["decision"] in {"promoted", "refused"}
    assert rows["lower-dd"]["metrics"]["metrics/evaluate.json"]["data"]["sharpe"] == (
        in_order["policy"]["overall"]["sharpe"])
    diff = json.loads(sh(["dvc", "plots", "diff", "HEAD", "lower-dd", "--json"], repo_copy).stdout)
    assert not diff.get("errors"), diff.get("errors")
    equity = diff["data"]["equity"][0]["content"]["data"]["values"]
    assert {row["rev"] for row in equity} == {"HEAD", "lower-dd"}

    # What a person sees in the MLflow UI (the server's own pages, rendered):
    # the model's aliases, and the flow run's parent run listing its stages.
    binary = chromium()
    if binary is None:
        pytest.skip(f"everything but the MLflow UI pages passed; {NO_CHROMIUM}")
    models = visible_text(dump_dom(binary, f"{mlflow_server}/#/models/trading-policy",
                                   repo_copy.parent / "chromium"))
    assert "trading-policy" in models and "@\xa0challenger" in models
    assert ("@\xa0champion" in models) == (decision["decision"] == "promoted")
    page = visible_text(dump_dom(
        binary, f"{mlflow_server}/#/experiments/{experiment}/runs/{parent.info.run_id}"
                "?workflowType=machine_learning", repo_copy.parent / "chromium"))
    assert f"pipeline @ data {version}" in page and "evaluate.sharpe" in page
    listed = page[page.index("Child runs") + 1:]
    assert {f"{stage} @ data {version}" for stage in ("train_agent", "evaluate", "promote")} <= set(
        listed[:6])


def test_a_failing_stage_fails_the_flow_with_its_own_message(repo_copy: Path):  # noqa: F811
    from prefect.testing.utilities import prefect_test_harness

    from flows.training import StageFailed, training_flow

    rows = ["date,open,high,low,close,volume"]
    for i, day in enumerate(pd.bdate_range("2020-01-02", periods=200)):
        rows.append(f"{day.date()},10,11,9,10.5,{-1 if i % 10 == 0 else 100}")
    (repo_copy / "data/external/BAD.csv").write_text("\n".join(rows) + "\n")
    set_params(repo_copy, ingest={"source": "csv"})
    with prefect_test_harness(server_startup_timeout=120):
        state = training_flow(repo_root=str(repo_copy), retries=0, return_state=True)
    assert state.is_failed()
    with pytest.raises(StageFailed) as err:
        state.result()
    assert str(err.value) == ("stage validate failed: error: quarantined 20 of 200 rows "
                              "(10.00%, limit 1.00%); top reasons: volume:negative (20)")
    assert not (repo_copy / "data/features").exists()  # nothing after the failed stage ran
