"""Decision latency of the ``trading-policy`` model over HTTP (``mlflow models
serve``), for 1 symbol and for 8 symbols, on the minimum history window;
``bench_policy_latency.py`` times the same decisions in process.

    python -m benchmarks.bench_policy_latency_http [--bundle models/trading_policy]
        [--data data/validated/ohlcv.parquet | --data synthetic] [--symbols 1 8]
        [--calls 200] [--warmup 5] [--port 0]

Goal: p99 under 50 ms.

The bundle (``models/trading_policy`` after ``make run``) is logged with
:func:`~tradingrl.registry.pyfunc.log_trading_policy` to a temporary SQLite MLflow
store, given the alias ``champion``, and served with ``mlflow models serve
-m models:/trading-policy@champion --env-manager local -w 1`` on 127.0.0.1
(a subprocess in its own process group, the venv's bin first on PATH, torch
on 1 intra-op thread through ``MLFLOW_PYFUNC_INFERENCE_CONFIG``). Once
``/ping`` answers, the first window's answer is checked against the
in-process decision, then the timed requests are POST ``/invocations`` with
the window (:mod:`benchmarks.policy_latency`) as ``dataframe_split`` JSON
over one keep-alive ``requests.Session``; a request's time runs from sending
the (pre-serialised) body to the parsed JSON answer. ``/ping`` round trips
give the bare HTTP cost. Next to the wall times, the server's mean CPU time
per request (its process group's, from /proc).

The breakdown: each of the first 30 timed requests is followed by the same
body through MLflow's own request handler (``scoring_server.invocations``,
what the server's /invocations runs) in this process, timed, then once more
under cProfile. The paired differences (not differences between separate
runs, which move with the machine's load) split a request into the handler
and HTTP (uvicorn, FastAPI, transport, client); the profile splits the
handler into the policy's ``decide``, the rest of the pyfunc's ``predict``
(MLflow's schema check, the output) and JSON to and from frames. The
server's process group is ended whatever happens, and the store is deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.policy_latency import (
    HTTP_GOAL_MS,
    add_common_arguments,
    check_common_arguments,
    code_of,
    load_average,
    load_policy,
    print_table,
    profile_call,
    summary,
    verdicts,
    windows_per_symbol_count,
)
from tests.processes import free_port, stop_group
from tradingrl.registry.champion import CHAMPION, POLICY_MODEL

SERVER_START_TIMEOUT_S = 180.0

PING_CALLS = 50
REPLAY_CALLS = 30  # timed requests also replayed through MLflow's handler in process


# ------------------------------------------------------------------ the server
def register_champion(bundle: Path, example: pd.DataFrame, root: Path) -> str:
    """Log ``bundle`` to a new SQLite store under ``root`` as trading-policy
    v1 with alias champion; returns the tracking URI."""
    import mlflow
    from mlflow import MlflowClient

    from tradingrl.registry.pyfunc import log_trading_policy

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no store-creation INFO lines
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("bench-policy-latency",
                                          artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        version = log_trading_policy(bundle, example, name=POLICY_MODEL)
    MlflowClient().set_registered_model_alias(POLICY_MODEL, CHAMPION, version)
    return uri


@contextlib.contextmanager
def served_model(model_uri: str, tracking_uri: str, port: int, log_path: Path
                 ) -> Iterator[tuple[str, int]]:
    """``mlflow models serve`` of ``model_uri`` on 127.0.0.1:``port`` until
    the block ends; yields the base URL and the server's process group id
    once /ping answers."""
    import requests

    venv_bin = Path(sys.executable).parent
    mlflow_cli = venv_bin / "mlflow"
    if not mlflow_cli.is_file():
        raise SystemExit(f"{mlflow_cli} not found: run this with the venv's python")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
           "MLFLOW_PYFUNC_INFERENCE_CONFIG": json.dumps({"torch_threads": 1}),
           # As from an activated venv: the server execs uvicorn from PATH.
           "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    base = f"http://127.0.0.1:{port}"

    def stop_on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally below

    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    with open(log_path, "w") as log:
        # Own process group: the CLI starts uvicorn as its child; both end together.
        server = subprocess.Popen(
            [str(mlflow_cli), "models", "serve", "-m", model_uri, "--env-manager", "local",
             "-p", str(port), "-h", "127.0.0.1", "-w", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"mlflow models serve exited with {server.returncode}:\n"
                                       + log_path.read_text()[-3000:])
                try:
                    if requests.get(f"{base}/ping", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow models serve did not answer /ping within "
                                       f"{SERVER_START_TIMEOUT_S:.0f} s:\n"
                                       + log_path.read_text()[-3000:])
                time.sleep(0.25)
            yield base, server.pid
        finally:
            try:
                stop_group(server)
            finally:
                signal.signal(signal.SIGTERM, previous)


def group_cpu_seconds(pgid: int) -> float | None:
    """User + system CPU seconds used so far by the processes of process
    group ``pgid`` (all their threads; from /proc, clock-tick resolution);
    None where there is no /proc."""
    if not Path("/proc/self/stat").is_file():
        return None
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended between the listing and the read
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on
        if int(fields[2]) == pgid:  # field 5, pgrp
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ requests
def request_body(window: pd.DataFrame) -> bytes:
    from tradingrl.registry.pyfunc import serving_input

    split = serving_input(window).to_dict(orient="split", index=False)
    return json.dumps({"dataframe_split": split}).encode()


def check_served(policy: Any, window: pd.DataFrame, answer: dict[str, Any]) -> None:
    """The served answer must be the in-process decision on the same window."""
    from tradingrl.registry.pyfunc import serving_output

    served = pd.DataFrame(answer["predictions"])
    expected = serving_output(policy.decide(window))
    try:
        pd.testing.assert_frame_equal(served, expected)
    except AssertionError as err:
        first = str(err).strip().splitlines()[0]
        raise RuntimeError(f"the server's decision differs from the in-process one: {first}"
                           ) from None


class HandlerReplay:
    """MLflow's request handler (``scoring_server.invocations``, what the
    server's /invocations runs in its worker thread) in this process, on the
    model the server serves."""

    def __init__(self, model_uri: str) -> None:
        import mlflow
        from mlflow.pyfunc import scoring_server

        self._invocations = scoring_server.invocations
        self.model = mlflow.pyfunc.load_model(model_uri, model_config={"torch_threads": 1})
        self.schema = self.model.metadata.get_input_schema()
        policy = self.model.unwrap_python_model().policy
        self.parts = {"handler": code_of(scoring_server.invocations),
                      "pyfunc_predict": code_of(type(self.model).predict),
                      "decide": code_of(type(policy).decide)}

    def _handle(self, body: bytes) -> None:
        result = self._invocations(body, "application/json", self.model, self.schema)
        if result.status != 200:
            raise RuntimeError(f"MLflow's handler answered {result.status}: "
                               f"{result.response[:500]}")

    def timed(self, body: bytes) -> float:
        """ms of one request through the handler."""
        start = time.perf_counter()
        self._handle(body)
        return 1e3 * (time.perf_counter() - start)

    def profiled(self, body: bytes) -> dict[str, float]:
        """ms of one request through the handler under cProfile: "handler",
        "pyfunc_predict" and "decide" (each with what it calls)."""
        _, ms, calls = profile_call(lambda: self._handle(body), self.parts)
        for name, count in calls.items():
            if count != 1:
                raise RuntimeError(f"{name} ran {count} times in one request, expected once: "
                                   "MLflow's handler changed; update this benchmark")
        return ms


def over_http(base: str, server_pgid: int, policy: Any, wins: list[pd.DataFrame], warmup: int,
              replay: HandlerReplay, replay_calls: int) -> dict[str, Any]:
    """POST /invocations over ``wins`` (the first ``warmup`` untimed). Returns
    "wall": per-request ms; "server_cpu": the server's mean CPU ms per timed
    request (None without /proc); "client_cpu": this process's (sending,
    receiving, parsing the answer); "paired": for the first ``replay_calls``
    timed requests, "http" ms, "handler_timed" ms of the same body through
    ``replay`` right after it, and the ms of :meth:`HandlerReplay.profiled`."""
    import requests

    url = f"{base}/invocations"
    headers = {"Content-Type": "application/json"}
    wall: list[float] = []
    paired: dict[str, list[float]] = defaultdict(list)
    server_start, client_cpu = None, 0.0
    with requests.Session() as session:
        for i, window in enumerate(wins):
            body = request_body(window)
            timed = i >= warmup
            if i == warmup:
                server_start = group_cpu_seconds(server_pgid)
            cpu_start = time.process_time()
            start = time.perf_counter()
            response = session.post(url, data=body, headers=headers, timeout=60)
            if response.status_code != 200:
                raise RuntimeError(f"/invocations answered {response.status_code}: "
                                   f"{response.text[:500]}")
            answer = response.json()
            elapsed = 1e3 * (time.perf_counter() - start)
            if timed:
                client_cpu += time.process_time() - cpu_start
                wall.append(elapsed)
            if i == 0:
                check_served(policy, window, answer)
            if i < warmup + replay_calls:  # the replay's own warm-up too
                handler_ms = replay.timed(body)
                profiled = replay.profiled(body)
                if timed:
                    paired["http"].append(elapsed)
                    paired["handler_timed"].append(handler_ms)
                    for name, ms in profiled.items():
                        paired[name].append(ms)
    server_end = group_cpu_seconds(server_pgid)
    server_cpu = (None if server_start is None or server_end is None
                  else 1e3 * (server_end - server_start) / len(wall))
    return {"wall": np.asarray(wall), "server_cpu": server_cpu,
            "client_cpu": 1e3 * client_cpu / len(wall),
            "paired": {name: np.asarray(ms) for name, ms in paired.items()}}


def ping_round_trips(base: str, n: int) -> np.ndarray:
    """ms of ``n`` GET /ping round trips (after 5 untimed)."""
    import requests

    times = []
    with requests.Session() as session:
        for _ in range(n + 5):
            start = time.perf_counter()
            session.get(f"{base}/ping", timeout=10).raise_for_status()
            times.append(time.perf_counter() - start)
    return np.asarray(times[5:]) * 1e3


def print_http_breakdown(n_symbols: int, run: dict[str, Any]) -> None:
    paired = run["paired"]
    print(f"  where the time goes, {n_symbols} symbol(s): each of the first {len(paired['http'])} "
          "timed requests, then its body through MLflow's handler in this process (paired; "
          "ms mean / p50):")
    rows = (
        ("request over HTTP", paired["http"]),
        ("MLflow's handler in this process", paired["handler_timed"]),
        ("HTTP - handler (uvicorn, transport, client)", paired["http"] - paired["handler_timed"]),
    )
    for label, ms in rows:
        print(f"    {label:<46s} {ms.mean():8.2f} {np.percentile(ms, 50):8.2f}")
    handler = paired["handler"]
    print(f"  within the handler, under cProfile (mean {handler.mean():.2f} ms, against "
          f"{paired['handler_timed'].mean():.2f} ms unprofiled; ms mean / p50, share):")
    rows = (
        ("decide (TradingPolicy)", paired["decide"]),
        ("pyfunc predict - decide (schema, output)", paired["pyfunc_predict"] - paired["decide"]),
        ("handler - pyfunc predict (JSON <-> frames)", handler - paired["pyfunc_predict"]),
    )
    for label, ms in rows:
        print(f"    {label:<46s} {ms.mean():8.2f} {np.percentile(ms, 50):8.2f}"
              f"  {100 * ms.mean() / handler.mean():5.1f}%")
    server = "n/a (no /proc)" if run["server_cpu"] is None else f"{run['server_cpu']:.2f}"
    print(f"    CPU ms per timed request: server process {server}, client (requests, JSON) "
          f"{run['client_cpu']:.2f}")


# ------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be in 0..65535")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    bundle = Path(args.bundle)
    policy = load_policy(bundle)  # the served code must be this code: checked
    wins = windows_per_symbol_count(args, policy)
    port = args.port or free_port()
    runs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_policy_latency_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        tracking_uri = register_champion(bundle, wins[min(args.symbols)][0], root)
        logged = time.perf_counter() - start
        model_uri = f"models:/{POLICY_MODEL}@{CHAMPION}"
        start = time.perf_counter()
        with served_model(model_uri, tracking_uri, port, root / "serve.log") as (base, pgid):
            ready = time.perf_counter() - start
            before = load_average()
            ping = ping_round_trips(base, PING_CALLS)
            replay = HandlerReplay(model_uri)
            for n in args.symbols:
                runs[n] = over_http(base, pgid, policy, wins[n], args.warmup, replay,
                                    min(args.calls, REPLAY_CALLS))
            after = load_average()
    p = summary(ping)
    print(f"\nover HTTP, POST /invocations to `mlflow models serve -m {model_uri} "
          "--env-manager local -w 1`, ms per request")
    print(f"  before: {before}; after: {after}")
    print(f"  logged to a temporary SQLite store in {logged:.1f} s; server answered /ping "
          f"{ready:.1f} s after start; answer checked equal to the in-process decision")
    print(f"  GET /ping round trip, {PING_CALLS} calls: p50 {p['p50']:.2f}, p99 "
          f"{p['p99']:.2f} ms")
    print_table({n: r["wall"] for n, r in runs.items()},
                {n: r["server_cpu"] for n, r in runs.items()}, "server")
    for n in args.symbols:
        print_http_breakdown(n, runs[n])

    print("\ngoals:")
    verdicts("over HTTP", {n: r["wall"] for n, r in runs.items()}, (("goal", HTTP_GOAL_MS),))
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
