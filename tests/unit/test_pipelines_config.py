"""pipelines.yaml: validation errors name the line, a valid file loads, the
repository's own file validates, `tradingrl serve --check`, and the Prefect
deployments built from it carry the cron and time zone."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.processes import free_port, stop_group
from tradingrl.cli import app
from tradingrl.orchestration import (
    DeploymentSpec,
    PipelinesError,
    TaskRunnerSettings,
    load_pipelines,
    next_run,
    task_runner_from_config,
)
from tradingrl.serving import build_deployments

REPO_ROOT = Path(__file__).resolve().parents[2]

FLOW_FILE = '''\
import prefect as pf
from prefect import flow
from pathlib import Path


@flow(name="demo", log_prints=True)
def demo_flow(symbols: int = 3, note: str = "x") -> int:
    """Demo flow docstring."""
    Path("ran.txt").write_text(f"{symbols} {note}")
    return symbols


@pf.flow
def needs_window(window: int, *, label: str = "a"):
    return window


def plain_function(symbols: int = 3):
    return symbols
'''

# Line numbers below refer to this text (line 1 = "version: 1").
VALID = """\
version: 1
task_runner:
  kind: threads
  max_workers: 2
  dask_address: null
deployments:
  - name: weekly-demo
    entrypoint: flows/demo.py:demo_flow
    cron: "0 2 * * 0"
    timezone: UTC
    parameters: {symbols: 5}
    tags: [training, weekly]
    description: Weekly demo.
  - name: daily-demo
    entrypoint: flows/demo.py:needs_window
    cron: "30 16 * * 1-5"
    timezone: America/New_York
    parameters:
      window: 20
    tags: [monitoring]
"""


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "demo.py").write_text(FLOW_FILE)
    return tmp_path


def write(repo: Path, text: str) -> Path:
    path = repo / "pipelines.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def replace_line(text: str, number: int, new: str) -> str:
    lines = text.splitlines()
    lines[number - 1] = new
    return "\n".join(lines) + "\n"


def error_of(path: Path) -> str:
    with pytest.raises(PipelinesError) as caught:
        load_pipelines(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_valid_file_loads_with_its_values(repo: Path) -> None:
    config = load_pipelines(write(repo, VALID))
    assert config.version == 1
    assert config.repo_root == repo.resolve()
    assert config.task_runner == TaskRunnerSettings(kind="threads", max_workers=2)
    weekly, daily = config.deployments
    assert weekly == DeploymentSpec(
        name="weekly-demo", entrypoint="flows/demo.py:demo_flow", cron="0 2 * * 0",
        timezone="UTC", parameters={"symbols": 5}, tags=("training", "weekly"),
        description="Weekly demo.", line=7)
    assert (daily.name, daily.cron, daily.timezone, daily.parameters, daily.tags,
            daily.description, daily.line) == ("daily-demo", "30 16 * * 1-5",
                                               "America/New_York", {"window": 20},
                                               ("monitoring",), None, 14)
    assert (daily.path, daily.function) == ("flows/demo.py", "needs_window")


def test_defaults_time_zone_and_task_runner(repo: Path) -> None:
    text = """\
    version: 1
    deployments:
      - name: only
        entrypoint: flows/demo.py:demo_flow
        cron: "*/15 9-16 * * mon-fri"
    """
    config = load_pipelines(write(repo, text))
    assert config.task_runner == TaskRunnerSettings(kind="threads", max_workers=None)
    (only,) = config.deployments
    assert (only.timezone, only.parameters, only.tags, only.description) == ("UTC", {}, (),
                                                                              None)


@pytest.mark.parametrize(("line", "new", "expected_line", "fragment"), [
    (5, "  dask_address: null\nextra: 1", 6,
     "unknown key 'extra' in the file (allowed: version, task_runner, deployments)"),
    (9, '    crn: "0 2 * * 0"', 9, ("unknown key 'crn' in the deployment at line 7 (allowed: "
                                    "name, entrypoint, cron, timezone, parameters, tags, "
                                    "description)")),
    (4, "  workers: 2", 4, ("unknown key 'workers' in task_runner (allowed: kind, "
                           "max_workers, dask_address)")),
    (9, '    cron: "0 2 * *"', 9,
     "deployment 'weekly-demo': cron '0 2 * *' is not a valid cron expression: has 4 fields"),
    (16, '    cron: "61 16 * * 1-5"', 16,
     "deployment 'daily-demo': cron '61 16 * * 1-5' is not a valid cron expression"),
    (9, '    cron: "0 2 31 2 *"', 9, "never fires"),
    (17, "    timezone: America/New_Yrok", 17,
     "deployment 'daily-demo': unknown time zone 'America/New_Yrok'"),
    (8, "    entrypoint: flows/missing.py:demo_flow", 8,
     "deployment 'weekly-demo': entrypoint file flows/missing.py does not exist under"),
    (8, "    entrypoint: flows/demo.py:missing_flow", 8,
     "flows/demo.py defines no top-level function 'missing_flow'"),
    (8, "    entrypoint: flows/demo.py:plain_function", 8,
     "plain_function in flows/demo.py (line 18) is not decorated with prefect's @flow"),
    (8, "    entrypoint: flows/demo.py", 8,
     "entrypoint must look like path/to/file.py:flow_function, got 'flows/demo.py'"),
    (8, "    entrypoint: ../demo.py:demo_flow", 8,
     "entrypoint file '../demo.py' must be a relative path inside"),
    (11, "    parameters: {symbol: 5}", 11,
     ("deployment 'weekly-demo': demo_flow has no parameter 'symbol' (its parameters: "
      "symbols, note)")),
    (19, "      windw: 20", 19, "needs_window has no parameter 'windw'"),
    (19, "      label: b", 18, "needs_window parameter 'window' has no default"),
    (11, "    parameters: {symbols: 2020-01-01}", 11,
     ("parameter 'symbols' must be made of strings, numbers, booleans, nulls, lists and "
      "mappings with string keys (quote dates), found date datetime.date(2020, 1, 1)")),
    (11, "    parameters: {symbols: [1, {2: x}]}", 11, "found int 2"),
    (14, "  - name: weekly-demo", 14,
     "duplicate deployment name 'weekly-demo' (first at line 7)"),
    (12, "    tags: training", 12, ("deployment 'weekly-demo': tags must be a list of strings, "
                                   "got str 'training'")),
    (12, "    tags: [training, 3]", 12, "each tag must be a string, got int 3"),
    (11, "    parameters: [symbols]", 11, "parameters must be a mapping"),
    (4, "  max_workers: two", 4, ("task_runner.max_workers must be a whole number >= 1 or "
                                 "null, got str 'two'")),
    (4, "  max_workers: 0", 4, "task_runner.max_workers must be a whole number >= 1"),
    (3, "  kind: ray", 3, "task_runner.kind must be one of threads, processes, dask, got 'ray'"),
    (5, "  dask_address: tcp://127.0.0.1:8786", 5,
     "task_runner.dask_address is only used with kind: dask"),
    (1, "version: 2", 1, "version must be 1, got 2"),
    (1, 'version: "1"', 1, "version must be 1, got '1'"),
    (7, "  - name: weekly/demo", 7, "the name must not contain any of"),
    (10, "    cron: '0 3 * * 0'", 10, "duplicate key 'cron' in the deployment at line 7"),
    (9, "    cron: [0, 2]", 9, "deployment 'weekly-demo': cron must be a string, got a list"),
    (13, "    description: [a", 14, "invalid YAML"),
    (9, "    cron: * 2 * * 0", 9, ("invalid YAML: expected alphabetic or numeric character, "
                                 "but found ' ' (quote a value that starts with *")),
])
def test_errors_name_the_line(repo: Path, line: int, new: str, expected_line: int,
                              fragment: str) -> None:
    path = write(repo, replace_line(VALID, line, new))
    message = error_of(path)
    assert message.startswith(f"{path} line {expected_line}: "), message
    assert fragment in message, message


def test_missing_required_key_names_the_deployment_line(repo: Path) -> None:
    path = write(repo, VALID.replace('    cron: "30 16 * * 1-5"\n', ""))
    message = error_of(path)
    assert message == (f"{path} line 14: the deployment at line 14 is missing required key "
                       "'cron'")


def test_dask_settings(repo: Path) -> None:
    text = VALID.replace("kind: threads", "kind: dask")
    config = load_pipelines(write(repo, text))
    assert config.task_runner == TaskRunnerSettings(kind="dask", max_workers=2)
    text = text.replace("max_workers: 2", "max_workers: null").replace(
        "dask_address: null", "dask_address: tcp://10.0.0.5:8786")
    config = load_pipelines(write(repo, text))
    assert config.task_runner == TaskRunnerSettings(kind="dask",
                                                    dask_address="tcp://10.0.0.5:8786")
    path = write(repo, text.replace("max_workers: null", "max_workers: 4"))
    assert error_of(path).startswith(f"{path} line 4: task_runner.max_workers is not used "
                                     "with a dask_address")
    path = write(repo, text.replace("tcp://10.0.0.5:8786", "10.0.0.5:8786"))
    assert error_of(path).startswith(f"{path} line 5: task_runner.dask_address must be a "
                                     "scheduler address such as tcp://host:8786")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(PipelinesError, match=r"pipelines\.yaml: no such file$"):
        load_pipelines(tmp_path / "pipelines.yaml")
    path = tmp_path / "pipelines.yaml"
    path.write_text("# nothing\n")
    assert error_of(path) == (f"{path} line 1: empty file; expected a mapping with keys "
                              "version, task_runner, deployments")


def test_repository_pipelines_file_validates() -> None:
    config = load_pipelines(REPO_ROOT / "pipelines.yaml")
    by_name = {spec.name: spec for spec in config.deployments}
    assert set(by_name) == {"weekly-retraining", "daily-drift-check"}
    weekly, daily = by_name["weekly-retraining"], by_name["daily-drift-check"]
    assert (weekly.entrypoint, weekly.cron, weekly.timezone) == (
        "flows/training.py:training_flow", "0 2 * * 0", "UTC")
    assert (daily.entrypoint, daily.cron, daily.timezone) == (
        "flows/monitoring.py:drift_flow", "30 16 * * 1-5", "America/New_York")
    assert config.task_runner == TaskRunnerSettings(kind="processes", max_workers=None)


def test_next_run_follows_the_time_zone() -> None:
    weekly = DeploymentSpec(name="w", entrypoint="f.py:f", cron="0 2 * * 0", timezone="UTC")
    after = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)  # a Monday
    assert next_run(weekly, after) == dt.datetime(2024, 1, 7, 2, tzinfo=dt.UTC)
    daily = DeploymentSpec(name="d", entrypoint="f.py:f", cron="30 16 * * 1-5",
                           timezone="America/New_York")
    # Friday 8 March 2024 after the run; clocks move to EDT on Sunday 10 March.
    friday_evening = dt.datetime(2024, 3, 8, 22, tzinfo=dt.UTC)
    assert next_run(daily, friday_evening) == dt.datetime(2024, 3, 11, 20, 30, tzinfo=dt.UTC)


def test_thread_task_runner() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    runner = task_runner_from_config(TaskRunnerSettings(kind="threads", max_workers=3))
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert runner._max_workers == 3


def test_process_task_runner() -> None:
    from prefect.task_runners import ProcessPoolTaskRunner

    runner = task_runner_from_config(TaskRunnerSettings(kind="processes", max_workers=2))
    assert isinstance(runner, ProcessPoolTaskRunner)
    assert runner._max_workers == 2


def test_dask_task_runner_without_prefect_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # import fails
    with pytest.raises(PipelinesError, match="^task_runner kind 'dask' needs the prefect-dask "
                                             "package, which is not installed"):
        task_runner_from_config(TaskRunnerSettings(kind="dask"))


def test_dask_task_runner_with_an_address() -> None:
    prefect_dask = pytest.importorskip("prefect_dask")
    runner = task_runner_from_config(TaskRunnerSettings(kind="dask",
                                                        dask_address="tcp://127.0.0.1:8786"))
    assert isinstance(runner, prefect_dask.DaskTaskRunner)
    assert runner.address == "tcp://127.0.0.1:8786"
    local = task_runner_from_config(TaskRunnerSettings(kind="dask", max_workers=2))
    assert local.cluster_kwargs["n_workers"] == 2
    assert local.cluster_kwargs["host"] == "127.0.0.1"


def test_serve_check_lists_the_deployments(repo: Path) -> None:
    path = write(repo, VALID)
    result = CliRunner().invoke(app, ["serve", "--config", str(path), "--check"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: 2 deployment(s); task runner threads (max_workers 2)"
    weekly, daily = lines[1].split(), lines[2].split()
    assert weekly[:8] == ["weekly-demo", "flows/demo.py:demo_flow", "0", "2", "*", "*", "0",
                          "UTC"]
    assert weekly[8] == "next"
    when = dt.datetime.strptime(f"{weekly[9]} {weekly[10]}", "%Y-%m-%d %H:%M")
    assert when.weekday() == 6 and (when.hour, when.minute) == (2, 0)
    assert daily[:8] == ["daily-demo", "flows/demo.py:needs_window", "30", "16", "*", "*",
                         "1-5", "America/New_York"]
    assert daily[11] in ("EST", "EDT") and daily[-1] == "UTC)"
    assert len(lines) == 3


def test_serve_check_refuses_an_invalid_file(repo: Path) -> None:
    path = write(repo, replace_line(VALID, 17, "    timezone: Europe/Nowhere"))
    result = CliRunner().invoke(app, ["serve", "--config", str(path), "--check"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {path} line 17: deployment 'daily-demo': unknown time "
                             "zone 'Europe/Nowhere' (an IANA name such as UTC or "
                             "America/New_York)\n")


def test_build_deployments_carry_schedule_parameters_and_tags(repo: Path) -> None:
    config = load_pipelines(write(repo, VALID))
    weekly, daily = build_deployments(config)
    assert (weekly.name, weekly.flow_name, weekly.entrypoint) == (
        "weekly-demo", "demo", "flows/demo.py:demo_flow")
    (schedule,) = weekly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "0 2 * * 0", "UTC", True)
    assert (weekly.parameters, weekly.tags, weekly.description) == (
        {"symbols": 5}, ["training", "weekly"], "Weekly demo.")
    (schedule,) = daily.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 16 * * 1-5",
                                                                   "America/New_York")
    assert (daily.entrypoint, daily.parameters, daily.tags) == (
        "flows/demo.py:needs_window", {"window": 20}, ["monitoring"])
    assert daily.description is None or daily.description == ""  # needs_window has no doc


def test_build_deployments_reports_a_flow_that_fails_to_import(repo: Path) -> None:
    config = load_pipelines(write(repo, VALID))
    (repo / "flows" / "demo.py").write_text("import not_a_module_anywhere\n" + FLOW_FILE)
    with pytest.raises(PipelinesError) as caught:
        build_deployments(config)
    assert str(caught.value) == (
        f"{config.path} line 7: deployment 'weekly-demo': importing flows/demo.py failed: "
        "ModuleNotFoundError: No module named 'not_a_module_anywhere'")


CHECK_DEPLOYMENT = """
import json, time
from prefect import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

deadline = time.monotonic() + 90
with get_client(sync_client=True) as client:
    while True:  # until `tradingrl serve` has registered it
        try:
            deployment = client.read_deployment_by_name("demo/weekly-demo")
            break
        except ObjectNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
schedule = deployment.schedules[0].schedule
run = run_deployment("demo/weekly-demo", parameters={"note": "served"}, timeout=60)
print(json.dumps({"cron": schedule.cron, "timezone": schedule.timezone,
                  "tags": deployment.tags, "state": run.state.type.value}))
"""


@pytest.mark.slow
def test_tradingrl_serve_runs_a_deployment(repo: Path) -> None:
    """`tradingrl serve` against a real Prefect server in a temporary home:
    the deployment is registered with its cron and time zone, and a run of it
    executes the flow in the repository folder with the file's parameters."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(repo / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}  # the runner looks for due runs every second
    write(repo, VALID)
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
         str(port)], env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    serving = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("the Prefect server did not start within 60 s")
                time.sleep(0.5)
        log = repo / "serve.log"
        with log.open("w") as output:
            serving = subprocess.Popen(
                [str(bin_dir / "tradingrl"), "serve", "--config", "pipelines.yaml"], env=env,
                cwd=repo, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        probe = subprocess.run([sys.executable, "-c", CHECK_DEPLOYMENT], env=env, cwd=repo,
                               check=False, capture_output=True, text=True, timeout=180)
        if probe.returncode != 0:
            pytest.fail(f"no completed run: {probe.stderr[-2000:]}\nserve: "
                        f"{log.read_text()[-2000:]}")
        checked = json.loads(probe.stdout.strip().splitlines()[-1])
        assert checked == {"cron": "0 2 * * 0", "timezone": "UTC",
                           "tags": ["training", "weekly"], "state": "COMPLETED"}
        # The run started in the repository folder with the file's parameter and the override.
        assert (repo / "ran.txt").read_text() == "5 served"
    finally:
        if serving is not None:
            stop_group(serving)
        stop_group(server)
