"""Decision latency of the ``trading-policy`` model: one call in process
(:meth:`TradingPolicy.decide`) and one request over HTTP (``mlflow models
serve``), for 1 symbol and for 8 symbols, on the minimum history window.

    python benchmarks/bench_policy_latency.py [--bundle models/trading_policy]
        [--data data/validated/ohlcv.parquet | --data synthetic] [--symbols 1 8]
        [--calls 200] [--warmup 5] [--no-http] [--port 0]

Goals (issue 5): in process, p99 under 10 ms on CPU (the design documents
target under 100 ms); over HTTP, p99 under 50 ms.

What is measured. ``--bundle`` is a folder written by
:func:`~tradingrl.registry.build_policy_bundle` (``models/trading_policy``
after ``make run``); the script does not build one. Each call decides on a
different window: window k holds, per symbol, the ``min_history_bars``
(manifest) bars ending k bars before the last bar of ``--data`` (the
validated OHLCV of the pipeline by default; ``synthetic`` generates
params.yaml's synthetic market, 8 symbols x 2520 bars, seed 7, in process;
more symbols if ``--symbols`` asks for more), so every decision is a
real one at its last bar t with bars <= t only, for a flat account.
``--warmup`` calls (numba JIT, torch allocator) run before the ``--calls``
timed ones. Times are wall clock (``time.perf_counter``) in milliseconds;
percentiles are numpy's linear interpolation over the timed calls (with 200
calls, p99 lies between the 2nd and 3rd slowest). torch runs with 1
intra-op thread, in process (``torch.set_num_threads(1)``) and in the server
(model_config ``torch_threads`` 1 through ``MLFLOW_PYFUNC_INFERENCE_CONFIG``).
Next to the wall times, the mean CPU time per call (this process's, or the
server's process group's from /proc): well below the wall time means the
call waited for a core.

In process: the timed calls also give the breakdown. The functions the
policy calls are wrapped, for the duration of the run only, with timers
(~0.3 us per wrapped call): ``check_ohlcv`` (input checks),
``feature_block`` (and within it ``feature_matrix``, the indicators),
the trend model's ``predict_windows`` (within it ``_ensemble_passes``, the
MC-dropout forward passes; the rest is scaling and averaging the passes),
the agent's ``predict`` and the risk layer; "other" is the rest of the call
(grouping by symbol, building the observation, the output frame). The script
checks that every wrapper ran as often as the policy's code path says
(once per symbol per call; ``check_ohlcv`` once per call) and stops if
not, so a changed code path cannot silently move time into "other".

Over HTTP: the bundle is logged with :func:`~tradingrl.registry.log_trading_policy`
to a temporary SQLite MLflow store, given the alias ``champion``, and served
with ``mlflow models serve -m models:/trading-policy@champion --env-manager
local -w 1`` on 127.0.0.1 (a subprocess in its own process group, with the
venv's bin first on PATH and ``MLFLOW_TRACKING_URI`` set). Once ``/ping``
answers, the first window's answer is checked against the in-process
decision, then the timed requests are POST ``/invocations`` with the window
as ``dataframe_split`` JSON over one keep-alive ``requests.Session``; a
request's time runs from sending the (pre-serialised) body to the parsed
JSON answer. ``/ping`` round trips give the bare HTTP cost. Breakdown: each
of the first 30 timed requests is followed by the same body through MLflow's
own request handler (``scoring_server.invocations``) in this process, with
the pyfunc's ``predict`` and the policy's ``decide`` timed inside it; paired
differences (not differences between separate runs, which move with the
machine's load) split a request into decide, MLflow's schema check, JSON
to and from DataFrames, and HTTP (uvicorn, FastAPI, transport, client). The
server's process group is ended with SIGTERM (SIGKILL after 20 s) whatever
happens, and the store is deleted.

The client, the server and anything else running share this machine's
cores: the load average is printed next to each table.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self
from unittest import mock

import numpy as np
import pandas as pd

IN_PROCESS_GOAL_MS = 10.0
DESIGN_TARGET_MS = 100.0
HTTP_GOAL_MS = 50.0
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_TIMEOUT_S = 20.0
MODEL_NAME = "trading-policy"
ALIAS = "champion"
PING_CALLS = 50
REPLAY_CALLS = 30  # timed requests also replayed through MLflow's handler in process


# ------------------------------------------------------------------ statistics
def summary(ms: np.ndarray) -> dict[str, float]:
    """p50, p90, p99, max and mean of per-call times in ms."""
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": p50, "p90": p90, "p99": p99, "max": float(ms.max()), "mean": float(ms.mean())}


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def print_table(rows: dict[int, np.ndarray], cpu: dict[int, float | None], cpu_label: str
                ) -> None:
    """Wall-time percentiles per symbol count, and the mean CPU time per
    call (``cpu_label`` says whose) next to the mean wall time: where the
    CPU time is well below the wall time, the call waited for a core."""
    print(f"  {'symbols':>7s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'max':>8s} {'mean':>8s}"
          f"  {'p50/symbol':>10s}  {'mean CPU ms (' + cpu_label + ')':>22s}")
    for n_symbols, ms in rows.items():
        s = summary(ms)
        used = cpu.get(n_symbols)
        shown = "n/a (no /proc)" if used is None else f"{used:.2f}"
        print(f"  {n_symbols:7d} {s['p50']:8.2f} {s['p90']:8.2f} {s['p99']:8.2f} {s['max']:8.2f} "
              f"{s['mean']:8.2f}  {s['p50'] / n_symbols:10.2f}  {shown:>22s}")


def verdicts(label: str, rows: dict[int, np.ndarray], goals: Sequence[tuple[str, float]]) -> None:
    for n_symbols, ms in rows.items():
        p99 = summary(ms)["p99"]
        parts = [f"{name} p99 < {limit:g} ms: {'met' if p99 < limit else 'NOT met'}"
                 for name, limit in goals]
        print(f"  {label}, {n_symbols} symbol(s), p99 {p99:.2f} ms: " + "; ".join(parts))


# ------------------------------------------------------------------ inputs
def load_bars(data: str, n_symbols: int, bars_needed: int) -> pd.DataFrame:
    """Long-format OHLCV of the first ``n_symbols`` symbols (sorted), each
    with at least ``bars_needed`` bars, checked by ``prepare_ohlcv``."""
    from tradingrl.registry import prepare_ohlcv

    if data == "synthetic":
        from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market

        # The config's defaults are params.yaml's ingest.synthetic market.
        raw = generate_market(SyntheticMarketConfig(n_symbols=max(n_symbols, 8)))
    else:
        path = Path(data)
        if not path.is_file():
            raise ValueError(f"--data {path} is not a file (run `make run`, or pass "
                             "--data synthetic)")
        raw = pd.read_parquet(path)
    bars = prepare_ohlcv(raw)
    symbols = sorted(bars["symbol"].unique())
    if len(symbols) < n_symbols:
        raise ValueError(f"--data has {len(symbols)} symbols, --symbols asks for {n_symbols}")
    bars = bars[bars["symbol"].isin(symbols[:n_symbols])]
    counts = bars.groupby("symbol").size()
    if counts.min() < bars_needed:
        raise ValueError(f"symbol {counts.idxmin()} has {counts.min()} bars; the policy's "
                         f"minimum window needs {bars_needed}")
    return bars.reset_index(drop=True)


def windows(bars: pd.DataFrame, n_symbols: int, min_bars: int, count: int) -> list[pd.DataFrame]:
    """``count`` windows of ``n_symbols`` symbols x ``min_bars`` bars; window
    k ends k bars before each symbol's last bar (cycling when history runs
    out), so consecutive calls decide at distinct bars."""
    symbols = sorted(bars["symbol"].unique())[:n_symbols]
    per_symbol = [bars[bars["symbol"] == s].reset_index(drop=True) for s in symbols]
    shortest = min(len(p) for p in per_symbol)
    distinct = shortest - min_bars + 1
    out = []
    for k in range(count):
        back = k % distinct
        out.append(pd.concat([p.iloc[len(p) - min_bars - back:len(p) - back] for p in per_symbol],
                             ignore_index=True))
    return out


# ------------------------------------------------------------------ in process
class PartTimers:
    """Wall time of wrapped functions, summed per name until :meth:`take`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed

    def take(self) -> dict[str, float]:
        """The seconds summed since the last take, per name; resets them."""
        out = dict(self.seconds)
        self.seconds.clear()
        return out


# (name, parent, expected calls per decided symbol or per decide call)
PARTS: tuple[tuple[str, str | None, str], ...] = (
    ("prepare_ohlcv", None, "call"),
    ("features", None, "symbol"),
    ("compute_features", "features", "symbol"),
    ("trend_model", None, "symbol"),
    ("mc_forward_passes", "trend_model", "symbol"),
    ("agent", None, "symbol"),
    ("risk_layer", None, "symbol"),
)


@contextlib.contextmanager
def instrumented(policy: Any, timers: PartTimers) -> Iterator[None]:
    """Wrap the functions :meth:`TradingPolicy.decide` calls with ``timers``
    (module attributes are looked up at call time by the policy's code)."""
    from tradingrl.features import build, fast_features
    from tradingrl.models import uncertainty
    from tradingrl.registry import policy as policy_module

    targets = [
        (policy_module, "check_ohlcv", "prepare_ohlcv"),
        (build, "feature_block", "features"),
        (fast_features, "feature_matrix", "compute_features"),
        (policy.trend_model, "predict_windows", "trend_model"),
        (uncertainty, "_ensemble_passes", "mc_forward_passes"),
        (policy.agent, "predict", "agent"),
    ]
    if policy.risk_fn is not None:
        targets.append((policy, "risk_fn", "risk_layer"))
    with contextlib.ExitStack() as stack:
        for owner, attr, name in targets:
            stack.enter_context(mock.patch.object(owner, attr,
                                                  timers.wrap(name, getattr(owner, attr))))
        yield


def in_process(policy: Any, wins: list[pd.DataFrame], n_symbols: int, warmup: int
               ) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Per-call ms of ``policy.decide`` over ``wins[warmup:]`` (after deciding
    on ``wins[:warmup]``), per-part ms of the same calls, and the process's
    mean CPU ms per call."""
    for window in wins[:warmup]:
        policy.decide(window)
    timers = PartTimers()
    totals, parts, cpu = [], defaultdict(list), 0.0
    with instrumented(policy, timers):
        for window in wins[warmup:]:
            timers.take()
            cpu_start = time.process_time()
            start = time.perf_counter()
            decisions = policy.decide(window)
            totals.append(time.perf_counter() - start)
            cpu += time.process_time() - cpu_start
            for name, seconds in timers.take().items():
                parts[name].append(seconds)
            if len(decisions) != n_symbols:
                raise RuntimeError(f"decide answered {len(decisions)} rows for {n_symbols} "
                                   "symbols")
    calls = len(wins) - warmup
    for name, _, per in PARTS:
        if name == "risk_layer" and policy.risk_fn is None:
            continue
        expected = calls * (n_symbols if per == "symbol" else 1)
        if timers.calls[name] != expected:
            raise RuntimeError(f"{name} ran {timers.calls[name]} times in {calls} calls, expected "
                               f"{expected}: TradingPolicy's code path changed; update this "
                               "benchmark's breakdown")
    return (np.asarray(totals) * 1e3, {k: np.asarray(v) * 1e3 for k, v in parts.items()},
            1e3 * cpu / calls)


def print_breakdown(n_symbols: int, total: np.ndarray, parts: dict[str, np.ndarray]) -> None:
    labels = {
        "prepare_ohlcv": "check_ohlcv (input checks)",
        "features": "features (feature_block)",
        "compute_features": "indicators (feature_matrix)",
        "trend_model": "trend model (predict_windows)",
        "mc_forward_passes": "CNN+LSTM passes (_ensemble_passes)",
        "agent": "agent (SB3 predict)",
        "risk_layer": "risk layer",
    }
    print(f"  where the time goes, {n_symbols} symbol(s) (ms per call: mean / p50 / p99, "
          "share of the mean call):")
    mean_total = total.mean()

    def line(label: str, ms: np.ndarray, indent: int) -> None:
        p50, p99 = np.percentile(ms, [50, 99])
        print(f"    {' ' * indent}{label:<{40 - indent}s} {ms.mean():8.2f} {p50:8.2f} {p99:8.2f}"
              f"  {100 * ms.mean() / mean_total:5.1f}%")

    top = np.zeros_like(total)
    for name, parent, _ in PARTS:
        if name not in parts or parent is not None:
            continue
        line(labels[name], parts[name], 0)
        top += parts[name]
        children = [c for c, p, _ in PARTS if p == name and c in parts]
        if children:
            for child in children:
                line(labels[child], parts[child], 2)
            line("rest", parts[name] - sum(parts[c] for c in children), 2)
    line("other (grouping, observation, output)", total - top, 0)


# ------------------------------------------------------------------ over HTTP
def free_port(port: int) -> int:
    """``port`` if nothing listens on it (0: one the OS picks)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            raise ValueError(f"--port {port} is in use on 127.0.0.1: {err.strerror}") from None
        return int(probe.getsockname()[1])


def register_champion(bundle: Path, example: pd.DataFrame, root: Path) -> str:
    """Log ``bundle`` to a new SQLite store under ``root`` as trading-policy
    v1 with alias champion; returns the tracking URI."""
    import logging

    import mlflow
    from mlflow import MlflowClient

    from tradingrl.registry import log_trading_policy

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no store-creation INFO lines
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("bench-policy-latency",
                                          artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        version = log_trading_policy(bundle, example, name=MODEL_NAME)
    MlflowClient().set_registered_model_alias(MODEL_NAME, ALIAS, version)
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
        raise RuntimeError(f"{mlflow_cli} not found: run this with the venv's python")
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
                stop_process_group(server)
            finally:
                signal.signal(signal.SIGTERM, previous)


def stop_process_group(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the CLI and its uvicorn), SIGKILL
    it if any of it is still there after :data:`SERVER_STOP_TIMEOUT_S`."""
    for sig, patience in ((signal.SIGTERM, SERVER_STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            server.poll()  # reap the CLI; uvicorn, its child, may take a moment longer
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    if server.poll() is None:
        raise RuntimeError(f"could not stop mlflow models serve (process group {server.pid})")


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


def request_body(window: pd.DataFrame) -> bytes:
    from tradingrl.registry import serving_input

    split = serving_input(window).to_dict(orient="split", index=False)
    return json.dumps({"dataframe_split": split}).encode()


def check_served(policy: Any, window: pd.DataFrame, answer: dict[str, Any]) -> None:
    """The served answer must be the in-process decision on the same window."""
    from tradingrl.registry import serving_output

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
    model the server serves, with the time of its ``pyfunc predict`` and of
    the policy's ``decide`` inside it. A context manager."""

    PARTS = ("pyfunc_predict", "decide")

    def __init__(self, model_uri: str) -> None:
        import mlflow
        from mlflow.pyfunc import scoring_server

        self._invocations = scoring_server.invocations
        self.model = mlflow.pyfunc.load_model(model_uri, model_config={"torch_threads": 1})
        self.schema = self.model.metadata.get_input_schema()
        self.timers = PartTimers()
        self._patches = contextlib.ExitStack()
        policy = self.model.unwrap_python_model().policy
        for owner, attr, name in ((self.model, "predict", "pyfunc_predict"),
                                  (policy, "decide", "decide")):
            self._patches.enter_context(mock.patch.object(
                owner, attr, self.timers.wrap(name, getattr(owner, attr))))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._patches.close()

    def __call__(self, body: bytes) -> dict[str, float]:
        """ms of one request: "handler", and the parts within it."""
        calls = {name: self.timers.calls[name] for name in self.PARTS}
        self.timers.take()
        start = time.perf_counter()
        result = self._invocations(body, "application/json", self.model, self.schema)
        elapsed = time.perf_counter() - start
        if result.status != 200:
            raise RuntimeError(f"MLflow's handler answered {result.status}: "
                               f"{result.response[:500]}")
        parts = self.timers.take()
        for name in self.PARTS:
            if self.timers.calls[name] != calls[name] + 1:
                raise RuntimeError(f"{name} did not run once per request: MLflow's handler "
                                   "changed; update this benchmark")
        return {"handler": 1e3 * elapsed, **{name: 1e3 * parts[name] for name in self.PARTS}}


def over_http(base: str, server_pgid: int, policy: Any, wins: list[pd.DataFrame], warmup: int,
              replay: HandlerReplay, replay_calls: int) -> dict[str, Any]:
    """POST /invocations over ``wins`` (the first ``warmup`` untimed). Returns
    "wall": per-request ms; "server_cpu": the server's mean CPU ms per timed
    request (None without /proc); "client_cpu": this process's (sending,
    receiving, parsing the answer); "paired": for the first ``replay_calls``
    timed requests, "http" ms and the ms of the same body through
    ``replay`` right after it (:meth:`HandlerReplay.__call__`'s keys)."""
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
                parts = replay(body)
                if timed:
                    paired["http"].append(elapsed)
                    for name, ms in parts.items():
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
        ("decide (TradingPolicy)", paired["decide"]),
        ("pyfunc predict - decide (schema, output)", paired["pyfunc_predict"] - paired["decide"]),
        ("handler - pyfunc predict (JSON <-> frames)",
         paired["handler"] - paired["pyfunc_predict"]),
        ("HTTP - handler (uvicorn, transport, client)", paired["http"] - paired["handler"]),
    )
    for label, ms in rows:
        print(f"    {label:<44s} {ms.mean():8.2f} {np.percentile(ms, 50):8.2f}")
    server = "n/a (no /proc)" if run["server_cpu"] is None else f"{run['server_cpu']:.2f}"
    print(f"    CPU ms per timed request: server process {server}, client (requests, JSON) "
          f"{run['client_cpu']:.2f}")


# ------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="models/trading_policy",
                        help="trading-policy bundle folder (default: %(default)s)")
    parser.add_argument("--data", default="data/validated/ohlcv.parquet",
                        help="long-format OHLCV parquet, or 'synthetic' (default: %(default)s)")
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 8],
                        help="symbols per call, one run each (default: 1 8)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before them")
    parser.add_argument("--no-http", action="store_true", help="skip mlflow models serve")
    parser.add_argument("--no-code-check", action="store_true",
                        help="in process only: load a bundle built with other decision code "
                        "(to time a code change before rebuilding the bundle)")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.symbols):
        parser.error("--symbols must be >= 1")
    if args.calls < 1 or args.warmup < 1:
        parser.error("--calls and --warmup must be >= 1")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be in 0..65535")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    bundle = Path(args.bundle)
    if not (bundle / "policy.json").is_file():
        raise SystemExit(f"{bundle} holds no trading-policy bundle (policy.json): run `make run` "
                         "(stage promote writes models/trading_policy) or pass --bundle DIR")
    # No tqdm bars for artifact downloads (this process and the server).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import torch

    from tradingrl.registry import TradingPolicy

    torch.set_num_threads(1)
    if args.no_code_check and not args.no_http:
        raise SystemExit("--no-code-check needs --no-http (the server checks the code)")
    policy = TradingPolicy.load(bundle, check_code=not args.no_code_check)
    m = policy.manifest
    trend = m["trend_model"]
    print(f"bundle {bundle}: {m['agent']['algorithm']} agent (window {policy.window}), "
          f"CNN+LSTM x{trend['ensemble_size']} (window {trend['window']}, MC samples "
          f"{trend['mc_samples']}), risk layer {'on' if policy.risk_fn else 'off'}; "
          f"min_history_bars {policy.min_bars}")
    symbol_counts = list(dict.fromkeys(args.symbols))
    count = args.warmup + args.calls
    bars = load_bars(args.data, max(symbol_counts), policy.min_bars)
    print(f"data {args.data}: {bars['symbol'].nunique()} symbols; {count} windows of "
          f"{policy.min_bars} bars per symbol, ending at distinct bars; torch threads "
          f"{torch.get_num_threads()}; {args.warmup} warm-up + {args.calls} timed calls")
    wins = {n: windows(bars, n, policy.min_bars, count) for n in symbol_counts}

    local: dict[int, np.ndarray] = {}
    local_cpu: dict[int, float | None] = {}
    breakdown: dict[int, dict[str, np.ndarray]] = {}
    before = load_average()
    for n in symbol_counts:
        local[n], breakdown[n], local_cpu[n] = in_process(policy, wins[n], n, args.warmup)
    print("\nin process, TradingPolicy.decide, ms per call")
    print(f"  before: {before}; after: {load_average()}")
    print_table(local, local_cpu, "this process")
    for n in symbol_counts:
        print_breakdown(n, local[n], breakdown[n])

    runs: dict[int, dict[str, Any]] = {}
    if not args.no_http:
        port = free_port(args.port)
        with tempfile.TemporaryDirectory(prefix="bench_policy_latency_") as tmp:
            root = Path(tmp)
            start = time.perf_counter()
            tracking_uri = register_champion(bundle, wins[min(symbol_counts)][0], root)
            logged = time.perf_counter() - start
            model_uri = f"models:/{MODEL_NAME}@{ALIAS}"
            start = time.perf_counter()
            with (served_model(model_uri, tracking_uri, port, root / "serve.log")
                  as (base, pgid)):
                ready = time.perf_counter() - start
                before = load_average()
                ping = ping_round_trips(base, PING_CALLS)
                with HandlerReplay(model_uri) as replay:
                    for n in symbol_counts:
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
        for n in symbol_counts:
            print_http_breakdown(n, runs[n])

    print("\ngoals:")
    verdicts("in process", local, (("goal", IN_PROCESS_GOAL_MS),
                                   ("design target", DESIGN_TARGET_MS)))
    if runs:
        verdicts("over HTTP", {n: r["wall"] for n, r in runs.items()}, (("goal", HTTP_GOAL_MS),))
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
