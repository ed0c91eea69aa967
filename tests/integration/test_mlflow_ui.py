"""`tradingrl ui`: an `mlflow server` on 127.0.0.1 over a checkout's SQLite
store and mlartifacts/ folder. A run logged before the server started (file
paths, as the stages log) and a run logged over HTTP are both readable through
the server, and both land in <repo>/mlflow.db and <repo>/mlartifacts."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.processes import free_port, stop_group
from tradingrl.tracking import artifact_root

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (Linux /proc)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                if width == 8:  # little-endian IPv4
                    found.append(socket.inet_ntop(socket.AF_INET,
                                                  bytes.fromhex(address)[::-1]))
                else:
                    found.append(f"ipv6:{address}")
    return found


def test_tradingrl_ui_serves_the_checkouts_store(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    repo = tmp_path / "repo"
    repo.mkdir()
    store = f"sqlite:///{repo / 'mlflow.db'}"

    # A run as the stages log it, before any server: SQLite URI, file artifact root.
    local = MlflowClient(tracking_uri=store)
    stage_experiment = local.create_experiment("tradingrl", artifact_location=artifact_root(store))
    stage_run = local.create_run(stage_experiment).info.run_id
    (tmp_path / "stage.txt").write_bytes(b"logged by a stage\n")
    local.log_artifact(stage_run, str(tmp_path / "stage.txt"))
    local.set_terminated(stage_run)

    port = free_port()
    log = tmp_path / "ui.log"
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "tradingrl"), "ui", "--port", str(port),
             "--repo", str(repo)], stdout=output, stderr=subprocess.STDOUT, env=env,
            cwd=tmp_path, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = _get(f"{base}/health")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail(f"no answer from {base}/health in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        assert log.read_text().splitlines()[:2] == [
            f"MLflow UI: {base}  (store {store}, artifacts {artifact_root(store)})",
            f"training runs: {base}/#/experiments?workflowType=machine_learning"]
        status, page = _get(f"{base}/")  # the browser UI itself
        assert status == 200 and page.lower().startswith(b"<!doctype html>")
        if Path("/proc/net/tcp").exists():
            assert _listening_addresses(port) == ["127.0.0.1"]

        # The stage's run (a file path) is readable through the server, as the UI reads it.
        query = urllib.parse.urlencode({"path": "stage.txt", "run_uuid": stage_run})
        assert _get(f"{base}/get-artifact?{query}") == (200, b"logged by a stage\n")

        # A run logged over HTTP.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
        client = MlflowClient(tracking_uri=base)
        experiment = client.create_experiment("ui-check")
        run_id = client.create_run(experiment).info.run_id
        client.log_metric(run_id, "sharpe", 1.25, step=3)
        (tmp_path / "note.bin").write_bytes(b"\x00artifact bytes\xff")
        client.log_artifact(run_id, str(tmp_path / "note.bin"), artifact_path="reports")
        client.set_terminated(run_id)

        run = client.get_run(run_id)
        assert run.data.metrics == {"sharpe": 1.25}
        assert [a.path for a in client.list_artifacts(run_id, "reports")] == ["reports/note.bin"]
        (tmp_path / "downloaded").mkdir()
        downloaded = client.download_artifacts(run_id, "reports/note.bin",
                                               str(tmp_path / "downloaded"))
        assert Path(downloaded).read_bytes() == b"\x00artifact bytes\xff"
        query = urllib.parse.urlencode({"path": "reports/note.bin", "run_uuid": run_id})
        assert _get(f"{base}/get-artifact?{query}") == (200, b"\x00artifact bytes\xff")
        assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri() + "/")
    finally:
        stop_group(server)

    # Everything is in the checkout: the run and its metric in mlflow.db, the
    # artifact under mlartifacts/, nothing in the working folder.
    with sqlite3.connect(repo / "mlflow.db") as db:
        assert db.execute("select key, value, step from metrics where run_uuid = ?",
                          (run_id,)).fetchall() == [("sharpe", 1.25, 3)]
        assert db.execute("select name from experiments where experiment_id = ?",
                          (int(experiment),)).fetchall() == [("ui-check",)]
    written = list((repo / "mlartifacts").rglob("note.bin"))
    assert len(written) == 1 and run_id in written[0].parts
    assert written[0].read_bytes() == b"\x00artifact bytes\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["repo", "ui.log", "stage.txt", "note.bin", "downloaded"])
