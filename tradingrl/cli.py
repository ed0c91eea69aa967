"""The ``tradingrl`` command line.

Only typer is imported at module level; pandas, pandera and Great
Expectations are imported inside the commands so ``tradingrl --help`` stays
fast.
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
    """Ingest CSV files and validate them against the OHLCV contract.

    Prints the row accounting (in = valid + quarantined, per symbol and
    reason); exits 0 when the data passes, 1 with a one-line reason when it
    cannot be read or breaks the contract.
    """
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
    for warning in r["warnings"]:
        console.print(f"  warning: expectation {warning} failed")
    console.print(f"outputs in {out}")
    return {**r, "failure": result.failure_message()}


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
    """Decide in process: the trading policy's target position for the last bar of
    each symbol in a CSV window, with the model's probabilities, confidence and the
    risk layer's adjustments (a flat, fresh account)."""
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
        from tradingrl.registry import TradingPolicy

        return TradingPolicy.load(model).decide(bars)
    import mlflow

    from tradingrl.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
    from tradingrl.registry import serving_input

    return mlflow.pyfunc.load_model(model).predict(serving_input(bars))


if __name__ == "__main__":  # pragma: no cover
    app()
