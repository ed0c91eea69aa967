"""Probabilistic and deflated Sharpe ratios (Bailey and Lopez de Prado).

Conventions (the ones the formulas were derived in; libraries mix them up):

- SR is the *per-period* (per-bar, not annualised) Sharpe ratio
  ``mean(r - rf) / std(r - rf, ddof=1)`` of per-bar simple returns.
- Skewness and kurtosis are the population (biased) moment ratios
  ``m3 / m2**1.5`` and ``m4 / m2**2`` with ``m_k = mean((r - mean r)**k)``;
  kurtosis is NON-excess: a normal distribution has 3. (pandas' ``.kurt()``
  and scipy's default are excess kurtosis, normal = 0, and pandas' is also
  bias-corrected: passing either here understates the tails by 3.)
- PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)),
  the probability that the true per-period SR exceeds SR* given n bars
  (Bailey and Lopez de Prado 2012, "The Sharpe ratio efficient frontier").
- DSR = PSR(SR0) with SR0 the expected maximum of ``n_trials`` estimated SRs
  whose true value is 0 and whose variance across trials is V:
  SR0 = sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e))), g the
  Euler-Mascheroni constant (Bailey and Lopez de Prado 2014, "The deflated
  Sharpe ratio"). N counts every configuration tried before the one reported:
  every Optuna trial (pruned ones included) times every RL seed.

The inputs of :func:`deflated_sharpe_ratio` are per-bar *log* returns of net
equity (what the backtester and the environment produce); they are turned into
simple returns ``expm1(log r)`` before the Sharpe ratio and moments.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EULER_MASCHERONI = 0.5772156649015329


def finite_1d(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-d float64 array; TypeError if not numeric, ValueError
    if not 1-d, empty or holding NaN/inf."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be numeric: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} non-finite values (first at {np.argmax(bad)})")
    return array


def skew_kurtosis(returns: Any) -> tuple[float, float]:
    """(skewness, kurtosis) of ``returns``: population moment ratios
    ``m3 / m2**1.5`` and ``m4 / m2**2``, kurtosis non-excess (normal = 3).
    Both NaN when all values are equal (no dispersion: undefined). Same as
    ``scipy.stats.skew(x)`` and ``scipy.stats.kurtosis(x, fisher=False)``."""
    x = finite_1d(returns, "returns")
    if np.ptp(x) == 0.0:
        return math.nan, math.nan
    d = x - x.mean()
    m2 = float(np.mean(d * d))
    m3 = float(np.mean(d * d * d))
    m4 = float(np.mean((d * d) ** 2))
    return m3 / m2**1.5, m4 / (m2 * m2)


def per_period_sharpe(returns: np.ndarray, risk_free_per_bar: float = 0.0) -> float:
    """``mean(r - rf) / std(r - rf, ddof=1)`` of a finite 1-d array of simple
    returns; NaN with fewer than 2 bars or when all excess returns are equal
    (zero variance: undefined, never a made-up 0 or inf)."""
    excess = returns - risk_free_per_bar
    if excess.size < 2 or np.ptp(excess) == 0.0:
        return math.nan
    return float(excess.mean() / excess.std(ddof=1))


def probabilistic_sharpe_ratio(
    sr: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """PSR: probability that the true per-period Sharpe ratio exceeds
    ``sr_benchmark``, given the estimate ``sr`` from ``n_obs`` bars whose
    returns have skewness ``skew`` and NON-excess ``kurtosis`` (normal = 3).
    Both Sharpe ratios per period (not annualised). See the module docstring.
    """
    values = {"sr": sr, "sr_benchmark": sr_benchmark, "skew": skew, "kurtosis": kurtosis}
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if isinstance(n_obs, bool) or int(n_obs) != n_obs or n_obs < 2:
        raise ValueError(f"n_obs must be an integer >= 2, got {n_obs}")
    if kurtosis < 1.0:
        raise ValueError(
            f"kurtosis {kurtosis} < 1 is impossible for non-excess kurtosis; "
            "was excess kurtosis (normal = 0) passed?"
        )
    variance_term = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if variance_term <= 0.0:
        raise ValueError(
            f"1 - skew*SR + (kurt-1)/4*SR^2 = {variance_term} <= 0 "
            f"(skew {skew}, kurtosis {kurtosis}): inconsistent moments"
        )
    from scipy.stats import norm

    z = (sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance_term)
    return float(norm.cdf(z))


def expected_maximum_sharpe(n_trials: int, sr_variance: float) -> float:
    """Expected maximum of ``n_trials`` estimated per-period Sharpe ratios whose
    true value is 0 and whose variance across trials is ``sr_variance``
    (per-period units, i.e. annualised variance / bars_per_year):
    ``sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))``. For one
    trial it is 0 exactly (the expectation of a single mean-zero estimate;
    the formula's first quantile is -inf there)."""
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials}")
    if not (math.isfinite(sr_variance) and sr_variance >= 0.0):
        raise ValueError(f"sr_variance must be finite and >= 0, got {sr_variance}")
    if n_trials == 1:
        return 0.0
    from scipy.stats import norm

    n = float(n_trials)
    g = EULER_MASCHERONI
    z_max = (1.0 - g) * norm.ppf(1.0 - 1.0 / n) + g * norm.ppf(1.0 - 1.0 / (n * math.e))
    return float(math.sqrt(sr_variance) * z_max)


def deflated_sharpe_ratio(
    log_returns: Any,
    *,
    n_trials: int,
    sr_variance: float | None = None,
    trial_sharpes: Any = None,
    risk_free_per_bar: float = 0.0,
) -> dict[str, Any]:
    """Deflated Sharpe ratio of the selected strategy's per-bar log returns.

    n_trials: every configuration tried (all Optuna trials, pruned included,
        times all RL seeds), including the selected one.
    sr_variance: variance of the per-period Sharpe ratios across the trials.
    trial_sharpes: the trials' per-period Sharpe ratios (simple returns, as
        here); V = their sample variance (ddof=1). At most one of the two.
        Given neither (and n_trials > 1), V = 1 / (n_obs - 1): the sampling
        variance of an SR estimate whose true value is 0 (the PSR formula at
        SR = 0), i.e. trials assumed independent and skill-free. Correlated
        trials vary less, so this V overstates SR0 (a conservative DSR).
    risk_free_per_bar: simple return per bar subtracted before the Sharpe ratio.

    Returns {"dsr", "psr_vs_zero", "z", "sr", "sr0", "sr_variance",
    "sr_variance_source", "n_trials", "n_obs", "skew", "kurtosis"}: sr and
    sr0 per period; kurtosis non-excess; with n_trials == 1, sr0 = 0,
    dsr == psr_vs_zero and sr_variance is reported but unused
    (source "single_trial"). ValueError when the returns have zero variance.
    """
    r = np.expm1(finite_1d(log_returns, "log_returns"))
    n_obs = int(r.size)
    if n_obs < 2:
        raise ValueError(f"need at least 2 bars for a Sharpe ratio, got {n_obs}")
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials}")
    if sr_variance is not None and trial_sharpes is not None:
        raise ValueError("give sr_variance or trial_sharpes, not both")
    sr = per_period_sharpe(r, risk_free_per_bar)
    if math.isnan(sr):
        raise ValueError("returns have zero variance: Sharpe ratio undefined")
    skew, kurt = skew_kurtosis(r)

    if trial_sharpes is not None:
        sharpes = finite_1d(trial_sharpes, "trial_sharpes")
        if sharpes.size < 2:
            raise ValueError("trial_sharpes needs at least 2 values for a variance")
        if sharpes.size > n_trials:
            raise ValueError(f"{sharpes.size} trial_sharpes but n_trials is {n_trials}")
        variance, source = float(sharpes.var(ddof=1)), "trial_sharpes"
    elif sr_variance is not None:
        if not (math.isfinite(sr_variance) and sr_variance >= 0.0):
            raise ValueError(f"sr_variance must be finite and >= 0, got {sr_variance}")
        variance, source = float(sr_variance), "given"
    else:
        variance, source = 1.0 / (n_obs - 1), "null_sampling_variance"
    if n_trials == 1:
        source = "single_trial"

    sr0 = expected_maximum_sharpe(int(n_trials), variance)
    dsr = probabilistic_sharpe_ratio(sr, sr0, n_obs, skew, kurt)
    z_denominator = math.sqrt(1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr)
    return {
        "dsr": dsr,
        "psr_vs_zero": probabilistic_sharpe_ratio(sr, 0.0, n_obs, skew, kurt),
        "z": (sr - sr0) * math.sqrt(n_obs - 1) / z_denominator,
        "sr": sr,
        "sr0": sr0,
        "sr_variance": variance,
        "sr_variance_source": source,
        "n_trials": int(n_trials),
        "n_obs": n_obs,
        "skew": skew,
        "kurtosis": kurt,
    }
