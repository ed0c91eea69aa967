"""The self-contained HTML evaluation report (tradingrl.evaluation.report).

A realistic fixture (4 walk-forward folds of 175 bars, policy + 4 baselines,
statistics from performance_summary / deflated_sharpe_ratio) checks the
document; a 4-bar hand-computed case checks the derived series exactly. The
`browser` test opens the report in headless Chromium with every network
request sent to a dead proxy and checks that plotly drew each chart.
"""

from __future__ import annotations

import copy
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from tests.browser import NO_CHROMIUM, chromium, dump_dom
from tradingrl.evaluation import deflated_sharpe_ratio, performance_summary
from tradingrl.evaluation.report import (
    CHART_IDS,
    build_figures,
    render_evaluation_report,
    write_evaluation_report,
)

N_FOLDS, FOLD_BARS = 4, 175
COST_RATE = 0.0005  # cost per unit of traded notional, fraction of equity
REFUSAL = "deflated Sharpe 0.41 < 0.95 <script>alert(1)</script>"


def _undefined_as_none(stats: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in stats.items()}


def make_evaluation(seed: int = 7) -> tuple[dict, pd.DataFrame]:
    """(evaluation, curves) as the evaluate stage produces them. Positions are
    decided from returns up to the previous bar; costs are COST_RATE times the
    change in position, paid at the fill."""
    rng = np.random.default_rng(seed)
    n = N_FOLDS * FOLD_BARS
    timestamps = pd.date_range("2021-01-04", periods=n, freq="B", tz="UTC")
    folds = np.repeat(np.arange(1, N_FOLDS + 1), FOLD_BARS)
    market = rng.normal(0.0003, 0.01, n)
    past = np.concatenate(([0.0], market[:-1]))  # return known when deciding bar t
    trend = np.convolve(past, np.ones(20) / 20.0)[:n]
    positions = {
        "policy": np.clip(0.6 + 0.3 * np.sin(np.arange(n) / 15.0) + rng.normal(0, 0.05, n), 0, 1),
        "buy_and_hold": np.ones(n),
        "sma_crossover": (trend > 0.0).astype(float),
        "flat": np.zeros(n),
        "supervised": rng.uniform(0.0, 1.0, n),
    }
    frames, evaluation = [], {"baselines": {}}
    for name, pos in positions.items():
        turnover = np.abs(np.diff(np.concatenate(([0.0], pos))))
        cost = COST_RATE * turnover
        log_r = np.log1p(pos * market) + np.log1p(-cost)
        frames.append(pd.DataFrame({"series": name, "fold": folds, "timestamp": timestamps,
                                    "log_return": log_r, "position": pos, "cost": cost}))

        def stats(part: slice, log_r=log_r, pos=pos, turnover=turnover, cost=cost) -> dict:
            equity_before = np.exp(np.concatenate(([0.0], np.cumsum(log_r[part])[:-1])))
            return _undefined_as_none(performance_summary(
                log_r[part], positions=pos[part], turnover=turnover[part],
                costs=cost[part] * equity_before))

        per_fold = []
        for k in range(1, N_FOLDS + 1):
            part = slice((k - 1) * FOLD_BARS, k * FOLD_BARS)
            per_fold.append({"fold": k, "test_start": str(timestamps[part.start].date()),
                             "test_end": str(timestamps[part.stop - 1].date()), **stats(part)})
        block = {"overall": stats(slice(0, n)), "per_fold": per_fold}
        if name == "policy":
            block["dsr"] = deflated_sharpe_ratio(log_r, n_trials=6)
            block["seeds"] = {"sharpe_mean": 0.81, "sharpe_std": 0.23, "n_seeds": 3}
            evaluation["policy"] = block
        else:
            evaluation["baselines"][name] = block
    evaluation["promotion"] = {
        "decision": "refused", "reasons": [REFUSAL],
        "checks": [{"name": "dsr", "value": 0.41, "threshold": 0.95, "passed": False},
                   {"name": "beats_best_baseline", "value": None, "threshold": None,
                    "passed": None}]}
    evaluation["config"] = {"algorithm": "PPO", "seeds": [0, 1, 2], "folds": N_FOLDS,
                            "costs": {"commission_bps": 5}}
    return evaluation, pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def report_inputs() -> tuple[dict, pd.DataFrame]:
    return make_evaluation()


@pytest.fixture(scope="module")
def report_html(report_inputs) -> str:
    evaluation, curves = report_inputs
    return render_evaluation_report(evaluation, curves)


# ------------------------------------------------------- hand-computed series
def tiny_inputs() -> tuple[dict, pd.DataFrame]:
    """Policy simple returns 0.1, -0.1, 0.05, 0 over two 2-bar folds; the
    baseline earns 0.01 then 0 each bar."""
    ts = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    policy = np.log1p([0.1, -0.1, 0.05, 0.0])
    base = np.log1p([0.01, 0.0, 0.01, 0.0])
    curves = pd.concat([
        pd.DataFrame({"series": "policy", "fold": [1, 1, 2, 2], "timestamp": ts,
                      "log_return": policy, "position": [1.0, 0.5, 0.5, 0.0],
                      "cost": [0.001, 0.0, 0.002, 0.0]}),
        pd.DataFrame({"series": "buy_and_hold", "fold": [1, 1, 2, 2], "timestamp": ts,
                      "log_return": base, "position": 1.0, "cost": [0.001, 0.0, 0.0, 0.0]}),
    ], ignore_index=True)
    fold_rows = [{"fold": 1, "sharpe": None}, {"fold": 2, "sharpe": 1.0}]
    policy_folds = [{"fold": 1, "sharpe": None, "total_return": 1.1 * 0.9 - 1.0},
                    {"fold": 2, "sharpe": 1.0, "total_return": 0.05}]
    evaluation = {
        "policy": {"overall": {"sharpe": 0.2, "total_return": 1.1 * 0.9 * 1.05 - 1.0},
                   "per_fold": policy_folds},
        "baselines": {"buy_and_hold": {"overall": {"sharpe": 0.5, "total_return": 1.01**2 - 1},
                                       "per_fold": fold_rows}},
    }
    return evaluation, curves


def test_derived_series_equal_hand_computed_values():
    evaluation, curves = tiny_inputs()
    figs = build_figures(evaluation, curves, rolling_window=2, bars_per_year=1)
    policy = {chart: figs[chart].data[0] for chart in CHART_IDS}
    equity = [1.1, 1.1 * 0.9, 1.1 * 0.9 * 1.05, 1.1 * 0.9 * 1.05]
    np.testing.assert_allclose(policy["equity"].y, equity, rtol=1e-12)
    # Drawdown from the running peak 1.1 (the start, 1, is below it).
    np.testing.assert_allclose(policy["drawdown"].y, [0.0, -0.1, -(1 - 1.0395 / 1.1),
                                                      -(1 - 1.0395 / 1.1)], atol=1e-12)
    # Window of 2 bars, ddof 1, bars_per_year 1: (0.1, -0.1) -> 0;
    # (-0.1, 0.05) -> -0.025 / (0.15 / sqrt 2); (0.05, 0) -> 0.025 / (0.05 / sqrt 2).
    sharpe = policy["rolling_sharpe"].y
    assert math.isnan(sharpe[0])
    np.testing.assert_allclose(sharpe[1:], [0.0, -0.025 / (0.15 / math.sqrt(2)),
                                            0.025 / (0.05 / math.sqrt(2))], atol=1e-12)
    np.testing.assert_allclose(policy["cumulative_costs"].y, [0.001, 0.001, 0.003, 0.003])
    np.testing.assert_allclose(figs["equity"].data[1].y, [1.01, 1.01, 1.0201, 1.0201])
    np.testing.assert_array_equal(policy["position_distribution"].x, [1.0, 0.5, 0.5, 0.0])


def test_fold_boundaries_marked_at_first_fill_bar_of_each_later_fold():
    evaluation, curves = tiny_inputs()
    fig = build_figures(evaluation, curves, rolling_window=2)["drawdown"]
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [("2024-01-03T00:00:00",) * 2]
    assert [(a.text, a.x) for a in fig.layout.annotations] == [
        ("fold 1", "2024-01-01T00:00:00"), ("fold 2", "2024-01-03T00:00:00")]


def test_row_order_of_curves_does_not_matter():
    evaluation, curves = tiny_inputs()
    shuffled = curves.sample(frac=1.0, random_state=3)
    a = build_figures(evaluation, curves, rolling_window=2)["equity"]
    b = build_figures(evaluation, shuffled, rolling_window=2)["equity"]
    for ta, tb in zip(a.data, b.data, strict=True):
        np.testing.assert_array_equal(ta.y, tb.y)
        np.testing.assert_array_equal(ta.x, tb.x)


def test_equity_traces_are_exp_cumsum_of_each_series(report_inputs):
    evaluation, curves = report_inputs
    figs = build_figures(evaluation, curves, log_equity=True)
    names = [trace.name for trace in figs["equity"].data]
    assert names == ["policy", "buy_and_hold", "sma_crossover", "flat", "supervised"]
    for trace in figs["equity"].data:
        rows = curves[curves["series"] == trace.name].sort_values("timestamp")
        np.testing.assert_allclose(trace.y, np.exp(np.cumsum(rows["log_return"].to_numpy())),
                                   rtol=1e-12)
        np.testing.assert_array_equal(trace.x, rows["timestamp"].dt.tz_localize(None).to_numpy())
    assert figs["equity"].layout.yaxis.type == "log"
    assert len(figs["equity"].layout.shapes) == N_FOLDS - 1
    assert [t.name for t in figs["position_distribution"].data] == ["policy", "supervised"]


# --------------------------------------------------------------- the document
def _outside_bundle(html_text: str) -> str:
    from plotly.offline import get_plotlyjs

    return html_text.replace(get_plotlyjs(), "")


def test_plotly_is_embedded_once_and_nothing_loads_from_the_network(report_html):
    from plotly.offline import get_plotlyjs

    assert report_html.count(get_plotlyjs()) == 1
    assert report_html.count("plotly.js v") == 1  # the bundle's banner: no second copy
    rest = _outside_bundle(report_html)
    assert re.search(r"<script[^>]*\bsrc=", rest) is None
    assert re.search(r"<link\b", rest) is None
    assert re.search(r"https?:|//cdn|@import|url\(", rest) is None
    assert "MathJax" not in rest


def test_every_chart_has_one_div_and_one_plot_call(report_html):
    for chart in CHART_IDS:
        assert report_html.count(f'id="chart-{chart}"') == 1
        assert len(re.findall(rf'Plotly\.newPlot\(\s*"chart-{chart}"', report_html)) == 1


def _table_rows(html_text: str, section: str) -> list[list[str]]:
    body = re.search(rf'<section id="{section}"[^>]*>(.*?)</section>', html_text, re.DOTALL).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL)
    return [re.findall(r"<td>(.*?)</td>", row, re.DOTALL) for row in rows[1:]]  # skip header


def test_headline_table_shows_values_and_na_for_undefined(report_inputs, report_html):
    evaluation, _ = report_inputs
    rows = {row[0]: row for row in _table_rows(report_html, "headline")}
    assert set(rows) == {"policy", "buy_and_hold", "sma_crossover (best baseline)", "flat",
                         "supervised"}
    policy = evaluation["policy"]["overall"]
    assert rows["policy"][1] == f"{policy['sharpe']:.3f}"
    assert rows["policy"][2] == f"{100 * policy['total_return']:.2f}%"
    # Flat: zero variance, Sharpe undefined; no bar with a position: hit rate undefined.
    assert evaluation["baselines"]["flat"]["overall"]["sharpe"] is None
    assert rows["flat"][1] == "n/a" and rows["flat"][7] == "n/a"
    assert rows["flat"][2] == "0.00%"


def test_per_fold_table_pairs_policy_with_best_baseline(report_inputs, report_html):
    evaluation, _ = report_inputs
    rows = _table_rows(report_html, "per-fold")
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    policy_folds = evaluation["policy"]["per_fold"]
    best_folds = evaluation["baselines"]["sma_crossover"]["per_fold"]
    for row, mine, theirs in zip(rows, policy_folds, best_folds, strict=True):
        assert row[1:3] == [mine["test_start"], mine["test_end"]]
        assert row[3:5] == [f"{mine['sharpe']:.3f}", f"{theirs['sharpe']:.3f}"]
    wins = sum(m["sharpe"] > t["sharpe"] for m, t in zip(policy_folds, best_folds, strict=True))
    assert f"beat sma_crossover's in {wins} of 4 folds" in report_html


def test_verdict_and_promotion_reasons_are_shown_and_escaped(report_inputs, report_html):
    evaluation, _ = report_inputs
    sharpes = {n: b["overall"]["sharpe"] for n, b in evaluation["baselines"].items()}
    assert max(s for s in sharpes.values() if s is not None) == sharpes["sma_crossover"]
    assert evaluation["policy"]["overall"]["sharpe"] < sharpes["sma_crossover"]
    verdict = re.search(r'<section id="verdict" class="banner (\w+)">(.*?)</section>',
                        report_html, re.DOTALL)
    assert verdict.group(1) == "fail"
    assert "did not beat the best baseline (sma_crossover) after costs" in verdict.group(2)
    beaten = sum(evaluation["policy"]["overall"]["sharpe"] > s
                 for s in sharpes.values() if s is not None)
    assert f"policy beat {beaten} of 3 baselines with a defined Sharpe" in verdict.group(2)
    promotion = re.search(r'<section id="promotion" class="banner (\w+)">(.*?)</section>',
                          report_html, re.DOTALL)
    assert promotion.group(1) == "fail" and "Promotion: refused" in promotion.group(2)
    assert "<li>deflated Sharpe 0.41 &lt; 0.95 &lt;script&gt;alert(1)&lt;/script&gt;</li>" \
        in promotion.group(2)
    assert "<script>alert(1)" not in report_html
    assert '<span class="failed">failed</span>' in promotion.group(2)
    assert "<td>beats_best_baseline</td><td>n/a</td><td>n/a</td>" in promotion.group(2)


def test_dsr_block_and_config_table(report_inputs, report_html):
    evaluation, _ = report_inputs
    dsr = evaluation["policy"]["dsr"]
    section = re.search(r'<section id="dsr".*?</section>', report_html, re.DOTALL).group(0)
    assert f"<td>Deflated Sharpe ratio (DSR)</td><td>{dsr['dsr']:.3f}</td>" in section
    assert "<td>Trials N</td><td>6</td>" in section
    assert "N counts every configuration tried" in section
    assert "Across 3 RL seeds: Sharpe 0.810 mean, 0.230 standard deviation." in section
    config = _table_rows(report_html, "config")
    assert config == [["algorithm", "PPO"], ["seeds", "[0, 1, 2]"], ["folds", "4"],
                      ["costs.commission_bps", "5"]]


def test_verdict_when_policy_wins_and_promotion_missing():
    evaluation, curves = tiny_inputs()
    evaluation["policy"]["overall"]["sharpe"] = 0.9
    html_text = render_evaluation_report(evaluation, curves, rolling_window=2)
    assert '<section id="verdict" class="banner pass">' in html_text
    assert "The policy beat every baseline after costs." in html_text
    assert '<section id="promotion" class="banner unknown">' in html_text
    assert "Promotion: not decided yet." in html_text
    assert "Deflated Sharpe ratio: not computed." in html_text
    evaluation["policy"]["overall"]["sharpe"] = None
    evaluation["promotion"] = {"decision": "promoted", "reasons": []}
    html_text = render_evaluation_report(evaluation, curves, rolling_window=2)
    assert "Cannot tell: the policy's Sharpe ratio is undefined (n/a)." in html_text
    assert '<section id="promotion" class="banner pass">' in html_text


def test_write_creates_parent_and_writes_the_rendered_text(tmp_path):
    evaluation, curves = tiny_inputs()
    path = write_evaluation_report(evaluation, curves, tmp_path / "reports" / "evaluation.html",
                                   rolling_window=2, title="t & t")
    assert path == tmp_path / "reports" / "evaluation.html"
    text = path.read_text(encoding="utf-8")
    assert text == render_evaluation_report(evaluation, curves, rolling_window=2, title="t & t")
    assert "<title>t &amp; t</title>" in text


# ------------------------------------------------------------------ bad input
def _broken(change) -> tuple[dict, pd.DataFrame]:
    evaluation, curves = tiny_inputs()
    change(evaluation, curves)
    return evaluation, curves


@pytest.mark.parametrize(("change", "error", "message"), [
    (lambda e, c: c.drop(columns="cost", inplace=True), ValueError, "lacks columns"),
    (lambda e, c: c.__setitem__("timestamp", c["timestamp"].dt.tz_localize(None)),
     ValueError, "tz-aware UTC"),
    (lambda e, c: c.__setitem__("position", c["position"] - 2.0), ValueError, r"must be >= 0"),
    (lambda e, c: c.loc.__setitem__((0, "log_return"), np.nan), ValueError, "NaN or inf"),
    (lambda e, c: c.loc.__setitem__((1, "cost"), -0.001), ValueError, ">= 0"),
    (lambda e, c: e["baselines"].__setitem__("random", e["baselines"]["buy_and_hold"]),
     ValueError, "curves series"),
    (lambda e, c: c.loc.__setitem__((7, "timestamp"), pd.Timestamp("2024-01-09", tz="UTC")),
     ValueError, "does not cover"),
    (lambda e, c: c.__setitem__("fold", [2, 2, 1, 1] * 2), ValueError, "folds overlap"),
    (lambda e, c: e["policy"]["overall"].__setitem__("total_return", 0.5), ValueError,
     "exp\\(sum\\(log_return\\)\\) - 1"),
    (lambda e, c: e["policy"]["per_fold"][1].__setitem__("total_return", 0.5), ValueError,
     "policy fold 2: total_return"),
    (lambda e, c: c.__setitem__("cost", c["cost"].astype(str)), TypeError, "must be numeric"),
    (lambda e, c: e["policy"]["overall"].__setitem__("sharpe", "high"), TypeError,
     "must be a number or None"),
    (lambda e, c: e["policy"].__setitem__("per_fold", [{"fold": 1}]), ValueError,
     "not the curves' folds"),
    (lambda e, c: e.__setitem__("promotion", {"decision": "maybe"}), ValueError,
     "promotion decision"),
    (lambda e, c: e["baselines"].__setitem__("<b>x</b>", {}), ValueError, "series name"),
])
def test_bad_input_is_a_clear_error(change, error, message):
    evaluation, curves = _broken(change)
    with pytest.raises(error, match=message):
        render_evaluation_report(copy.deepcopy(evaluation), curves, rolling_window=2)


# -------------------------------------------------------------------- browser
HTML_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                       "meta", "source", "track", "wbr"})


class _ChartTraces(HTMLParser):
    """Per chart div (id "chart-..."): the number of plotly "main-svg"
    elements, and for each trace group (<g class="trace ...">, in data order)
    the "d" attributes of the paths drawn inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None, bool]] = []  # (tag, chart id, is trace group)
        self.charts: dict[str, dict] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        chart = self.stack[-1][1] if self.stack else None
        if chart is None and (a.get("id") or "").startswith("chart-"):
            chart = a["id"]
        is_trace = tag == "g" and classes[:1] == ["trace"]
        if chart is not None:
            info = self.charts.setdefault(chart, {"main_svg": 0, "traces": []})
            info["main_svg"] += "main-svg" in classes
            if is_trace:
                info["traces"].append([])
            elif tag == "path" and any(t for _, _, t in self.stack):
                info["traces"][-1].append(a.get("d") or "")
        if tag not in HTML_VOID:
            self.stack.append((tag, chart, is_trace))

    def handle_endtag(self, tag):
        if tag in HTML_VOID:
            return
        while self.stack and self.stack.pop()[0] != tag:
            pass


@pytest.mark.browser
def test_report_renders_every_chart_in_headless_chromium(tmp_path, report_inputs):
    binary = chromium()
    if binary is None:
        pytest.skip(NO_CHROMIUM)
    evaluation, curves = report_inputs
    path = write_evaluation_report(evaluation, curves, tmp_path / "evaluation.html")
    # Offline: the charts can only render from what the file itself carries.
    dom = dump_dom(binary, path.as_uri(), tmp_path / "profile", offline=True, budget_ms=10000)
    parser = _ChartTraces()
    parser.feed(dom)
    figures = build_figures(evaluation, curves)
    assert sorted(parser.charts) == sorted(f"chart-{c}" for c in CHART_IDS)
    for chart, fig in figures.items():
        drawn = parser.charts[f"chart-{chart}"]
        assert drawn["main_svg"] >= 1, chart
        assert len(drawn["traces"]) == len(fig.data), chart
        for trace, paths in zip(fig.data, drawn["traces"], strict=True):
            if trace.type == "histogram":  # bars: "M x,y V y H x V y Z" per non-empty bin
                assert any("V" in d and "H" in d for d in paths), (chart, trace.name)
            elif np.isfinite(np.asarray(trace.y, dtype=float)).sum() >= 2:
                assert any(d.startswith("M") and "L" in d for d in paths), (chart, trace.name)
    assert "fold 4" in dom  # fold annotations drawn as SVG text
