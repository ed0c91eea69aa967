"""tradingrl.monitoring.drift on hand-made data: Evidently's drift report read
back column by column, the live-performance book equal to what the
environment earned, and the retraining rules at and around their thresholds."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tradingrl.monitoring import (
    CheckResults,
    ColumnDrift,
    DriftResult,
    PerformanceResult,
    RetrainThresholds,
    decide_retrain,
    feature_drift,
    live_performance,
    prediction_drift,
)

COLUMNS = ["a", "b", "c", "d"]


def _frame(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    data = {c: rng.standard_normal(n) for c in COLUMNS}
    for column, sigmas in (shift or {}).items():
        data[column] = data[column] + sigmas
    return pd.DataFrame(data)


# ---------------------------------------------------------------- Evidently drift
def test_same_distribution_drifts_nowhere():
    rng = np.random.default_rng(0)
    reference, current = _frame(rng, 2000), _frame(rng, 1000)
    result = feature_drift(reference, current, COLUMNS, threshold=0.5)
    assert result.share == 0.0 and result.count == 0
    assert [c.column for c in result.columns] == COLUMNS
    assert all(c.method == "wasserstein" and c.threshold == 0.5 for c in result.columns)
    # Two samples of N(0, 1): a few hundredths of a standard deviation apart.
    assert max(c.score for c in result.columns) < 0.1
    assert (result.n_reference, result.n_current) == (2000, 1000)
    assert result.to_dict()["drifted_columns"] == []


def test_a_column_shifted_by_five_sigma_is_the_one_flagged(tmp_path):
    rng = np.random.default_rng(1)
    reference, current = _frame(rng, 2000), _frame(rng, 1000, shift={"c": 5.0})
    result = feature_drift(reference, current, COLUMNS, threshold=0.5, drift_share=0.25)
    assert result.drifted_columns == ["c"]
    assert result.count == 1 and result.share == 0.25
    scores = {c.column: c.score for c in result.columns}
    assert 4.8 < scores["c"] < 5.2  # the shift, in reference standard deviations
    assert max(scores[c] for c in ("a", "b", "d")) < 0.1
    # Evidently's own HTML report of the same snapshot.
    result.snapshot.save_html(str(tmp_path / "drift.html"))
    html = (tmp_path / "drift.html").read_text()
    assert len(html) > 10_000 and "Wasserstein distance (normed)" in html


def test_a_p_value_method_and_missing_values():
    """Another Evidently method (p-value: drift BELOW the threshold) is read
    the same way; NaN (a last bar's target) is left out, not a drift."""
    rng = np.random.default_rng(2)
    reference = _frame(rng, 600)
    current = _frame(rng, 400, shift={"a": 1.0})
    current.loc[len(current) - 1, "b"] = np.nan
    result = prediction_drift(reference, current, COLUMNS, method="ks", threshold=0.01)
    flags = {c.column: c.drifted for c in result.columns}
    assert flags == {"a": True, "b": False, "c": False, "d": False}
    assert {c.column: c.score for c in result.columns}["a"] < 1e-10  # a p-value


def test_bad_inputs_are_refused_with_one_line():
    rng = np.random.default_rng(3)
    frame = _frame(rng, 50)
    with pytest.raises(ValueError, match=r"current lacks column\(s\) \['e'\]"):
        feature_drift(frame.assign(e=1.0), frame, [*COLUMNS, "e"])
    with pytest.raises(ValueError, match="reference has no rows"):
        feature_drift(frame.iloc[:0], frame, COLUMNS)
    with pytest.raises(ValueError, match=r"column\(s\) \['a'\] are not numeric"):
        feature_drift(frame.assign(a="x"), frame, COLUMNS)
    with pytest.raises(ValueError, match=r"column\(s\) \['b'\] have no values"):
        feature_drift(frame, frame.assign(b=np.nan), COLUMNS)
    with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
        feature_drift(frame, frame, COLUMNS, threshold=0.0)
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        feature_drift(frame.to_numpy(), frame, COLUMNS)


# ---------------------------------------------------------------- live performance
def _rollouts(n_symbols: int = 2):
    """Random targets through the environment with the risk layer on, as the
    replay of a champion produces them (decisions carry the account)."""
    from tradingrl.agents.reference import RandomPolicy
    from tradingrl.agents.training import rollout_policy
    from tradingrl.envs.costs import ExecutionCosts
    from tradingrl.envs.factory import synthetic_portfolio_arrays
    from tradingrl.envs.risk_hook import risk_layer_hook
    from tradingrl.risk.limits import RiskLimits

    markets = synthetic_portfolio_arrays(n_symbols=n_symbols, n_bars=300, seed=5)
    limits = RiskLimits(max_position=0.8, vol_target=0.15, var_limit=0.02, min_history=20,
                        drawdown_limit=0.25, cooldown_bars=5)
    env = {"window": 5, "costs": ExecutionCosts(commission_bps=1.0, spread_bps=2.0),
           "initial_cash": 1_000_000.0, "fill": "next_open", "risk_lookback": 30,
           "risk_fn": risk_layer_hook(limits, forecast_horizon_bars=5)}
    out = {}
    for i, market in enumerate(markets):
        out[market.symbol] = (market, rollout_policy(market, RandomPolicy(i),
                                                     {**env, "start_bar": 100}))
    return out, env


def test_decisions_traded_by_the_backtester_earn_what_the_environment_earned():
    from tradingrl.evaluation.books import equal_weight_book, rollout_steps
    from tradingrl.evaluation.performance import sharpe_ratio

    rollouts, env = _rollouts()
    rows, markets = [], {}
    for symbol, (market, rollout) in rollouts.items():
        markets[symbol] = market
        bars = rollout["decision_bar"].astype(int)
        stamps = pd.DatetimeIndex(market.timestamps[bars]).tz_localize("UTC")
        rows.append(pd.DataFrame({"symbol": symbol, "timestamp": stamps,
                                  "target": rollout["target"]}))
        # The last bar's decision has no fill bar: NaN, left out.
        rows.append(pd.DataFrame({"symbol": [symbol], "target": [np.nan], "timestamp": [
            pd.Timestamp(market.timestamps[-1]).tz_localize("UTC")]}))
    decisions = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=0)
    assert (rollouts["SYN000"][1]["target"] != rollouts["SYN000"][1]["requested_target"]).any()

    result = live_performance(decisions, markets, oos_sharpe=1.5, bars_per_year=252,
                              env={k: env[k] for k in ("costs", "initial_cash", "fill")})
    expected = equal_weight_book(
        [rollout_steps(r) for _, r in rollouts.values()],
        [m.timestamps[r["bar"].astype(int)] for m, r in rollouts.values()])
    np.testing.assert_allclose(result.log_returns, expected.log_return, rtol=0, atol=1e-15)
    assert result.matured_bars == len(expected.log_return) == 300 - 1 - 100
    live = sharpe_ratio(np.expm1(expected.log_return), bars_per_year=252)
    assert result.live_sharpe == pytest.approx(live, abs=1e-12)
    assert result.decay == pytest.approx(1.5 - live, abs=1e-12)
    assert result.total_log_return == pytest.approx(expected.log_return.sum(), abs=1e-12)


def test_live_performance_refuses_gaps_and_a_risk_function():
    rollouts, env = _rollouts(1)
    market, rollout = rollouts["SYN000"]
    stamps = pd.DatetimeIndex(market.timestamps[rollout["decision_bar"].astype(int)])
    decisions = pd.DataFrame({"symbol": "SYN000", "timestamp": stamps.tz_localize("UTC"),
                              "target": rollout["target"]})
    plain = {k: env[k] for k in ("costs", "initial_cash", "fill")}
    with pytest.raises(ValueError, match="consecutive bars"):
        live_performance(decisions.drop(index=[10]), {"SYN000": market}, env=plain,
                         oos_sharpe=None)
    with pytest.raises(ValueError, match="must not carry a risk_fn"):
        live_performance(decisions, {"SYN000": market}, env=env, oos_sharpe=None)
    with pytest.raises(ValueError, match="no market for symbol 'SYN000'"):
        live_performance(decisions, {}, env=plain, oos_sharpe=None)
    result = live_performance(decisions, {"SYN000": market}, env=plain, oos_sharpe=None)
    assert result.oos_sharpe is None and result.decay is None and result.live_sharpe is not None


# ---------------------------------------------------------------- the rules
def _drift(share: float, n: int = 10) -> DriftResult:
    count = round(share * n)
    columns = tuple(ColumnDrift(f"x{i}", 1.0 if i < count else 0.1, 0.5, "wasserstein", i < count)
                    for i in range(n))
    return DriftResult(share=count / n, count=count, columns=columns, snapshot=None,
                       n_reference=100, n_current=50)


def _performance(live: float | None, oos: float | None, matured: int = 200) -> PerformanceResult:
    decay = None if live is None or oos is None else oos - live
    return PerformanceResult(matured, live, oos, decay, 0.0, np.array([]), np.array([]))


THRESHOLDS = RetrainThresholds(drift_share=0.3, prediction_drift_share=0.6,
                               performance_decay=2.0, min_matured_bars=100)


def test_nothing_fires_below_every_threshold():
    due, checks = decide_retrain(
        CheckResults(_drift(0.2), _drift(0.4, n=5), _performance(0.5, 1.0)), THRESHOLDS)
    assert due is False
    assert [c.name for c in checks] == ["feature_drift", "prediction_drift", "performance_decay"]
    assert [c.fired for c in checks] == [False, False, False]
    assert all(c.checked for c in checks)
    assert checks[0].detail == "feature drift: 2 of 10 columns drifted (20%) < 30% [x0, x1]"
    assert checks[2].value == pytest.approx(0.5)
    assert "decay 0.50 < 2.00" in checks[2].detail


@pytest.mark.parametrize(("feature", "prediction", "live", "fired"), [
    (0.3, 0.0, 1.0, ["feature_drift"]),          # at the threshold: fires (Evidently's >=)
    (0.0, 0.6, 1.0, ["prediction_drift"]),
    (0.0, 0.0, -1.0, ["performance_decay"]),     # decay exactly 2.0
    (0.9, 1.0, -3.0, ["feature_drift", "prediction_drift", "performance_decay"]),
])
def test_each_rule_fires_at_its_threshold(feature, prediction, live, fired):
    due, checks = decide_retrain(
        CheckResults(_drift(feature), _drift(prediction, n=5), _performance(live, 1.0)),
        THRESHOLDS)
    assert due is True
    assert [c.name for c in checks if c.fired] == fired


def test_the_performance_rule_needs_matured_bars_and_a_recorded_sharpe():
    for performance, why in (
            (_performance(-5.0, 1.0, matured=99), "99 matured decisions (need 100)"),
            (_performance(-5.0, None), "no recorded out-of-sample Sharpe ratio"),
            (_performance(None, 1.0), "live Sharpe ratio is undefined"),
            (None, "no decisions were replayed")):
        due, checks = decide_retrain(CheckResults(_drift(0.0), None, performance), THRESHOLDS)
        assert due is False
        rule = checks[2]
        assert (rule.fired, rule.checked, rule.value) == (False, False, None)
        assert why in rule.detail
        assert checks[1].checked is False and "no such columns" in checks[1].detail


def test_thresholds_are_checked():
    for kwargs, message in (({"drift_share": 0.0}, r"drift_share must be in \(0, 1\]"),
                            ({"prediction_drift_share": 1.5}, "prediction_drift_share"),
                            ({"performance_decay": -1.0}, "performance_decay must be"),
                            ({"performance_decay": math.inf}, "performance_decay must be"),
                            ({"min_matured_bars": 1}, "min_matured_bars must be an int >= 2")):
        with pytest.raises(ValueError, match=message):
            RetrainThresholds(**kwargs)
    with pytest.raises(TypeError, match="results must be CheckResults"):
        decide_retrain({"feature": _drift(0.1)}, THRESHOLDS)


# ---------------------------------------------------------------- the decision record
REPO_PARAMS = __import__("pathlib").Path(__file__).resolve().parents[2] / "params.yaml"


def _settings(**changes):
    from tradingrl.monitoring import DriftSettings
    from tradingrl.params import load_params

    return DriftSettings.from_params({**load_params("monitoring", REPO_PARAMS), **changes})


def test_settings_come_from_the_monitoring_section():
    from tradingrl.monitoring import DriftSettings
    from tradingrl.params import load_params

    monitoring = load_params("monitoring", REPO_PARAMS)
    settings = DriftSettings.from_params(monitoring)
    assert settings.window_bars == monitoring["window_bars"]
    assert settings.retrain == RetrainThresholds.from_params(monitoring)
    assert settings.retrain.drift_share == monitoring["drift_share_threshold"]
    assert DriftSettings.from_params(monitoring, window_bars=126).window_bars == 126
    assert list(settings.thresholds()) == [
        "drift_share", "prediction_drift_share", "performance_decay", "min_matured_bars",
        "drift_method", "column_threshold", "prediction_column_threshold"]
    with pytest.raises(KeyError, match="monitoring lacks experiment, bars_per_year"):
        DriftSettings.from_params({k: v for k, v in monitoring.items()
                                   if k not in ("bars_per_year", "experiment")})
    with pytest.raises(ValueError, match="window_bars must be an int >= 2"):
        DriftSettings.from_params(monitoring, window_bars=1)


def _rows(n_sessions: int = 3) -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=n_sessions, freq="D", tz="UTC")
    return pd.DataFrame({"timestamp": list(stamps) * 2, "symbol": ["A"] * n_sessions
                         + ["B"] * n_sessions})


def _matured(live: float, oos: float) -> PerformanceResult:
    stamps = np.array(["2024-01-02", "2024-01-03"], dtype="datetime64[ns]")
    return PerformanceResult(2, live, oos, oos - live, 0.01, stamps, np.array([0.0, 0.01]))


def _decide(results, trigger="none"):
    from tradingrl.monitoring import champion_summary, decide_drift

    manifest = {"reference": {"first": "2023-01-02T00:00:00+00:00",
                              "last": "2023-12-29T00:00:00+00:00", "sessions": 252,
                              "rows": 504}}
    return decide_drift(results, _settings(min_matured_bars=2), rows=_rows(),
                        champion=champion_summary("3", 1.5, manifest),
                        checked_at="2024-01-04T00:00:00+00:00", report_dir="/tmp/r",
                        window={"source": "synthetic", "overrides": {"seed": 11},
                                "rows_in": 6}, trigger=trigger, notes=("a note",))


def test_a_fired_rule_makes_a_retrain_decision_with_its_json_tags_and_metrics():
    decision = _decide(CheckResults(_drift(0.5), _drift(0.2, n=5), _matured(-2.0, 1.5)))
    assert decision.decision == "retrain" and decision.retrain_due is True
    assert decision.fired == ["feature_drift", "performance_decay"]
    assert len(decision.reasons) == 2 and decision.reasons[0].startswith("feature drift: 5 of 10")
    record = json.loads(decision.to_json())
    assert record == decision.to_dict()
    assert list(record) == [
        "checked_at", "report_dir", "experiment", "thresholds", "window", "trigger", "notes",
        "champion", "decision", "retrain_due", "reasons", "fired", "checks", "feature_drift",
        "prediction_drift", "performance", "mlflow_run_id"]
    assert record["window"] == {"window_bars": 252, "source": "synthetic",
                                "overrides": {"seed": 11}, "rows_in": 6,
                                "first_decision": "2024-01-01T00:00:00+00:00",
                                "last_decision": "2024-01-03T00:00:00+00:00",
                                "sessions": 3, "symbols": 2}
    assert record["champion"]["version"] == "3" and record["champion"]["reference_rows"] == 504
    assert record["checks"][0] == {"name": "feature_drift", "fired": True, "checked": True,
                                   "value": 0.5, "threshold": 0.3,
                                   "detail": decision.reasons[0]}
    assert record["feature_drift"]["count"] == 5 and record["prediction_drift"]["share"] == 0.2
    assert record["trigger"] == {"mode": "none", "action": "none"}
    assert record["notes"] == ["a note"] and record["mlflow_run_id"] is None
    assert decision.tags() == {
        "drift.decision": "retrain", "drift.retrain_due": "true",
        "drift.fired": "feature_drift,performance_decay",
        "drift.reasons": " | ".join(decision.reasons), "drift.champion_version": "3",
        "drift.trigger": "none"}
    metrics = decision.metrics()
    assert metrics["feature_drift.share"] == 0.5 and metrics["prediction_drift.count"] == 1
    assert metrics["performance.decay"] == pytest.approx(3.5)
    assert "performance.first_fill" not in metrics  # a time, not a number
    params = decision.params()
    assert params["window_bars"] == 252 and params["trigger"] == "none"
    assert params["threshold.drift_share"] == 0.3 and params["threshold.min_matured_bars"] == 2


def test_no_rule_fired_lists_every_rule_and_the_markdown_says_so():
    import dataclasses

    decision = _decide(CheckResults(_drift(0.1), None, _matured(1.0, 1.5)), trigger="auto")
    assert decision.decision == "no_retrain" and decision.fired == []
    assert len(decision.reasons) == 3  # every rule's detail when none fired
    assert decision.to_dict()["prediction_drift"] is None
    started = dataclasses.replace(decision, mlflow_run_id="run-1", trigger={
        "mode": "auto", "action": "subflow", "deployment": None, "flow_run_id": "f-1",
        "state": "Completed"})
    assert started.training_tags() == {"drift.training_action": "subflow",
                                       "drift.training_flow_run_id": "f-1"}
    text = started.summary_markdown()
    assert text.startswith("# Drift check\n\n**no_retrain**\n")
    assert "| feature_drift | True | 0.100 | 0.300 | False |" in text
    assert "| prediction_drift | False | n/a | 0.500 | False |" in text
    assert "Window: 2024-01-01T00:00:00+00:00 .. 2024-01-03T00:00:00+00:00, 3 sessions x 2 " \
           "symbols from synthetic." in text
    assert "Champion: trading-policy v3 (reference 2023-01-02" in text
    assert "Trigger auto: subflow, flow run `f-1`." in text
    assert text.endswith("Reports: `/tmp/r`; MLflow run `run-1`.\n")


def test_nothing_to_compare_is_recorded_without_checks():
    from tradingrl.monitoring import DriftDecision, no_comparison

    context = {"checked_at": "2024-01-04T00:00:00+00:00", "report_dir": "/tmp/r",
               "window": {"source": "synthetic", "overrides": {}}}
    none = no_comparison(_settings(), champion=None, **context)
    assert (none.decision, none.retrain_due) == ("no_champion", False)
    assert none.reasons == ("no champion: nothing to compare",)
    record = none.to_dict()
    assert record["checks"] == [] and record["fired"] == [] and record["champion"] is None
    assert not {"feature_drift", "prediction_drift", "performance"} & set(record)
    assert record["window"] == {"window_bars": 252, "source": "synthetic", "overrides": {}}
    assert record["trigger"] == {"mode": "auto", "action": "none"}
    assert none.tags()["drift.champion_version"] == "None" and none.metrics() == {}
    old = no_comparison(_settings(), champion={"version": "2"}, **context)
    assert old.decision == "no_reference" and old.reasons[0].startswith(
        "champion v2 carries no reference window")
    with pytest.raises(ValueError, match="decision must be one of"):
        DriftDecision(decision="maybe", retrain_due=False, reasons=(), checks=(),
                      checked_at="", report_dir="", experiment="", thresholds={}, window={},
                      champion=None)


def test_the_snapshots_are_named_by_their_report_file():
    results = CheckResults(_drift(0.1), _drift(0.2), None)
    assert list(results.snapshots()) == ["drift.html", "prediction_drift.html"]
    assert list(CheckResults(_drift(0.1), None, None).snapshots()) == ["drift.html"]


# ---------------------------------------------------------------- the newest window
def test_the_window_is_the_newest_sessions_validated_and_featurised():
    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
    from tradingrl.monitoring import fetch_window
    from tradingrl.params import load_params

    sections = {s: load_params(s, REPO_PARAMS) for s in ("ingest", "validate", "features")}
    ingest = {"source": "synthetic",
              "synthetic": {"n_symbols": 2, "n_bars": 400, "start": "2015-01-02", "seed": 4}}
    window = fetch_window(ingest, sections["validate"], sections["features"], sessions=300,
                          overrides={"seed": 9})
    source = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=400,
                                                   start="2015-01-02", seed=9))
    newest = pd.DatetimeIndex(source["timestamp"].unique()).sort_values()[-300:]
    assert window.bars["timestamp"].min() == newest[0] and window.symbols == 2
    assert window.summary["rows_in"] == 600 == window.summary["rows_valid"]
    assert window.summary["options"]["seed"] == 9 and window.summary["fetched_sessions"] == 300
    warmup = sections["features"]["warmup_bars"]
    assert window.features["timestamp"].nunique() <= 300 - warmup  # warm-up rows dropped
    with pytest.raises(ValueError, match="gave 400 sessions; the check needs 401"):
        fetch_window(ingest, sections["validate"], sections["features"], sessions=401)


def test_sessions_needed_and_relative_csv_paths(tmp_path):
    from tradingrl.data.sources import source_options
    from tradingrl.monitoring import history_bars, sessions_needed

    manifest = {"features": {"warmup_bars": 120}, "trend_model": {"window": 20},
                "agent": {"window": 5, "risk_lookback": 30}}
    assert history_bars(manifest) == 120 + 19 + 31
    assert sessions_needed(manifest, 120, 252) == (252 + 170, [])
    sessions, notes = sessions_needed(manifest, 150, 252)
    assert sessions == 252 + 170 + 30
    assert notes == ["features.warmup_bars 150 differs from the champion's 120"]
    ingest = {"source": "csv", "csv": {"path": "data/external", "timezone": "UTC"}}
    assert source_options(ingest, {"adjust": True}, tmp_path) == (
        "csv", {"path": str(tmp_path / "data/external"), "timezone": "UTC", "adjust": True})


def test_report_folders_never_collide(tmp_path):
    from datetime import UTC, datetime

    from tradingrl.monitoring.record import new_report_dir

    now = datetime(2024, 1, 4, 16, 30, tzinfo=UTC)
    first, second = new_report_dir(tmp_path, now), new_report_dir(tmp_path, now)
    assert (first.name, second.name) == ("20240104T163000Z", "20240104T163000Z-2")
    assert first.is_dir() and second.is_dir()
