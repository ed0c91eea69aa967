"""Self-contained HTML report of a walk-forward evaluation (``reports/evaluation.html``).

Inputs (what the evaluate stage produces):

- ``curves``: long DataFrame, one row per (series, bar). ``series`` is
  ``"policy"`` or a baseline name; ``fold`` the walk-forward fold (int);
  ``timestamp`` the *fill* bar (tz-aware UTC: a decision made at bar t fills
  at t+1, and the row is stamped t+1); ``log_return`` the bar's log return of
  the equal-weight book net of costs; ``position`` the mean absolute position
  over symbols (fraction of equity, in [0, 1]); ``cost`` the costs paid at the
  bar's fill as a fraction of book equity before the bar. Folds are
  consecutive, non-overlapping test blocks, and every series covers the same
  bars (a comparison on different bars would not be a comparison).
- ``evaluation``: ``{"policy": {"overall", "per_fold", "dsr"?, "seeds"?},
  "baselines": {name: {"overall", "per_fold"}}, "promotion"?, "config"?}``
  with :func:`tradingrl.evaluation.performance_summary` keys in ``overall``
  (fractions for returns and drawdowns, Sharpe annualised) and a per-period
  Sharpe in ``dsr``. ``None`` or NaN is an undefined statistic, shown "n/a".

Derived series (per series, folds concatenated in time order): equity
``exp(cumsum(log_return))`` after each fill bar (1 before the first);
drawdown ``-(1 - equity / running peak)``, the peak including the starting 1;
trailing Sharpe over ``rolling_window`` bars of simple returns
``expm1(log_return)``, annualised by ``sqrt(bars_per_year)``, bars <= t only
(the window runs across fold boundaries); cumulative cost drag
``cumsum(cost)`` (return points lost to costs, as ``cost_drag`` in
:func:`performance_summary`).

The verdict compares overall Sharpe ratios after costs from ``evaluation``:
the policy beats a baseline when its Sharpe is strictly higher; baselines
with an undefined Sharpe (e.g. flat) are not compared. plotly.js is embedded
once, inline, so the file opens with no network. Output is deterministic (no
generation time), so DVC sees an unchanged report as unchanged.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

CHART_IDS = ("equity", "drawdown", "rolling_sharpe", "position_distribution", "cumulative_costs")
CURVE_COLUMNS = ("series", "fold", "timestamp", "log_return", "position", "cost")
DECISIONS = ("promoted", "refused", "not evaluated")
# Series names end up in legends, where plotly renders a subset of HTML tags.
_SERIES_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\- ]{0,63}")
_TOTAL_RETURN_RTOL = 1e-6
_COLOURS = {"policy": "#111111", "buy_and_hold": "#1f77b4", "sma_crossover": "#ff7f0e",
            "flat": "#7f7f7f", "supervised": "#2ca02c", "random": "#9467bd",
            "equal_weight": "#17becf", "inverse_volatility": "#bcbd22"}
_SPARE_COLOURS = ("#d62728", "#8c564b", "#e377c2", "#aec7e8", "#98df8a")
# (key, column label, format) of the headline table.
HEADLINE = (("sharpe", "Sharpe", "num"), ("total_return", "Total return", "pct"),
            ("annualised_return", "Annualised return", "pct"),
            ("max_drawdown", "Max drawdown", "pct"), ("turnover", "Turnover", "num"),
            ("costs_paid", "Costs paid", "num"), ("hit_rate", "Hit rate", "pct"))
_PCT_KEYS = {"total_return", "annualised_return", "annualised_volatility", "max_drawdown",
             "var_95", "cvar_95", "hit_rate", "exposure", "time_in_market", "cost_drag",
             "costs_fraction_of_initial_equity"}
FOLD_COLUMNS = (("sharpe", "Sharpe", "num"), ("total_return", "Total return", "pct"),
                ("max_drawdown", "Max DD", "pct"), ("turnover", "Turnover", "num"))


# ------------------------------------------------------------------ formatting
def _number(value: Any, what: str) -> float | None:
    """A statistic as float, or None when undefined (None or NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number or None, got {type(value).__name__} {value!r}")
    value = float(value)
    return None if math.isnan(value) else value


def _fmt(value: Any, kind: str, what: str) -> str:
    """Display text: kind "pct" (fraction shown in %), "num", "int" or "prob"."""
    x = _number(value, what)
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    if kind == "pct":
        return f"{100.0 * x:.2f}%"
    if kind == "int":
        return f"{x:.0f}"
    if kind == "prob":
        return f"{x:.3f}"
    return f"{x:.4g}" if abs(x) >= 1e4 or (0 < abs(x) < 1e-3) else f"{x:.3f}"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str = "",
           row_classes: Sequence[str] | None = None) -> str:
    """HTML table; header entries are escaped here, cells must be escaped already."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{row_classes[i] if row_classes else ""}">'
        + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
        for i, row in enumerate(rows))
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ------------------------------------------------------------------ validation
def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _check_evaluation(evaluation: Any) -> tuple[Mapping[str, Any], dict[str, Mapping[str, Any]]]:
    """(policy block, {baseline name: block}) after checking the structure."""
    evaluation = _mapping(evaluation, "evaluation")
    for key in ("policy", "baselines"):
        if key not in evaluation:
            raise ValueError(f"evaluation has no {key!r} entry")
    policy = _mapping(evaluation["policy"], "evaluation['policy']")
    baselines = dict(_mapping(evaluation["baselines"], "evaluation['baselines']"))
    if "policy" in baselines:
        raise ValueError("a baseline may not be called 'policy'")
    for name, block in {"policy": policy, **baselines}.items():
        if not (isinstance(name, str) and _SERIES_NAME.fullmatch(name)):
            raise ValueError(f"series name {name!r} must match {_SERIES_NAME.pattern}")
        block = _mapping(block, f"evaluation[{name!r}]")
        overall = _mapping(block.get("overall"), f"{name} 'overall'")
        if "sharpe" not in overall:
            raise ValueError(f"{name} 'overall' has no 'sharpe'")
        for key, value in overall.items():
            _number(value, f"{name} overall[{key!r}]")
        per_fold = block.get("per_fold")
        if not isinstance(per_fold, Sequence) or isinstance(per_fold, str):
            raise TypeError(f"{name} 'per_fold' must be a list of mappings")
        for row in per_fold:
            fold = _mapping(row, f"{name} per_fold row").get("fold")
            if isinstance(fold, bool) or not isinstance(fold, numbers.Integral):
                raise TypeError(f"{name} per_fold 'fold' must be an integer, got {fold!r}")
    return policy, baselines


def _check_curves(curves: Any, names: set[str]) -> pd.DataFrame:
    """curves sorted by (series, timestamp), checked against the module's contract."""
    import pandas as pd

    if not isinstance(curves, pd.DataFrame):
        raise TypeError(f"curves must be a pandas DataFrame, got {type(curves).__name__}")
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lacks columns {missing}")
    if curves.empty:
        raise ValueError("curves has no rows")
    ts = curves["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) or str(ts.dtype.tz) != "UTC":
        raise ValueError(f"curves.timestamp must be tz-aware UTC, got dtype {ts.dtype}")
    if not pd.api.types.is_integer_dtype(curves["fold"]):
        raise ValueError(f"curves.fold must be integers, got dtype {curves['fold'].dtype}")
    for column in ("log_return", "position", "cost"):
        if not pd.api.types.is_numeric_dtype(curves[column]) or curves[column].dtype == bool:
            raise TypeError(f"curves.{column} must be numeric, got dtype {curves[column].dtype}")
        if not np.isfinite(curves[column].to_numpy(dtype=float)).all():
            raise ValueError(f"curves.{column} has NaN or inf values")
    if (curves["position"] < 0.0).any():
        raise ValueError("curves.position must be >= 0 (gross exposure: mean |position|, "
                         "which a short can push past 1 as prices move)")
    if (curves["cost"] < 0.0).any():
        raise ValueError("curves.cost must be >= 0 (fraction of equity before the bar)")
    found = set(curves["series"].unique())
    if found != names:
        raise ValueError(f"curves series {sorted(found, key=str)} != evaluation's "
                         f"policy + baselines {sorted(names)}")
    if curves.duplicated(["series", "timestamp"]).any():
        raise ValueError("curves has duplicate (series, timestamp) rows")
    curves = curves.sort_values(["series", "timestamp"], kind="stable").reset_index(drop=True)
    reference = curves.loc[curves["series"] == "policy", ["fold", "timestamp"]]
    if (np.diff(reference["fold"].to_numpy()) < 0).any():
        raise ValueError("folds overlap in time: fold numbers must not decrease with timestamp")
    for name, group in curves.groupby("series", sort=False):
        if not (np.array_equal(group["timestamp"].to_numpy(), reference["timestamp"].to_numpy())
                and np.array_equal(group["fold"].to_numpy(), reference["fold"].to_numpy())):
            raise ValueError(f"series {name!r} does not cover the policy's (fold, timestamp) bars")
    return curves


def _check_total_returns(name: str, block: Mapping[str, Any], rows: pd.DataFrame) -> None:
    """The curves and the statistics must describe the same returns: a stated
    total_return (overall, and per fold) equals exp(sum(log_return)) - 1."""
    stated = [("overall", block["overall"].get("total_return"), rows["log_return"])]
    for row in block["per_fold"]:
        fold_rows = rows.loc[rows["fold"] == row["fold"], "log_return"]
        if "total_return" in row and not fold_rows.empty:
            stated.append((f"fold {row['fold']}", row["total_return"], fold_rows))
    for where, value, log_returns in stated:
        value = _number(value, f"{name} {where} total_return")
        if value is None:
            continue
        from_curves = math.expm1(float(log_returns.sum()))
        if not math.isclose(value, from_curves, rel_tol=_TOTAL_RETURN_RTOL, abs_tol=1e-9):
            raise ValueError(f"{name} {where}: total_return {value!r} != exp(sum(log_return)) - 1"
                             f" = {from_curves!r} of its curve")


# ---------------------------------------------------------------------- series
def _derived_series(curves: pd.DataFrame, *, rolling_window: int = 63,
                   bars_per_year: int = 252) -> dict[str, pd.DataFrame]:
    """Per series of checked curves (sorted by timestamp): fold, timestamp, position,
    equity, drawdown (<= 0, fraction), rolling_sharpe (annualised, NaN before a
    full window) and cumulative_cost (sum of cost fractions). See the module
    docstring for the definitions and timing."""
    from tradingrl.evaluation.performance import drawdown_series, rolling_sharpe

    out = {}
    for name, group in curves.groupby("series", sort=False):
        log_r = group["log_return"].to_numpy(dtype=float)
        simple = np.expm1(log_r)
        out[str(name)] = group[["fold", "timestamp", "position"]].assign(
            equity=np.exp(np.cumsum(log_r)),
            drawdown=-drawdown_series(simple),
            rolling_sharpe=rolling_sharpe(simple, rolling_window, bars_per_year),
            cumulative_cost=np.cumsum(group["cost"].to_numpy(dtype=float)),
        ).reset_index(drop=True)
    return out


def _best_baseline(baselines: Mapping[str, Mapping[str, Any]]) -> tuple[str | None, float | None]:
    """The baseline with the highest defined overall Sharpe (first on ties)."""
    best, best_sharpe = None, None
    for name, block in baselines.items():
        sharpe = _number(block["overall"]["sharpe"], f"{name} sharpe")
        if sharpe is not None and (best_sharpe is None or sharpe > best_sharpe):
            best, best_sharpe = name, sharpe
    return best, best_sharpe


# --------------------------------------------------------------------- figures
def _colour(name: str, order: Sequence[str]) -> str:
    if name in _COLOURS:
        return _COLOURS[name]
    unknown = [n for n in order if n not in _COLOURS]
    return _SPARE_COLOURS[unknown.index(name) % len(_SPARE_COLOURS)]


def _fold_marks(frame: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Shapes (dotted line at each fold's first fill bar after the first fold)
    and annotations (fold label at every fold's start)."""
    starts = frame.groupby("fold", sort=False)["timestamp"].min()
    shapes, notes = [], []
    for i, (fold, start) in enumerate(starts.items()):
        x = start.tz_convert("UTC").tz_localize(None).isoformat()
        if i:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x,
                           "y0": 0, "y1": 1, "line": {"color": "#888", "dash": "dot", "width": 1}})
        notes.append({"x": x, "xref": "x", "y": 1.0, "yref": "paper", "text": f"fold {fold}",
                      "showarrow": False, "xanchor": "left", "yanchor": "bottom",
                      "font": {"size": 10, "color": "#666"}})
    return shapes, notes


def _prepare(evaluation: Any, curves: Any, rolling_window: int, bars_per_year: int) -> tuple[
        Mapping[str, Any], dict[str, Mapping[str, Any]], pd.DataFrame, dict[str, pd.DataFrame]]:
    """Checked (policy, baselines, curves, derived series); raises on bad input."""
    policy, baselines = _check_evaluation(evaluation)
    order = ["policy", *baselines]
    checked = _check_curves(curves, set(order))
    for name in order:
        block = policy if name == "policy" else baselines[name]
        _check_total_returns(name, block, checked.loc[checked["series"] == name])
    folds = [row["fold"] for row in policy["per_fold"]]
    if len(set(folds)) != len(folds) or set(folds) != set(checked["fold"].unique().tolist()):
        raise ValueError(f"policy per_fold folds {folds} are not the curves' folds "
                         f"{sorted(checked['fold'].unique().tolist())} (each once)")
    series = _derived_series(checked, rolling_window=rolling_window, bars_per_year=bars_per_year)
    return policy, baselines, checked, series


def build_figures(evaluation: Mapping[str, Any], curves: pd.DataFrame, *,
                  rolling_window: int = 63, bars_per_year: int = 252,
                  log_equity: bool = False) -> dict[str, go.Figure]:
    """The report's plotly figures keyed by :data:`CHART_IDS`. Time charts
    have one trace per series (policy first, then baselines in the order of
    ``evaluation['baselines']``), x = fill bar in UTC (tz dropped for plotly),
    and dotted lines at fold boundaries. The position histogram shows the
    policy and, when present, the ``supervised`` baseline (percent of bars,
    bins 0.05 wide). Inputs are checked as in :func:`render_evaluation_report`."""
    _, baselines, _, series = _prepare(evaluation, curves, rolling_window, bars_per_year)
    return _figures(series, ["policy", *baselines], rolling_window, log_equity)


def _figures(series: Mapping[str, pd.DataFrame], order: Sequence[str], rolling_window: int,
             log_equity: bool) -> dict[str, go.Figure]:
    import plotly.graph_objects as go

    shapes, notes = _fold_marks(series["policy"])
    specs = {
        "equity": ("equity", "Equity after costs (1 = start)", None),
        "drawdown": ("drawdown", "Drawdown from running peak", ".0%"),
        "rolling_sharpe": ("rolling_sharpe",
                           f"Rolling Sharpe ({rolling_window} bars, annualised)", None),
        "cumulative_costs": ("cumulative_cost", "Cumulative cost drag (sum of cost / equity)",
                             ".2%"),
    }
    figures: dict[str, go.Figure] = {}
    for chart, (column, title, tickformat) in specs.items():
        fig = go.Figure()
        for name in order:
            frame = series[name]
            fig.add_trace(go.Scatter(
                x=frame["timestamp"].dt.tz_localize(None).to_numpy(),
                y=frame[column].to_numpy(dtype=float), name=name, mode="lines",
                line={"color": _colour(name, order), "width": 2.5 if name == "policy" else 1.3}))
        fig.update_layout(title=title, shapes=shapes, annotations=notes, hovermode="x unified")
        fig.update_xaxes(title="fill bar (UTC)")
        if tickformat:
            fig.update_yaxes(tickformat=tickformat)
        figures[chart] = fig
    if log_equity:
        figures["equity"].update_yaxes(type="log")
    histogram = go.Figure()
    for name in [n for n in ("policy", "supervised") if n in series]:
        histogram.add_trace(go.Histogram(
            x=series[name]["position"].to_numpy(dtype=float), name=name, histnorm="percent",
            xbins={"start": 0.0, "end": 1.0 + 1e-9, "size": 0.05}, opacity=0.65,
            marker={"color": _colour(name, order)}))
    histogram.update_layout(title="Position distribution (mean |position| over symbols)",
                            barmode="overlay", xaxis_title="position (fraction of equity)",
                            yaxis_title="% of bars")
    figures["position_distribution"] = histogram
    for fig in figures.values():
        fig.update_layout(template="plotly_white", height=380,
                          margin={"l": 60, "r": 20, "t": 60, "b": 50},
                          legend={"orientation": "h", "y": -0.2})
    return {chart: figures[chart] for chart in CHART_IDS}


# ---------------------------------------------------------------------- blocks
def _verdict(policy: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]],
             best: str | None) -> tuple[str, str]:
    """(css class, escaped HTML) of the Sharpe-after-costs comparison."""
    sharpe = _number(policy["overall"]["sharpe"], "policy sharpe")
    defined = {n: s for n, b in baselines.items()
               if (s := _number(b["overall"]["sharpe"], f"{n} sharpe")) is not None}
    if sharpe is None:
        return "unknown", "Cannot tell: the policy's Sharpe ratio is undefined (n/a)."
    if best is None:
        return "unknown", "Cannot tell: no baseline has a defined Sharpe ratio."
    beaten = sorted(n for n, s in defined.items() if sharpe > s)
    detail = (f"Sharpe after costs: policy {sharpe:.3f}, best baseline {_esc(best)} "
              f"{defined[best]:.3f}; policy beat {len(beaten)} of {len(defined)} baselines "
              f"with a defined Sharpe.")
    if len(beaten) == len(defined):
        return "pass", f"<strong>The policy beat every baseline after costs.</strong> {detail}"
    return "fail", (f"<strong>The policy did not beat the best baseline ({_esc(best)}) after "
                    f"costs.</strong> {detail}")


def _promotion_block(promotion: Any) -> tuple[str, str]:
    if promotion is None:
        return "unknown", "<p><strong>Promotion: not decided yet.</strong></p>"
    promotion = _mapping(promotion, "evaluation['promotion']")
    decision = promotion.get("decision")
    if decision not in DECISIONS:
        raise ValueError(f"promotion decision must be one of {DECISIONS}, got {decision!r}")
    reasons = promotion.get("reasons", [])
    if isinstance(reasons, str) or not all(isinstance(r, str) for r in reasons):
        raise TypeError("promotion 'reasons' must be a list of strings")
    parts = [f"<p><strong>Promotion: {_esc(decision)}</strong></p>"]
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{_esc(r)}</li>" for r in reasons) + "</ul>")
    rows = []
    for check in promotion.get("checks", []):
        check = _mapping(check, "promotion check")
        passed = check.get("passed")
        if passed is not None and not isinstance(passed, bool):
            raise TypeError(f"promotion check 'passed' must be a bool or None, got {passed!r}")
        mark = "n/a" if passed is None else ("passed" if passed else "failed")
        name = check.get("name", "?")
        rows.append([_esc(name), _fmt(check.get("value"), "num", f"check {name} value"),
                     _fmt(check.get("threshold"), "num", f"check {name} threshold"),
                     f'<span class="{mark}">{mark}</span>'])
    if rows:
        parts.append(_table(["check", "value", "threshold", "result"], rows, cls="checks"))
    css = {"promoted": "pass", "refused": "fail", "not evaluated": "unknown"}[decision]
    return css, "".join(parts)


def _headline(policy: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]],
              best: str | None) -> str:
    rows, classes = [], []
    for name, block in {"policy": policy, **baselines}.items():
        label = _esc(name) + (" (best baseline)" if name == best else "")
        rows.append([label] + [_fmt(block["overall"].get(k), kind, f"{name} {k}")
                               for k, _, kind in HEADLINE])
        classes.append("policy" if name == "policy" else ("best" if name == best else ""))
    return _table(["series", *(label for _, label, _ in HEADLINE)], rows, cls="numbers",
                  row_classes=classes)


def _all_statistics(policy: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]) -> str:
    blocks = {"policy": policy, **baselines}
    keys = list(dict.fromkeys(k for b in blocks.values() for k in b["overall"]))
    rows = [[_esc(k)] + [_fmt(b["overall"].get(k), "pct" if k in _PCT_KEYS else "num",
                              f"{n} {k}") for n, b in blocks.items()] for k in keys]
    return _table(["statistic", *blocks], rows, cls="numbers")


def _dsr_block(policy: Mapping[str, Any], bars_per_year: int,
               trials: Mapping[str, Any] | None = None) -> str:
    dsr = policy.get("dsr")
    if dsr is None:
        return "<p>Deflated Sharpe ratio: not computed.</p>"
    dsr = _mapping(dsr, "policy 'dsr'")
    sr = _number(dsr.get("sr"), "dsr sr")
    rows = [
        ["Deflated Sharpe ratio (DSR)", _fmt(dsr.get("dsr"), "prob", "dsr")],
        ["PSR vs Sharpe 0", _fmt(dsr.get("psr_vs_zero"), "prob", "psr_vs_zero")],
        ["Sharpe per bar (annualised)", f"{_fmt(sr, 'num', 'sr')} ("
         + ("n/a" if sr is None else f"{sr * math.sqrt(bars_per_year):.3f}") + ")"],
        ["SR0: best of N skill-free trials, per bar", _fmt(dsr.get("sr0"), "num", "sr0")],
        ["Trials N", _fmt(dsr.get("n_trials"), "int", "n_trials")],
        ["Bars", _fmt(dsr.get("n_obs"), "int", "n_obs")],
        ["Skewness / kurtosis (normal: 0 / 3)", _fmt(dsr.get("skew"), "num", "skew") + " / "
         + _fmt(dsr.get("kurtosis"), "num", "kurtosis")],
    ]
    explain = ("The DSR is the probability that the policy's true Sharpe ratio exceeds SR0, the "
               "Sharpe ratio the best of N skill-free configurations would reach by luck; N "
               "counts every configuration tried on the same data and folds (this run's "
               "tuning trials times RL seeds, and every other configuration evaluated before), "
               "so more trials raise the bar.")
    seeds = policy.get("seeds")
    seed_text = "Seeds: not reported."
    if seeds is not None:
        seeds = _mapping(seeds, "policy 'seeds'")
        seed_text = (f"Across {_fmt(seeds.get('n_seeds'), 'int', 'n_seeds')} RL seeds: Sharpe "
                     f"{_fmt(seeds.get('sharpe_mean'), 'num', 'sharpe_mean')} mean, "
                     f"{_fmt(seeds.get('sharpe_std'), 'num', 'sharpe_std')} standard deviation.")
    trial_text = "Trial history: not reported."
    if trials is not None:
        trials = _mapping(trials, "evaluation['trials']")
        sharpes = ", ".join("n/a" if v is None else f"{float(v):.4f}"
                            for v in trials.get("trial_sharpes") or [])
        trial_text = (f"N = {_fmt(trials.get('n_trials'), 'int', 'n_trials')}: "
                      f"{trials.get('source', 'source not reported')}. Trial Sharpe ratios "
                      f"per bar: {sharpes or 'none'}.")
    return (f"<p>{_esc(explain)}</p>{_table(['', 'value'], rows)}<p>{_esc(seed_text)}</p>"
            f"<p>{_esc(trial_text)}</p>")


def _per_fold(policy: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]],
              best: str | None) -> str:
    other = {row["fold"]: row for row in baselines[best]["per_fold"]} if best else {}
    header = ["fold", "test start", "test end"]
    for _, label, _ in FOLD_COLUMNS:
        header += [f"{label} policy"] + ([f"{label} {best}"] if best else [])
    rows, wins, compared = [], 0, 0
    for row in policy["per_fold"]:
        cells = [_esc(row["fold"]), _esc(row.get("test_start", "n/a")),
                 _esc(row.get("test_end", "n/a"))]
        base = other.get(row["fold"], {})
        for key, _, kind in FOLD_COLUMNS:
            cells.append(_fmt(row.get(key), kind, f"policy fold {row['fold']} {key}"))
            if best:
                cells.append(_fmt(base.get(key), kind, f"{best} fold {row['fold']} {key}"))
        mine = _number(row.get("sharpe"), "policy fold sharpe")
        theirs = _number(base.get("sharpe"), "baseline fold sharpe")
        if mine is not None and theirs is not None:
            compared += 1
            wins += mine > theirs
        rows.append(cells)
    summary = (f"The policy's Sharpe beat {_esc(best)}'s in {wins} of {compared} folds where "
               "both are defined." if best else "No baseline with a defined Sharpe to compare.")
    return f"<p>{summary}</p>" + _table(header, rows, cls="numbers")


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items += _flatten(value, f"{name}.")
        else:
            items.append((name, value if isinstance(value, str) else json.dumps(value,
                                                                                default=str)))
    return items


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}main{max-width:1200px;margin:auto;padding:1.5em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.banner{border-radius:6px;padding:.8em 1.2em;margin:.8em 0;border-left:8px solid}
.pass{background:#e6f4ea;border-color:#1e8e3e}.fail{background:#fce8e6;border-color:#d93025}
.unknown{background:#f1f3f4;border-color:#80868b}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em;background:#fff}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}
table.numbers td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
tr.policy{font-weight:600;background:#eef3fb}tr.best{background:#fff7e0}
span.passed{color:#1e8e3e;font-weight:600}span.failed{color:#d93025;font-weight:600}
.chart{background:#fff;border:1px solid #e3e3e3;margin:.8em 0}.meta{color:#666}
"""


def _chart_html(chart: str, fig: go.Figure) -> str:
    """The figure's div and its Plotly.newPlot script; plotly.js is not included."""
    return fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                       div_id=f"chart-{chart}", config={"displaylogo": False, "responsive": True})


def render_evaluation_report(evaluation: Mapping[str, Any], curves: pd.DataFrame, *,
                             title: str = "tradingrl walk-forward evaluation",
                             rolling_window: int = 63, bars_per_year: int = 252,
                             log_equity: bool = False) -> str:
    """The report as one HTML document with plotly.js inlined once (no
    network needed to open it). Raises ValueError/TypeError on inputs that
    break the contract in the module docstring."""
    from plotly.offline import get_plotlyjs

    policy, baselines, checked, series = _prepare(evaluation, curves, rolling_window,
                                                  bars_per_year)
    figures = _figures(series, ["policy", *baselines], rolling_window, log_equity)
    best, _ = _best_baseline(baselines)
    verdict_css, verdict = _verdict(policy, baselines, best)
    promo_css, promo = _promotion_block(evaluation.get("promotion"))
    config = evaluation.get("config")
    config_html = "<p>No configuration recorded.</p>" if config is None else _table(
        ["key", "value"], [[_esc(k), _esc(v)] for k, v in
                           _flatten(_mapping(config, "evaluation['config']"))])
    charts = "".join(f'<div class="chart">{_chart_html(chart, fig)}</div>'
                     for chart, fig in figures.items())
    stamps = series["policy"]["timestamp"]
    meta = (f"{len(series)} series, {checked['fold'].nunique()} folds, {len(stamps)} fill bars "
            f"from {stamps.iloc[0].isoformat()} to {stamps.iloc[-1].isoformat()}; returns net "
            f"of costs; rolling Sharpe over {rolling_window} bars, {bars_per_year} bars per year.")
    sections = [
        ("verdict", f"banner {verdict_css}", "", f"<p>{verdict}</p>"),
        ("promotion", f"banner {promo_css}", "", promo),
        ("headline", "", "Policy vs baselines (after costs)", _headline(policy, baselines, best)),
        ("dsr", "", "Deflated Sharpe ratio", _dsr_block(policy, bars_per_year,
                                                            evaluation.get("trials"))),
        ("charts", "", "Charts", charts),
        ("per-fold", "", "Per fold", _per_fold(policy, baselines, best)),
        ("config", "", "Configuration", config_html),
        ("all-statistics", "", "", "<details><summary>All statistics</summary>"
         + _all_statistics(policy, baselines) + "</details>"),
    ]
    body = "\n".join(f'<section id="{sid}" class="{cls}">' + (f"<h2>{heading}</h2>" if heading
                                                             else "") + f"{content}</section>"
                     for sid, cls, heading, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head><body><main>\n'
            f'<h1>{_esc(title)}</h1><p class="meta">{_esc(meta)}</p>\n{body}\n'
            "</main></body></html>\n")


def write_evaluation_report(evaluation: Mapping[str, Any], curves: pd.DataFrame, path: Path,
                            **kw: Any) -> Path:
    """Render (keywords as :func:`render_evaluation_report`) and write UTF-8
    HTML to ``path``, creating its parent directory; returns ``path``."""
    text = render_evaluation_report(evaluation, curves, **kw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
