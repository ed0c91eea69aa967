"""Drift checks of a data window against the champion's reference window, and
the decision whether they call for retraining.

- :func:`feature_drift`: an Evidently 0.7 ``Report`` with ``DataDriftPreset``
  over the model's feature columns. Every column is tested with one method
  (default ``wasserstein``: the Wasserstein distance between the two samples
  divided by the reference's standard deviation, so a score of 0.5 is half a
  reference standard deviation of displacement); a column drifts when its
  score reaches ``threshold`` (default 1.0). The result is the share and count of drifted
  columns, every column's score and flag, and the Evidently snapshot (for
  ``save_html``).
- :func:`prediction_drift`: the same test over the decision's columns
  (:data:`~tradingrl.monitoring.decisions.DECISION_COLUMNS`: p_up, p_down,
  confidence, expected_return and the risk-checked target position).
- :func:`live_performance`: the champion's decisions over the window traded
  through the project's backtester
  (:func:`tradingrl.evaluation.books.backtest_sleeve`, i.e.
  :func:`~tradingrl.backtest.backtest_positions` with the environment's costs,
  cash and fill), one equal-weight book as the evaluation builds it; its
  annualised Sharpe ratio after costs over the matured decisions, against the
  out-of-sample Sharpe ratio recorded when the champion was promoted.
- :func:`decide_retrain`: the three rules, each reported with its value and
  threshold, like the promotion gate's checks.

Why a distance and not a p-value: bars are autocorrelated (a 100-bar moving
average changes slowly), so a window of N bars holds far fewer than N
independent draws and a p-value test flags nearly every column of every
window. A distance in reference standard deviations does not grow with the
sample size; its threshold is set from what windows of the same market show
(README, "Drift checks").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

RULES: tuple[str, ...] = ("feature_drift", "prediction_drift", "performance_decay")


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test: ``score`` by ``method`` (normed Wasserstein: reference
    standard deviations), drifted when ``score >= threshold``."""

    column: str
    score: float
    threshold: float
    method: str
    drifted: bool


@dataclass(frozen=True, eq=False)
class DriftResult:
    """share: drifted columns / tested columns; count: drifted columns;
    columns: every column's test, in the order tested; snapshot: the Evidently
    snapshot (``snapshot.save_html(path)``); n_reference / n_current: rows."""

    share: float
    count: int
    columns: tuple[ColumnDrift, ...]
    snapshot: Any
    n_reference: int
    n_current: int

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no snapshot)."""
        first = self.columns[0]
        return {
            "share": self.share, "count": self.count, "n_columns": len(self.columns),
            "method": first.method, "column_threshold": first.threshold,
            "rows_reference": self.n_reference, "rows_current": self.n_current,
            "drifted_columns": self.drifted_columns,
            "scores": {c.column: c.score for c in self.columns},
        }


def _check_frames(reference: Any, current: Any, columns: Sequence[str]) -> list[str]:
    for name, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    columns = list(columns)
    if not columns:
        raise ValueError("no columns to test")
    if len(set(columns)) != len(columns):
        raise ValueError("columns are listed more than once")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing[:5]}")
        if frame.empty:
            raise ValueError(f"{name} has no rows")
        not_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])
                       or pd.api.types.is_bool_dtype(frame[c])]
        if not_numeric:
            raise ValueError(f"{name} column(s) {not_numeric[:5]} are not numeric")
        empty = [c for c in columns if frame[c].notna().sum() == 0]
        if empty:
            raise ValueError(f"{name} column(s) {empty[:5]} have no values")
    return columns


def _drift_report(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *,
                  method: str, threshold: float, drift_share: float) -> DriftResult:
    """Run Evidently's DataDriftPreset on ``columns`` and read the snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = _check_frames(reference, current, columns)
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    if not 0.0 < drift_share <= 1.0:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share!r}")
    definition = DataDefinition(numerical_columns=columns)
    # Plain float64 columns: Evidently's numeric tests and plots read numpy floats.
    as_float = {c: "float64" for c in columns}
    report = Report([DataDriftPreset(columns=columns, method=method, threshold=float(threshold),
                                     drift_share=float(drift_share))], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[columns].astype(as_float),
                                         data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns].astype(as_float),
                                           data_definition=definition))
    return _read_snapshot(snapshot, columns, len(reference), len(current))


def _read_snapshot(snapshot: Any, columns: list[str], n_reference: int,
                   n_current: int) -> DriftResult:
    """Scores from the ValueDrift metrics, drift flags from their tests, share
    and count from DriftedColumnsCount (the three must agree)."""
    payload = snapshot.dict()
    scores: dict[str, tuple[float, str, float]] = {}
    share = count = None
    for metric in payload["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            share, count = float(metric["value"]["share"]), int(metric["value"]["count"])
        elif config["type"].endswith(":ValueDrift"):
            scores[config["column"]] = (float(metric["value"]), str(config["method"]),
                                        float(config["threshold"]))
    flags = {}
    for test in payload["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            flags[params["column"]] = test["status"] == "FAIL"
    if share is None or set(scores) != set(columns) or set(flags) != set(columns):
        raise RuntimeError("the Evidently snapshot lacks the drift metrics or tests of "
                           f"{sorted(set(columns) - set(scores) - set(flags))[:5]}")
    tested = tuple(ColumnDrift(c, scores[c][0], scores[c][2], scores[c][1], flags[c])
                   for c in columns)
    drifted = sum(c.drifted for c in tested)
    if drifted != count or not math.isclose(share, drifted / len(tested)):
        raise RuntimeError(f"Evidently's drifted-column count {count} (share {share}) disagrees "
                           f"with its per-column tests ({drifted} of {len(tested)})")
    return DriftResult(share=share, count=count, columns=tested, snapshot=snapshot,
                       n_reference=n_reference, n_current=n_current)


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *,
                  method: str = "wasserstein", threshold: float = 1.0,
                  drift_share: float = 0.5) -> DriftResult:
    """Drift of ``columns`` from ``reference`` (the champion's reference window)
    to ``current`` (the newest window): one Evidently stattest ``method`` per
    column, drifted at ``score >= threshold``. ``drift_share`` only sets the
    dataset verdict Evidently prints in its HTML (the retraining rule is
    :func:`decide_retrain`'s)."""
    return _drift_report(reference, current, columns, method=method, threshold=threshold,
                         drift_share=drift_share)


def prediction_drift(reference: pd.DataFrame, current: pd.DataFrame,
                     columns: Sequence[str] | None = None, *, method: str = "wasserstein",
                     threshold: float = 0.5, drift_share: float = 0.5) -> DriftResult:
    """:func:`feature_drift` over the decision's columns (default
    :data:`~tradingrl.monitoring.decisions.DECISION_COLUMNS`; the target is NaN
    at a symbol's last bar, whose decision has no fill yet, and NaN is left
    out of the test)."""
    from tradingrl.monitoring.decisions import DECISION_COLUMNS

    return _drift_report(reference, current, DECISION_COLUMNS if columns is None else columns,
                         method=method, threshold=threshold, drift_share=drift_share)


# ------------------------------------------------------------------ performance
@dataclass(frozen=True, eq=False)
class PerformanceResult:
    """The champion's decisions over the window, traded after costs.

    matured_bars: book steps whose outcome is known (a decision at t fills at
        t+1's open and is marked at t+1's close; the last bar's decision is
        not matured).
    live_sharpe: annualised Sharpe ratio of the book's simple returns over the
        matured steps (None: fewer than 2 steps, or no variance).
    oos_sharpe: the champion's walk-forward out-of-sample Sharpe ratio,
        recorded at promotion (None when not recorded).
    decay: oos_sharpe - live_sharpe (None when either is None).
    total_log_return: the book's log return over the matured steps.
    timestamps / log_returns: the book's fill times and per-step log returns.
    """

    matured_bars: int
    live_sharpe: float | None
    oos_sharpe: float | None
    decay: float | None
    total_log_return: float
    timestamps: np.ndarray
    log_returns: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        first = pd.Timestamp(self.timestamps[0]).isoformat() if self.matured_bars else None
        last = pd.Timestamp(self.timestamps[-1]).isoformat() if self.matured_bars else None
        return {"matured_bars": self.matured_bars, "live_sharpe": self.live_sharpe,
                "oos_sharpe": self.oos_sharpe, "decay": self.decay,
                "total_log_return": self.total_log_return, "first_fill": first,
                "last_fill": last}


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def live_performance(decisions: pd.DataFrame, markets: Mapping[str, Any], *,
                     env: Mapping[str, Any], oos_sharpe: float | None,
                     bars_per_year: int = 252) -> PerformanceResult:
    """Trade the champion's ``decisions`` on ``markets`` and compare its Sharpe
    ratio with ``oos_sharpe``.

    decisions: rows (symbol, timestamp, target): the risk-checked target
        decided at each bar t (bars <= t only), consecutive bars of each
        symbol's market; NaN targets are decisions without a fill bar yet
        (the market's last bar) and are left out.
    markets: symbol -> MarketArrays holding those bars (and the next).
    env: the environment's keyword arguments the backtest takes (costs,
        initial_cash, fill, min_trade_fraction); no risk function: the
        targets are already risk-checked.
    """
    from tradingrl.evaluation.books import backtest_sleeve, equal_weight_book
    from tradingrl.evaluation.performance import sharpe_ratio

    if not isinstance(decisions, pd.DataFrame):
        raise TypeError(f"decisions must be a pandas DataFrame, got {type(decisions).__name__}")
    missing = [c for c in ("symbol", "timestamp", "target") if c not in decisions.columns]
    if missing:
        raise ValueError(f"decisions lack column(s) {missing}")
    if env.get("risk_fn") is not None:
        raise ValueError("env must not carry a risk_fn: the decisions' targets are risk-checked")
    oos = _finite_or_none(oos_sharpe)
    steps, stamps = [], []
    for symbol, rows in decisions.groupby("symbol", sort=True):
        if symbol not in markets:
            raise ValueError(f"no market for symbol {symbol!r} of the decisions")
        market = markets[symbol]
        given = pd.DatetimeIndex(rows["timestamp"])  # naive times are UTC
        given = given.tz_localize("UTC") if given.tz is None else given.tz_convert("UTC")
        times = given.tz_localize(None).to_numpy(dtype="datetime64[ns]")
        order = np.argsort(times)
        bars = np.searchsorted(market.timestamps, times[order])
        inside = bars < len(market)
        if not inside.all() or not (market.timestamps[bars] == times[order]).all():
            raise ValueError(f"{symbol}: decision times are not bars of its market")
        targets = rows["target"].to_numpy(dtype=np.float64)[order]
        filled = bars < len(market) - 1  # the last bar's decision has no fill bar yet
        bars, targets = bars[filled], targets[filled]
        if bars.size == 0:
            continue
        if not np.isfinite(targets).all():
            raise ValueError(f"{symbol}: a decision before the market's last bar has no target")
        if np.any(np.diff(bars) != 1):
            raise ValueError(f"{symbol}: decisions must be on consecutive bars")
        steps.append(backtest_sleeve(market, targets, int(bars[0]), env))
        stamps.append(market.timestamps[bars + 1])
    if not steps:
        return PerformanceResult(0, None, oos, None, 0.0, np.array([], dtype="datetime64[ns]"),
                                 np.array([]))
    book = equal_weight_book(steps, stamps)
    simple = np.expm1(book.log_return)
    live = _finite_or_none(sharpe_ratio(simple, bars_per_year=bars_per_year)
                           if simple.size >= 2 else None)
    decay = None if live is None or oos is None else oos - live
    return PerformanceResult(int(simple.size), live, oos, decay, float(book.log_return.sum()),
                             book.timestamps, book.log_return)


# ------------------------------------------------------------------ the decision
@dataclass(frozen=True)
class RetrainThresholds:
    """When the drift check calls for retraining (params.yaml ``monitoring``).

    drift_share: share of the model's feature columns drifted, in (0, 1].
    prediction_drift_share: share of the decision columns drifted, in (0, 1].
    performance_decay: out-of-sample Sharpe minus live Sharpe (annualised), > 0.
    min_matured_bars: fewer matured decisions leave the performance rule
        unchecked (a Sharpe ratio over a few bars is noise), >= 2.
    """

    drift_share: float = 0.3
    prediction_drift_share: float = 0.5
    performance_decay: float = 2.5
    min_matured_bars: int = 126

    def __post_init__(self) -> None:
        for name in ("drift_share", "prediction_drift_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        decay = self.performance_decay
        if isinstance(decay, bool) or not isinstance(decay, int | float) \
                or not (math.isfinite(decay) and decay > 0):
            raise ValueError(f"performance_decay must be a finite number > 0, got {decay!r}")
        bars = self.min_matured_bars
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 2:
            raise ValueError(f"min_matured_bars must be an int >= 2, got {bars!r}")

    @classmethod
    def from_params(cls, monitoring: Mapping[str, Any]) -> RetrainThresholds:
        """From params.yaml's ``monitoring`` section (its ``*_threshold`` keys
        and ``min_matured_bars``)."""
        return cls(drift_share=monitoring["drift_share_threshold"],
                   prediction_drift_share=monitoring["prediction_drift_threshold"],
                   performance_decay=monitoring["performance_decay_threshold"],
                   min_matured_bars=monitoring["min_matured_bars"])


@dataclass(frozen=True)
class RuleCheck:
    """One retraining rule: ``fired`` when ``value`` reached ``threshold``;
    ``checked`` False when it could not be evaluated (``detail`` says why)."""

    name: str
    fired: bool
    checked: bool
    value: float | None
    threshold: float
    detail: str


@dataclass(frozen=True, eq=False)
class CheckResults:
    """What :func:`decide_retrain` weighs. prediction / performance: None
    when the reference holds no decision columns (a bundle without them)."""

    feature: DriftResult
    prediction: DriftResult | None
    performance: PerformanceResult | None

    def snapshots(self) -> dict[str, Any]:
        """The Evidently snapshots by the HTML file each is saved as:
        ``drift.html`` (features) and ``prediction_drift.html`` (when checked)."""
        out = {"drift.html": self.feature.snapshot}
        if self.prediction is not None:
            out["prediction_drift.html"] = self.prediction.snapshot
        return out


def _share_rule(name: str, what: str, result: DriftResult | None,
                threshold: float) -> RuleCheck:
    if result is None:
        return RuleCheck(name, False, False, None, threshold,
                         f"{what}: not checked, the reference window has no such columns")
    n = len(result.columns)
    fired = result.share >= threshold
    shown = ", ".join(result.drifted_columns[:6]) + (", ..." if result.count > 6 else "")
    detail = (f"{what}: {result.count} of {n} columns drifted ({result.share:.0%}) "
              f"{'>=' if fired else '<'} {threshold:.0%}" + (f" [{shown}]" if result.count else ""))
    return RuleCheck(name, fired, True, result.share, threshold, detail)


def decide_retrain(results: CheckResults,
                   thresholds: RetrainThresholds) -> tuple[bool, list[RuleCheck]]:
    """(retrain?, one RuleCheck per rule of :data:`RULES`): retraining is due
    when any rule fired. feature_drift: the drifted share of the model's
    features >= ``drift_share``; prediction_drift: the drifted share of the
    decision columns >= ``prediction_drift_share``; performance_decay:
    out-of-sample Sharpe - live Sharpe >= ``performance_decay`` over at least
    ``min_matured_bars`` matured decisions."""
    if not isinstance(results, CheckResults):
        raise TypeError(f"results must be CheckResults, got {type(results).__name__}")
    if not isinstance(thresholds, RetrainThresholds):
        raise TypeError(f"thresholds must be RetrainThresholds, got {type(thresholds).__name__}")
    checks = [
        _share_rule("feature_drift", "feature drift", results.feature, thresholds.drift_share),
        _share_rule("prediction_drift", "prediction drift", results.prediction,
                    thresholds.prediction_drift_share),
    ]
    perf, limit = results.performance, thresholds.performance_decay
    if perf is None:
        checks.append(RuleCheck("performance_decay", False, False, None, limit,
                                "performance: not checked, no decisions were replayed"))
    elif perf.matured_bars < thresholds.min_matured_bars:
        checks.append(RuleCheck(
            "performance_decay", False, False, None, limit,
            f"performance: not checked, {perf.matured_bars} matured decisions "
            f"(need {thresholds.min_matured_bars})"))
    elif perf.oos_sharpe is None:
        checks.append(RuleCheck("performance_decay", False, False, None, limit,
                                "performance: not checked, the champion has no recorded "
                                "out-of-sample Sharpe ratio"))
    elif perf.decay is None:
        checks.append(RuleCheck("performance_decay", False, False, None, limit,
                                "performance: not checked, the live Sharpe ratio is undefined "
                                "(the book's returns did not vary)"))
    else:
        fired = perf.decay >= limit
        checks.append(RuleCheck(
            "performance_decay", fired, True, perf.decay, limit,
            f"performance: live Sharpe {perf.live_sharpe:.2f} over {perf.matured_bars} matured "
            f"bars vs out-of-sample {perf.oos_sharpe:.2f}, decay {perf.decay:.2f} "
            f"{'>=' if fired else '<'} {limit:.2f}"))
    return any(c.fired for c in checks), checks
