"""The ``tradingrl`` command line.

Only typer is imported at module level; everything heavier (pandas, pandera,
Great Expectations, torch, mlflow, prefect) is imported inside the commands,
so ``tradingrl --help`` stays fast.

Help texts are one line per command and a short sentence per option; the
details are in docs/operations.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="tradingrl",
    help="Reproducible MLOps pipeline for hybrid (CNN+LSTM + RL) trading research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """tradingrl: run `dvc repro` for the pipeline; these commands help around it."""


@app.command()
def version() -> None:
    """Print the installed tradingrl version."""
    from tradingrl import __version__

    typer.echo(__version__)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A CSV file or a folder of CSV files.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for validated.parquet, quarantine, report, docs.")
    ] = Path("tradingrl-validation"),
    symbol: Annotated[
        str | None, typer.Option(help="Symbol for a file without a symbol column.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="Time zone of timestamps without offset.")] = "UTC",
    dayfirst: Annotated[bool, typer.Option(help="Read 01/02/2024 as 1 February.")] = False,
    adjust: Annotated[bool, typer.Option(help="Scale OHLC by Adj Close / Close.")] = False,
    max_quarantine_share: Annotated[
        float, typer.Option(help="Fail above this share of quarantined rows.")
    ] = 0.01,
    docs: Annotated[bool, typer.Option(help="Build Great Expectations Data Docs.")] = True,
    debug: Annotated[bool, typer.Option(help="Show the traceback on errors.")] = False,
) -> None:
    """Ingest CSV files and validate them against the OHLCV contract."""
    # Prints the row accounting (in = valid + quarantined, per symbol and
    # reason); exits 0 when the data passes, 1 with a one-line reason when it
    # cannot be read or breaks the contract.
    from tradingrl.data.errors import DataError

    try:
        report = _validate(
            path, out, symbol=symbol, timezone=timezone, dayfirst=dayfirst, adjust=adjust,
            max_quarantine_share=max_quarantine_share, docs=docs,
        )
    except DataError as error:
        if debug:
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if not report["passed"]:
        typer.echo(f"error: {report['failure']}", err=True)
        raise typer.Exit(1)


def _validate(path: Path, out: Path, *, docs: bool, max_quarantine_share: float, **read) -> dict:
    from rich.console import Console
    from rich.table import Table

    from tradingrl.data.csv_source import read_ohlcv_path
    from tradingrl.data.validation import ValidationThresholds, validate_ohlcv, write_validation

    raw = read_ohlcv_path(path, **read)
    thresholds = ValidationThresholds(max_quarantine_share=max_quarantine_share)
    result = validate_ohlcv(raw, thresholds, docs_dir=out / "data_docs" if docs else None)
    write_validation(
        result,
        valid_path=out / "validated.parquet",
        quarantine_path=out / "quarantine.parquet",
        report_path=out / "validation.json",
    )
    r = result.report
    console = Console(stderr=False, highlight=False)
    console.print(
        f"rows in {r['rows_in']} = valid {r['rows_valid']} + quarantined {r['rows_quarantined']}"
        f" ({r['quarantined_share']:.2%})"
    )
    table = Table("symbol", "in", "valid", "quarantined")
    for name, counts in r["per_symbol"].items():
        table.add_row(name, str(counts["in"]), str(counts["valid"]), str(counts["quarantined"]))
    console.print(table)
    for reason, count in r["per_reason"].items():
        console.print(f"  quarantined for {reason}: {count}")
    for line in result.warning_lines():  # kept rows worth a look (probable splits, gaps...)
        console.print(f"  {line}")
    console.print(f"outputs in {out}")
    return {**r, "failure": result.failure_message()}


@app.command("check-features")
def check_features(
    custom: Annotated[list[str] | None, typer.Option(
        "--custom", help="A feature function package.module:function (repeatable).")] = None,
    builtin: Annotated[bool, typer.Option(help="Check the pipeline's 85 built-in features.")] = True,
    warmup_bars: Annotated[int | None, typer.Option(
        help="Warm-up to compare with (default: params.yaml's features.warmup_bars).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic bars checked on.")] = 0,
) -> None:
    """Check features for look-ahead and warm-up: one verdict line each."""
    # Exit 1 when any feature reads the future (LEAK), 0 otherwise; "warn"
    # lines (a warm-up longer than features.warmup_bars) do not fail.
    import sys

    from tradingrl.feature_check import builtin_features, check_bars, check_function, load_function

    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # custom modules from this folder, as `python -m` does
    if warmup_bars is None and Path("params.yaml").is_file():
        from tradingrl.params import load_params

        warmup_bars = int(load_params("features", Path("params.yaml"))["warmup_bars"])
    try:
        functions = [(spec, load_function(spec)) for spec in custom or []]
    except (ValueError, TypeError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if builtin:
        functions.insert(0, ("built-in", builtin_features))
    if not functions:
        typer.echo("error: nothing to check (--no-builtin and no --custom)", err=True)
        raise typer.Exit(1)
    bars, other = check_bars(seed=seed)
    leaks = 0
    for label, function in functions:
        typer.echo(f"# {label}")
        for check in check_function(function, bars, other):
            typer.echo(check.line(warmup_bars))
            leaks += not check.past_only
    typer.echo(f"{leaks} feature(s) read the future" if leaks else "no feature reads the future")
    if leaks:
        raise typer.Exit(1)


@app.command()
def predict(
    path: Annotated[Path, typer.Argument(help="A CSV file or folder: recent OHLCV bars per symbol.")],
    model: Annotated[str, typer.Option(
        help="An MLflow model URI (uses MLFLOW_TRACKING_URI or the repository's mlflow.db) "
             "or a policy bundle folder (models/trading_policy).")
    ] = "models:/trading-policy@champion",
    symbol: Annotated[
        str | None, typer.Option(help="Symbol for a file without a symbol column.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="Time zone of timestamps without offset.")] = "UTC",
    out: Annotated[Path | None, typer.Option(help="Also write the decisions to this CSV.")] = None,
    debug: Annotated[bool, typer.Option(help="Show the traceback on errors.")] = False,
) -> None:
    """Decide the trading policy's target position at each symbol's last bar."""
    # In process, for a flat, fresh account; next to each target position the
    # model's probabilities, its confidence and the risk layer's adjustments.
    from tradingrl.data.errors import DataError

    try:
        decisions = _predict(path, model, symbol=symbol, timezone=timezone)
    except (DataError, ValueError, FileNotFoundError) as error:
        if debug:
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(decisions.to_string(index=False))
    if out is not None:
        decisions.to_csv(out, index=False)


def _predict(path: Path, model: str, **read):
    from tradingrl.data.csv_source import read_ohlcv_path

    bars = read_ohlcv_path(path, **read)
    if Path(model).is_dir():
        from tradingrl.registry.policy import TradingPolicy

        return TradingPolicy.load(model).decide(bars)
    import mlflow

    from tradingrl.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
    from tradingrl.registry.pyfunc import serving_input

    return mlflow.pyfunc.load_model(model).predict(serving_input(bars))


@app.command()
def serve(
    config: Annotated[Path, typer.Option(
        help="The deployments file; entrypoints are relative to its folder.")
    ] = Path("pipelines.yaml"),
    check: Annotated[bool, typer.Option(
        "--check", help="Validate and list the deployments, then exit.")] = False,
    debug: Annotated[bool, typer.Option(help="Show the traceback on errors.")] = False,
) -> None:
    """Serve the Prefect deployments of pipelines.yaml on their cron schedules."""
    # Validates the file and prints one line per deployment (name, entrypoint,
    # cron, time zone, next run), then serves them all with prefect.serve (no
    # work pool needed) until Ctrl-C. An invalid file: exit 1 with a one-line
    # reason naming the line.
    from tradingrl.orchestration import PipelinesError

    try:
        pipelines = _list_deployments(config)
        if check:
            return
        if not pipelines.deployments:
            raise PipelinesError(f"{config}: declares no deployments; nothing to serve")
        from tradingrl.serving import serve as serve_deployments

        _warn_without_prefect_server()
        serve_deployments(pipelines)
    except PipelinesError as error:
        if debug:
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("stopped serving", err=True)
        raise typer.Exit(130) from None


def _list_deployments(config: Path):
    from datetime import UTC

    from tradingrl.orchestration import load_pipelines, next_run

    pipelines = load_pipelines(config)
    runner = pipelines.task_runner
    detail = (f"scheduler {runner.dask_address}" if runner.dask_address
              else f"max_workers {runner.max_workers or 'default'}")
    typer.echo(f"{config}: {len(pipelines.deployments)} deployment(s); "
               f"task runner {runner.kind} ({detail})")
    rows = []
    for spec in pipelines.deployments:
        when = next_run(spec)
        utc = when.astimezone(UTC)
        also_utc = "" if spec.timezone == "UTC" else f" ({utc:%Y-%m-%d %H:%M} UTC)"
        rows.append((spec.name, spec.entrypoint, spec.cron, spec.timezone,
                     f"next {when:%Y-%m-%d %H:%M %Z}{also_utc}"))
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
    for row in rows:
        typer.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[4]]))
    return pipelines


def _warn_without_prefect_server() -> None:
    from prefect.settings import get_current_settings

    if get_current_settings().api.url is None:
        typer.echo("note: PREFECT_API_URL is not set, so Prefect starts a temporary server "
                   "that ends with this command; run `prefect server start` and set "
                   "PREFECT_API_URL=http://127.0.0.1:4200/api to keep the runs and use the "
                   "Prefect UI", err=True)


@app.command()
def ui(
    host: Annotated[str, typer.Option(
        help="Interface to bind; 127.0.0.1 keeps the UI on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the UI and REST API.")] = 5000,
    repo: Annotated[Path, typer.Option(
        help="The checkout whose mlflow.db and mlartifacts/ to show.")] = Path("."),
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 1,
) -> None:
    """Start the MLflow UI (`mlflow server`) on this checkout's store."""
    import os
    import subprocess
    import sys

    from tradingrl.tracking import artifact_root, workspace_root

    root = workspace_root(repo)
    if not root.is_dir():
        typer.echo(f"error: {repo}: no such folder", err=True)
        raise typer.Exit(1)
    # The SQLite file the stages log to (`dvc exp run --temp` copies resolve
    # to the checkout's).
    store = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = artifact_root(store)
    # A plain file path as the default artifact root, like the stages': runs
    # logged over HTTP write there directly and stay readable through the
    # SQLite URI that the stages, `tradingrl predict` and `mlflow models serve`
    # use. The server's default, the mlflow-artifacts:/ proxy, would record
    # URIs that only an HTTP client can resolve. The destination points the
    # proxy (kept on for clients that ask for it) at the same folder instead
    # of ./mlartifacts of wherever the server was started.
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", store,
        "--default-artifact-root", artifacts,
        "--artifacts-destination", artifacts,
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"MLflow UI: http://{shown}:{port}  (store {store}, artifacts {artifacts})")
    # MLflow 3.17's UI opens in its GenAI mode (traces, token usage) until a
    # person switches to "Model training"; this link opens the runs directly.
    typer.echo(f"training runs: http://{shown}:{port}/#/experiments?workflowType=machine_learning")
    # MLflow's job runner (worker processes for its GenAI jobs, unused here)
    # stays off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION is set.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    process = subprocess.Popen(command, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to the server too; give it time to stop cleanly.
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.terminate()
            code = process.wait()
    # A server ended by a signal: the shell's convention, 128 + signal number.
    raise typer.Exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":  # pragma: no cover
    app()
