"""Evaluation statistics: performance summary, PSR/DSR, PBO.

Expected values are computed by hand (explicit arithmetic on small fixed
samples) or taken from the papers' worked examples. The building blocks also
agree with empyrical-reloaded 0.7.1 to ~1e-13 on random samples (checked once,
see the issue's note; empyrical is not a dependency: it pins peewee<3.17.4).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from tradingrl.evaluation import (
    EULER_MASCHERONI,
    deflated_sharpe_ratio,
    downside_deviation,
    drawdown_durations,
    drawdown_series,
    expected_maximum_sharpe,
    max_drawdown,
    performance_summary,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    rolling_sharpe,
    sharpe_ratio,
    skew_kurtosis,
    sortino_ratio,
    var_cvar,
)


def phi(z: float) -> float:
    """Standard normal CDF by hand."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# Equity path: peak 1.2 at index 1, trough 0.9 at 2 (drawdown 25%), back to
# 1.2 at 3 (duration 2 bars); then below 1.2 from index 4 to the end (index 7):
# a 4-bar drawdown of depth 1 - 1.0/1.2, not recovered.
WEALTH = np.array([1.0, 1.2, 0.9, 1.2, 1.1, 1.05, 1.0, 1.15])
SIMPLE = WEALTH[1:] / WEALTH[:-1] - 1.0
LOG = np.log(WEALTH[1:] / WEALTH[:-1])


# ------------------------------------------------------------ building blocks
def test_sharpe_is_mean_over_sample_std_of_excess_returns():
    r = np.array([0.02, -0.01, 0.03, -0.02, 0.01])
    mean = (0.02 - 0.01 + 0.03 - 0.02 + 0.01) / 5  # 0.006
    var = sum((x - mean) ** 2 for x in r) / 4
    assert sharpe_ratio(r, bars_per_year=1) == pytest.approx(mean / math.sqrt(var), rel=1e-12)
    assert sharpe_ratio(r, bars_per_year=252) == pytest.approx(
        mean / math.sqrt(var) * math.sqrt(252), rel=1e-12)
    rf = 0.001
    assert sharpe_ratio(r, bars_per_year=1, risk_free_per_bar=rf) == pytest.approx(
        (mean - rf) / math.sqrt(var), rel=1e-12)


def test_sharpe_undefined_cases_are_nan_and_bad_input_raises():
    assert math.isnan(sharpe_ratio([0.01, 0.01, 0.01], bars_per_year=252))  # zero variance
    assert math.isnan(sharpe_ratio([0.1] * 3, bars_per_year=1))  # 0.1 * 3 rounds; still equal
    assert math.isnan(sharpe_ratio([0.01], bars_per_year=252))  # one bar
    with pytest.raises(ValueError, match="empty"):
        sharpe_ratio([], bars_per_year=252)
    with pytest.raises(ValueError, match="non-finite"):
        sharpe_ratio([0.01, np.nan, 0.02], bars_per_year=252)
    with pytest.raises(ValueError, match="non-finite"):
        sharpe_ratio([0.01, np.inf], bars_per_year=252)
    with pytest.raises(TypeError):
        sharpe_ratio(["a", "b"], bars_per_year=252)
    with pytest.raises(ValueError, match="bars_per_year"):
        sharpe_ratio([0.01, 0.02], bars_per_year=0)


def test_sortino_uses_semi_deviation_over_all_bars():
    r = np.array([0.02, -0.01, 0.03, -0.02])
    downside = math.sqrt((0.01**2 + 0.02**2) / 4)  # bars above target count as 0
    assert downside_deviation(r) == pytest.approx(downside, rel=1e-12)
    assert sortino_ratio(r, bars_per_year=1) == pytest.approx(0.005 / downside, rel=1e-12)
    assert sortino_ratio(r, bars_per_year=4) == pytest.approx(2 * 0.005 / downside, rel=1e-12)
    # target 0.01: shortfalls 0, -0.02, 0, -0.03
    target_dd = math.sqrt((0.02**2 + 0.03**2) / 4)
    assert sortino_ratio(r, bars_per_year=1, target_per_bar=0.01) == pytest.approx(
        (0.005 - 0.01) / target_dd, rel=1e-12)
    assert math.isnan(sortino_ratio([0.01, 0.02], bars_per_year=252))  # no downside


def test_drawdowns_depth_and_durations_by_hand():
    dd = drawdown_series(SIMPLE)
    expected = [0.0, 0.25, 0.0, 1 - 1.1 / 1.2, 1 - 1.05 / 1.2, 1 - 1.0 / 1.2, 1 - 1.15 / 1.2]
    np.testing.assert_allclose(dd, expected, atol=1e-12)
    assert max_drawdown(SIMPLE) == pytest.approx(0.25, abs=1e-12)
    stats = drawdown_durations(SIMPLE)
    assert stats["max_drawdown_duration_bars"] == 2  # peak index 1 -> recovered at 3
    assert stats["max_drawdown_recovered"] == 1.0
    assert stats["longest_drawdown_bars"] == 4  # peak index 3 -> end (7 bars)

    # A loss on the very first bar: the starting equity is the peak.
    first = drawdown_durations([-0.1, 0.05])
    assert first["max_drawdown"] == pytest.approx(0.1)
    assert first["max_drawdown_duration_bars"] == 2 and first["max_drawdown_recovered"] == 0.0
    # Never below the peak.
    up = drawdown_durations([0.01, 0.0, 0.02])
    assert up == {"max_drawdown": 0.0, "max_drawdown_duration_bars": 0.0,
                  "max_drawdown_recovered": 1.0, "longest_drawdown_bars": 0.0}


def test_recovery_to_the_peak_survives_compounding_rounding():
    # Log path 0, 0.21, 0, 0.21, 0.16: back at the peak at index 3, but the
    # compounded simple returns land 2e-16 below it there.
    simple = np.expm1([0.21, -0.21, 0.21, -0.05])
    wealth = np.cumprod(1.0 + simple)
    assert wealth[2] < wealth[0]  # the rounding this test is about
    stats = drawdown_durations(simple)
    assert stats["max_drawdown"] == pytest.approx(-math.expm1(-0.21))
    assert stats["max_drawdown_duration_bars"] == 2  # peak 1 -> recovered at 3
    assert stats["max_drawdown_recovered"] == 1.0
    assert stats["longest_drawdown_bars"] == 2  # not one episode 1 -> end (3 bars)


def test_var_cvar_historical_positive_losses():
    # 21 returns -0.10, -0.09, ..., 0.10 shuffled: the 5% quantile sits exactly
    # on the second smallest (position 20 * 0.05 = 1); the tail holds 2 values.
    r = np.round(np.linspace(-0.10, 0.10, 21), 10)
    np.random.default_rng(0).shuffle(r)
    var, cvar = var_cvar(r)
    assert var == pytest.approx(0.09, abs=1e-12)
    assert cvar == pytest.approx((0.10 + 0.09) / 2, abs=1e-12)
    # 11 values: position 10 * 0.05 = 0.5 interpolates; tail = 1 value.
    r11 = np.array([0.05, -0.03, 0.01, -0.08, 0.02, 0.0, 0.04, -0.01, 0.03, 0.06, -0.02])
    var, cvar = var_cvar(r11)
    assert var == pytest.approx((0.08 + 0.03) / 2, abs=1e-12)
    assert cvar == pytest.approx(0.08, abs=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.standard_t(3, int(rng.integers(2, 500))) * 0.01
        v, c = var_cvar(x)
        assert c >= v
    with pytest.raises(ValueError):
        var_cvar(r, level=1.0)


def test_rolling_sharpe_uses_trailing_window_only():
    rng = np.random.default_rng(3)
    r = rng.normal(0.001, 0.01, 60)
    window = 10
    rolled = rolling_sharpe(r, window, 252)
    assert np.isnan(rolled[: window - 1]).all()
    for t in (window - 1, 30, 59):
        expected = sharpe_ratio(r[t - window + 1: t + 1], bars_per_year=252)
        assert rolled[t] == pytest.approx(expected, rel=1e-9)
    # Changing future bars never changes an earlier value.
    changed = r.copy()
    changed[40:] += 0.05
    np.testing.assert_array_equal(rolling_sharpe(changed, window, 252)[:40], rolled[:40])
    flat = np.r_[np.full(12, 0.003), r[:5]]
    assert np.isnan(rolling_sharpe(flat, window, 252)[9:12]).all()  # constant windows
    with pytest.raises(ValueError):
        rolling_sharpe(r, 1, 252)


# -------------------------------------------------------------------- summary
def test_performance_summary_by_hand():
    s = performance_summary(LOG, bars_per_year=7)  # 7 bars = one year
    assert s["n_bars"] == 7
    assert s["total_return"] == pytest.approx(0.15, rel=1e-12)
    assert s["annualised_return"] == pytest.approx(0.15, rel=1e-12)
    mean = SIMPLE.sum() / 7
    sd = math.sqrt(sum((x - mean) ** 2 for x in SIMPLE) / 6)
    assert s["sharpe_per_period"] == pytest.approx(mean / sd, rel=1e-12)
    assert s["sharpe"] == pytest.approx(mean / sd * math.sqrt(7), rel=1e-12)
    assert s["annualised_volatility"] == pytest.approx(sd * math.sqrt(7), rel=1e-12)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in SIMPLE) / 7)
    assert s["sortino"] == pytest.approx(mean / downside * math.sqrt(7), rel=1e-12)
    assert s["max_drawdown"] == pytest.approx(0.25, rel=1e-12)
    assert s["calmar"] == pytest.approx(0.15 / 0.25, rel=1e-12)
    assert s["max_drawdown_duration_bars"] == 2 and s["longest_drawdown_bars"] == 4
    # 7 returns: 5% position 0.3 -> between the two smallest (-0.25 and -1/12)
    ordered = np.sort(SIMPLE)
    assert s["var_95"] == pytest.approx(-(ordered[0] + 0.3 * (ordered[1] - ordered[0])))
    assert s["cvar_95"] == pytest.approx(0.25)
    # hit rate without positions: 3 of 7 non-zero returns are gains
    assert s["hit_rate"] == pytest.approx(3 / 7)
    d = SIMPLE - mean
    m2 = np.mean(d**2)
    assert s["skewness"] == pytest.approx(np.mean(d**3) / m2**1.5, rel=1e-10)
    assert s["kurtosis"] == pytest.approx(np.mean(d**4) / m2**2, rel=1e-10)
    assert {"exposure", "turnover", "costs_paid"}.isdisjoint(s)


def test_summary_uses_simple_returns_for_sharpe_not_log():
    log_r = np.array([0.10, -0.05, 0.08, -0.12, 0.03])
    s = performance_summary(log_r, bars_per_year=1)
    simple = np.expm1(log_r)
    assert s["sharpe_per_period"] == pytest.approx(
        simple.mean() / simple.std(ddof=1), rel=1e-12)
    assert s["sharpe_per_period"] != pytest.approx(log_r.mean() / log_r.std(ddof=1), rel=1e-3)
    assert s["total_return"] == pytest.approx(math.expm1(log_r.sum()), rel=1e-12)


def test_summary_positions_turnover_costs():
    log_r = np.log1p(np.array([0.01, -0.02, 0.0, 0.03, 0.0, -0.01]))
    positions = np.array([0.5, -1.0, 0.0, 1.0, 0.5, 0.0])
    turnover = np.array([0.5, 1.5, 1.0, 1.0, 0.5, 0.5])
    costs = np.array([10.0, 30.0, 20.0, 20.0, 10.0, 10.0])
    s = performance_summary(log_r, positions=positions, turnover=turnover, costs=costs,
                            equity0=10_000.0, bars_per_year=252)
    # bars held: 0, 1, 3, 4 -> returns 0.01, -0.02, 0.03, 0.0: 2 gains of 4
    assert s["hit_rate"] == pytest.approx(0.5)
    assert s["exposure"] == pytest.approx((0.5 + 1 + 0 + 1 + 0.5 + 0) / 6)
    assert s["time_in_market"] == pytest.approx(4 / 6)
    assert s["turnover"] == pytest.approx(5.0)
    assert s["turnover_annualised"] == pytest.approx(5.0 / 6 * 252)
    assert s["costs_paid"] == pytest.approx(100.0)
    assert s["costs_fraction_of_initial_equity"] == pytest.approx(0.01)
    equity = 10_000.0 * np.cumprod(np.r_[1.0, 1.0 + np.expm1(log_r)[:-1]])
    assert s["cost_drag"] == pytest.approx(float(np.sum(costs / equity)), rel=1e-12)
    assert s["cost_drag"] == pytest.approx(
        10 / 10_000 + 30 / 10_100 + 20 / 9_898 + 20 / 9_898 + 10 / 10_194.94
        + 10 / 10_194.94, rel=1e-12)

    with pytest.raises(ValueError, match="positions has 2 bars"):
        performance_summary(log_r, positions=[0.0, 1.0])
    with pytest.raises(ValueError, match="turnover must be >= 0"):
        performance_summary(log_r, turnover=-turnover)
    with pytest.raises(ValueError, match="non-finite"):
        performance_summary(log_r, costs=np.r_[costs[:-1], np.nan])


def test_summary_undefined_values_are_nan_never_made_up():
    flat = performance_summary(np.zeros(5), positions=np.zeros(5))
    for key in ("sharpe", "sharpe_per_period", "sortino", "calmar", "hit_rate",
                "skewness", "kurtosis"):
        assert math.isnan(flat[key]), key
    assert flat["total_return"] == 0.0 and flat["max_drawdown"] == 0.0
    assert flat["annualised_volatility"] == 0.0 and flat["exposure"] == 0.0
    constant = performance_summary(np.full(6, 0.003))
    assert constant["annualised_volatility"] == 0.0 and math.isnan(constant["sharpe"])
    one = performance_summary([0.01])
    assert math.isnan(one["sharpe"]) and math.isnan(one["annualised_volatility"])
    with pytest.raises(ValueError, match="empty"):
        performance_summary([])
    with pytest.raises(ValueError, match="non-finite"):
        performance_summary([0.01, np.nan])
    with pytest.raises(ValueError, match="equity0"):
        performance_summary([0.01, 0.02], equity0=0.0)


# --------------------------------------------------------------------- PSR/DSR
# Returns 0, 0, 0, 0.04: mean 0.01, deviations (-1, -1, -1, 3) x 0.01, so
# m2 = 3e-4, m3 = 6e-6, m4 = 21e-8: skew = 6 / 3**1.5 = 2 / sqrt(3),
# kurtosis = 21 / 9 = 7 / 3 (non-excess), SR = 0.01 / sqrt(12e-4 / 3) = 0.5.
SKEWED = np.array([0.0, 0.0, 0.0, 0.04])


def test_skew_and_non_excess_kurtosis_by_hand():
    skew, kurt = skew_kurtosis(SKEWED)
    assert skew == pytest.approx(2 / math.sqrt(3), rel=1e-12)
    assert kurt == pytest.approx(7 / 3, rel=1e-12)
    # symmetric (-1, 0, 0, 1): kurtosis 2 (excess -1; pandas' .kurt() says 1.5)
    assert skew_kurtosis([-0.01, 0.0, 0.0, 0.01]) == pytest.approx((0.0, 2.0), abs=1e-12)
    assert all(math.isnan(v) for v in skew_kurtosis([0.02, 0.02, 0.02]))


def test_psr_pinned_hand_value_and_kurtosis_convention():
    sr, skew, kurt = 0.5, 2 / math.sqrt(3), 7 / 3
    z = sr * math.sqrt(3) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert z == pytest.approx(1.2174822587, abs=1e-9)
    psr = probabilistic_sharpe_ratio(sr, 0.0, 4, skew, kurt)
    assert psr == pytest.approx(phi(z), abs=1e-12)
    assert psr == pytest.approx(0.8882896087, abs=1e-9)
    # Excess kurtosis (1/3 - 3 < 1) is refused; pandas' bias-corrected excess
    # kurtosis of the same sample (4.0) gives a different answer.
    with pytest.raises(ValueError, match="excess"):
        probabilistic_sharpe_ratio(sr, 0.0, 4, skew, kurt - 3)
    assert probabilistic_sharpe_ratio(sr, 0.0, 4, skew, 4.0) != pytest.approx(psr, abs=1e-3)
    # Normal moments: denominator sqrt(1 + SR^2 / 2)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(
        phi(0.1 * 10 / math.sqrt(1 + 0.01 / 2)), abs=1e-12)
    with pytest.raises(ValueError, match="n_obs"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0)


def test_dsr_reproduces_bailey_lopez_de_prado_worked_example():
    # "The deflated Sharpe ratio" (2014), numerical example: N = 100 trials,
    # annualised variance of trial SRs 1/2, 1250 daily bars (250 a year),
    # annualised SR 2.5, skew -3, kurtosis 10 -> SR0 = 0.1132, DSR = 0.9004.
    sr0 = expected_maximum_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_expected_maximum_sharpe_formula_and_edges():
    from scipy.stats import norm

    g = EULER_MASCHERONI
    for n in (2, 10, 1000):
        expected = 0.3 * ((1 - g) * norm.ppf(1 - 1 / n) + g * norm.ppf(1 - 1 / (n * math.e)))
        assert expected_maximum_sharpe(n, 0.09) == pytest.approx(expected, rel=1e-12)
    assert expected_maximum_sharpe(1, 0.09) == 0.0
    assert expected_maximum_sharpe(10, 0.04) < expected_maximum_sharpe(100, 0.04)
    with pytest.raises(ValueError):
        expected_maximum_sharpe(0, 0.04)
    with pytest.raises(ValueError):
        expected_maximum_sharpe(5, -0.01)


def test_dsr_single_trial_is_psr_against_zero():
    out = deflated_sharpe_ratio(np.log1p(SKEWED), n_trials=1)
    assert out["sr"] == pytest.approx(0.5, rel=1e-12)
    assert out["sr0"] == 0.0 and out["sr_variance_source"] == "single_trial"
    assert out["dsr"] == pytest.approx(0.8882896087, abs=1e-9)
    assert out["dsr"] == out["psr_vs_zero"]
    assert out["skew"] == pytest.approx(2 / math.sqrt(3)) and out["kurtosis"] == pytest.approx(7 / 3)
    assert out["n_obs"] == 4


def test_dsr_variance_sources_and_more_trials_deflate_more():
    rng = np.random.default_rng(5)
    log_r = np.log1p(rng.normal(0.0008, 0.01, 500))
    trial_sharpes = np.array([0.05, 0.12, -0.03, 0.08, 0.0, 0.1])
    out = deflated_sharpe_ratio(log_r, n_trials=30, trial_sharpes=trial_sharpes)
    assert out["sr_variance"] == pytest.approx(np.var(trial_sharpes, ddof=1), rel=1e-12)
    assert out["sr_variance_source"] == "trial_sharpes"
    assert out["sr0"] == pytest.approx(expected_maximum_sharpe(30, out["sr_variance"]))
    assert out["dsr"] == pytest.approx(probabilistic_sharpe_ratio(
        out["sr"], out["sr0"], 500, out["skew"], out["kurtosis"]), abs=1e-15)
    assert out["dsr"] == pytest.approx(phi(out["z"]), abs=1e-12)

    null = deflated_sharpe_ratio(log_r, n_trials=30)
    assert null["sr_variance"] == pytest.approx(1 / 499) and null["sr_variance_source"] == (
        "null_sampling_variance")
    given = deflated_sharpe_ratio(log_r, n_trials=30, sr_variance=1 / 499)
    assert given["dsr"] == pytest.approx(null["dsr"], abs=1e-15)
    dsrs = [deflated_sharpe_ratio(log_r, n_trials=n)["dsr"] for n in (1, 10, 100, 1000)]
    assert dsrs[0] > dsrs[1] > dsrs[2] > dsrs[3] and dsrs[0] - dsrs[3] > 0.5

    with pytest.raises(ValueError, match="not both"):
        deflated_sharpe_ratio(log_r, n_trials=30, sr_variance=0.01, trial_sharpes=trial_sharpes)
    with pytest.raises(ValueError, match="n_trials is 3"):
        deflated_sharpe_ratio(log_r, n_trials=3, trial_sharpes=trial_sharpes)
    with pytest.raises(ValueError, match="zero variance"):
        deflated_sharpe_ratio(np.zeros(10), n_trials=1)


# ------------------------------------------------------------------------- PBO
def test_pbo_hand_case_winner_flips_between_halves():
    # Two blocks of two bars. Trial 0 is better in block 0, trial 1 in block 1:
    # whichever half is in-sample, its winner comes last (rank 1 of 2) out of
    # sample: omega = 1/3, logit = ln(1/2), PBO = 1.
    simple = np.array([[0.02, 0.00], [0.04, 0.01], [-0.02, 0.01], [0.00, 0.03]])
    out = probability_of_backtest_overfitting(np.log1p(simple), n_splits=2)
    assert out["n_combinations"] == 2 and out["pbo"] == 1.0
    np.testing.assert_allclose(out["logits"], [math.log(0.5)] * 2, rtol=1e-12)
    assert out["selected_trial"].tolist() == [0, 1]
    # Trial 0 better in both blocks: rank 2 of 2 every time, logit ln 2, PBO 0.
    simple[2:, 0] = [0.02, 0.05]
    out = probability_of_backtest_overfitting(np.log1p(simple), n_splits=2)
    assert out["pbo"] == 0.0
    np.testing.assert_allclose(out["logits"], [math.log(2.0)] * 2, rtol=1e-12)


def brute_force_logits(log_r: np.ndarray, n_splits: int) -> np.ndarray:
    """Reference CSCV, written out directly."""
    from scipy.stats import rankdata

    r = np.expm1(log_r)
    blocks = np.array_split(np.arange(r.shape[0]), n_splits)
    logits = []
    for chosen in combinations(range(n_splits), n_splits // 2):
        is_rows = np.concatenate([blocks[b] for b in chosen])
        oos_rows = np.concatenate([blocks[b] for b in range(n_splits) if b not in chosen])
        is_sr = r[is_rows].mean(0) / r[is_rows].std(0, ddof=1)
        oos_sr = r[oos_rows].mean(0) / r[oos_rows].std(0, ddof=1)
        rank = rankdata(oos_sr)[np.argmax(is_sr)]
        omega = rank / (r.shape[1] + 1)
        logits.append(math.log(omega / (1 - omega)))
    return np.array(logits)


def test_pbo_matches_a_direct_implementation():
    rng = np.random.default_rng(11)
    log_r = rng.normal(0.0005, 0.01, (60, 5))
    log_r[:, 4] = log_r[:, 2]  # an exact duplicate: tied ranks share their average
    out = probability_of_backtest_overfitting(log_r, n_splits=6)
    reference = brute_force_logits(log_r, 6)
    assert out["n_combinations"] == 20
    np.testing.assert_allclose(out["logits"], reference, rtol=1e-9, atol=1e-12)
    assert out["pbo"] == pytest.approx(np.mean(reference <= 0))


def test_pbo_one_genuinely_better_trial_is_not_overfit():
    rng = np.random.default_rng(1)
    log_r = rng.normal(0.0, 0.01, (800, 10))
    log_r[:, 3] += 0.004
    out = probability_of_backtest_overfitting(log_r, n_splits=8)
    assert out["pbo"] == 0.0
    assert set(out["selected_trial"].tolist()) == {3}
    assert out["prob_oos_loss"] == 0.0


def test_pbo_of_pure_noise_is_near_one_half():
    values = []
    for seed in range(40):
        log_r = np.random.default_rng(seed).normal(0.0, 0.01, (480, 10))
        values.append(probability_of_backtest_overfitting(log_r, n_splits=8)["pbo"])
    # per-seed spread is ~0.2 (combinations overlap); the mean of 40 is ~0.5 +- 0.03
    assert abs(np.mean(values) - 0.5) < 0.1


def test_pbo_drops_oldest_remainder_rows_and_refuses_bad_input():
    rng = np.random.default_rng(2)
    log_r = rng.normal(0.0, 0.01, (43, 3))
    out = probability_of_backtest_overfitting(log_r, n_splits=4)
    assert out["rows_dropped"] == 3 and out["rows_used"] == 40
    np.testing.assert_allclose(out["logits"], brute_force_logits(log_r[3:], 4), rtol=1e-9)

    with pytest.raises(ValueError, match="at least 2 trials"):
        probability_of_backtest_overfitting(log_r[:, :1], n_splits=4)
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(log_r, n_splits=5)
    with pytest.raises(ValueError, match="per block"):
        probability_of_backtest_overfitting(log_r[:15], n_splits=8)
    with pytest.raises(ValueError, match="non-finite"):
        probability_of_backtest_overfitting(np.where(log_r > 0.02, np.nan, log_r), n_splits=4)
    flat = log_r.copy()
    flat[:, 1] = 0.0  # a trial that never trades
    with pytest.raises(ValueError, match=r"trials \[1\] have constant returns"):
        probability_of_backtest_overfitting(flat, n_splits=4)
    # constant inside one block only is fine: every half still varies
    partly = log_r.copy()
    partly[3:13, 1] = 0.0
    assert 0.0 <= probability_of_backtest_overfitting(partly, n_splits=4)["pbo"] <= 1.0
    # two blocks (= a half of 4) flat at one value: refused; at two values: fine
    partly[13:23, 1] = 0.0
    with pytest.raises(ValueError, match=r"trials \[1\]"):
        probability_of_backtest_overfitting(partly, n_splits=4)
    partly[13:23, 1] = 0.001
    out = probability_of_backtest_overfitting(partly, n_splits=4)
    np.testing.assert_allclose(out["logits"], brute_force_logits(partly[3:], 4), rtol=1e-9)
