"""tradingrl.monitoring.drift on hand-made data: Evidently's drift report read
back column by column, the live-performance book equal to what the
environment earned, and the retraining rules at and around their thresholds."""

from __future__ import annotations

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
    from tradingrl.evaluation.performance import sharpe_ratio
    from tradingrl.evaluation.policy_eval import _rollout_steps, equal_weight_book

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
        [_rollout_steps(r) for _, r in rollouts.values()],
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
