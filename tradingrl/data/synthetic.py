"""Deterministic synthetic daily market: the pipeline's default, offline data source.

Model (one bar = one trading day; all rates are per bar unless "annualised",
annualised figures use 252 bars per year; returns are log-returns):

* **Regimes.** A market-wide Markov chain over ``REGIMES`` = trending,
  mean-reverting, volatile, with geometric durations (mean lengths in bars are
  configurable). Each trending episode draws a market trend sign and one sign per
  sector, so trends can flip between episodes; trending bars also carry lag-1
  momentum. In mean-reverting bars each log price is pulled toward a slow
  anchor (an EMA of its own log price), an OU-like pull, plus short-term
  reversal (negative lag-1 coefficient); the anchor restarts at the price where
  each mean-reverting episode begins, so the pull is range-trading, not a
  snap-back of the whole previous trend. Volatile bars have a
  higher volatility level, Student-t shocks, more jumps and higher market betas.
* **Volatility.** Per symbol, ``sigma = base * exp(L + h)``: ``L`` follows the
  regime's log level with a short lag, ``h`` is a log-vol AR(1) (vol-of-vol)
  whose innovations mix a market-wide and an own shock and load on the previous
  return shock (leverage effect: falls raise volatility).
* **Correlation.** The unit shock of symbol i is
  ``beta_m * f_market + beta_s * f_sector + w * e_i`` with ``w`` making unit variance
  (clipped at 10 sd); ``beta_m`` is multiplied by ``crisis_beta_mult`` in volatile
  bars, so correlations rise in sell-offs. Sectors are assigned round robin.
* **Jumps.** Bernoulli (at most one per bar) own jumps and market jumps scaled
  by ``beta_m``; intensity per regime, down-biased sign, lognormal size. Jumps
  arrive overnight, so they show up as opening gaps.
* **OHLC.** ``open = previous close * exp(gap)``, the gap being the overnight
  part of the bar's diffusion (share ``overnight_share`` of its variance, split
  Brownian-bridge style) plus any jump; ``close`` from the bar's return; high
  and low are exact Brownian-bridge extremes of the intraday path from open to
  close (marginals exact, sampled independently), so ``low <= min(open, close)
  <= max(open, close) <= high`` and every price is ``exp`` of a float, > 0.
  Prices are not rounded to ticks.
* **Volume.** ``base_i`` (lognormal across symbols) times exp of an AR(1) noise,
  of the volatility level (regime and stochastic vol) and of the bar's
  ``|return| / sigma``; rounded to whole units, at least 1.

Calendar: NYSE-like sessions, weekdays minus the holidays of
``NYSEHolidayCalendar`` (New Year, MLK from 1998, Presidents, Good Friday,
Memorial, Juneteenth from 2022, Independence, Labor, Thanksgiving, Christmas,
with NYSE weekend observance; one-off closures such as 2001-09-11 are not
modelled). Timestamps are the session date at 21:00 UTC (the 16:00 New York
close in winter, fixed all year so the UTC date is the session date).

Randomness: ``SeedSequence(seed).spawn`` gives child 0 to the market and child
``i + 1`` to symbol ``i``, so one config is bit-identical every run and symbol
i's path does not depend on ``n_symbols`` (sectors are assigned round robin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from dateutil.relativedelta import MO
from pandas.tseries.holiday import (
    AbstractHolidayCalendar,
    GoodFriday,
    Holiday,
    USLaborDay,
    USMemorialDay,
    USPresidentsDay,
    USThanksgivingDay,
    nearest_workday,
    sunday_to_monday,
)
from pandas.tseries.offsets import DateOffset

from tradingrl.data.columns import OHLCV_COLUMNS, SYMBOL, TIMESTAMP

REGIMES: tuple[str, ...] = ("trending", "mean_reverting", "volatile")
TRENDING, MEAN_REVERTING, VOLATILE = 0, 1, 2
BARS_PER_YEAR = 252
SESSION_CLOSE_UTC = pd.Timedelta(hours=21)
# Where a regime goes when it ends (rows: from, columns: to); diagonal unused.
_REGIME_EXITS = np.array([[0.0, 0.6, 0.4], [0.65, 0.0, 0.35], [0.5, 0.5, 0.0]])
_REGIME_VOL_SPEED = 0.35  # share of the gap to the regime's vol level closed per bar
_MAX_ABS_SHOCK = 10.0  # unit diffusion shocks are clipped at +-10 sd (t tails)
_MAX_ABS_SHOCK_FOR_VOLUME = 8.0


class NYSEHolidayCalendar(AbstractHolidayCalendar):
    """Regular NYSE full-day holidays (no early closes, no one-off closures)."""

    start_date = pd.Timestamp("1900-01-01")
    end_date = pd.Timestamp("2200-12-31")
    rules: ClassVar[list[Holiday]] = [
        # NYSE does not close on Friday 31 Dec when 1 Jan is a Saturday.
        Holiday("New Year's Day", month=1, day=1, observance=sunday_to_monday),
        Holiday("MLK Day", month=1, day=1, offset=DateOffset(weekday=MO(3)),
                start_date="1998-01-01"),
        USPresidentsDay,
        GoodFriday,
        USMemorialDay,
        Holiday("Juneteenth", month=6, day=19, start_date="2022-01-01",
                observance=nearest_workday),
        Holiday("Independence Day", month=7, day=4, observance=nearest_workday),
        USLaborDay,
        USThanksgivingDay,
        Holiday("Christmas", month=12, day=25, observance=nearest_workday),
    ]


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Knobs of the synthetic market. Per-regime tuples are ordered as ``REGIMES``.

    Volatilities are annualised fractions of log-return std; drifts annualised
    log-returns; intensities are probabilities per bar; durations in bars.
    """

    n_symbols: int = 8
    n_bars: int = 2520  # bars (trading days) per symbol
    start: str = "2010-01-04"  # first session on or after this date
    seed: int = 7
    n_sectors: int = 3
    regime_durations: tuple[float, float, float] = (63.0, 42.0, 15.0)  # mean bars
    regime_vol_mult: tuple[float, float, float] = (1.0, 0.7, 2.2)  # x annual_vol
    annual_vol: float = 0.25  # median symbol base volatility, annualised
    vol_dispersion: float = 0.3  # lognormal sigma of base vol across symbols
    vol_persistence: float = 0.97  # AR(1) coefficient of log-vol per bar
    vol_of_vol: float = 0.3  # stationary std of the log-vol AR(1)
    vol_common_share: float = 0.5  # share of log-vol innovation variance that is market-wide
    leverage: float = -0.5  # corr(return shock_t, log-vol innovation_t+1)
    market_drift: float = 0.05  # annualised log drift, times beta_m, in every regime
    trend_drift: float = 0.30  # annualised |drift| of the market trend in trending episodes
    trend_up_prob: float = 0.6  # probability a trending episode's market trend is up
    trend_momentum: float = 0.12  # lag-1 return coefficient in trending bars
    mean_reversion: float = 0.05  # per-bar pull of log price toward the anchor
    reversal: float = 0.1  # minus the lag-1 return coefficient in mean-reverting bars
    anchor_halflife: float = 63.0  # bars, EMA half-life of the mean-reversion anchor
    jump_intensity: tuple[float, float, float] = (0.004, 0.003, 0.03)  # own jumps/bar
    market_jump_intensity: tuple[float, float, float] = (0.002, 0.001, 0.02)  # per bar
    jump_size: float = 0.04  # median |log jump| (market jumps: 1.5x)
    jump_down_prob: float = 0.6
    tail_df: float = 4.0  # Student-t degrees of freedom of volatile-regime shocks, > 2
    market_beta: tuple[float, float] = (0.45, 0.65)  # uniform range of factor loadings
    sector_beta: tuple[float, float] = (0.25, 0.45)
    crisis_beta_mult: float = 1.3  # market loading multiplier in the volatile regime
    overnight_share: float = 0.2  # share of a bar's diffusive variance in the overnight gap
    initial_price: float = 50.0  # median first close, quote currency
    price_dispersion: float = 0.8  # lognormal sigma of first prices across symbols
    median_volume: float = 1.0e6  # median base volume, shares per bar
    volume_dispersion: float = 1.0  # lognormal sigma of base volume across symbols
    volume_persistence: float = 0.8  # AR(1) coefficient of log-volume noise
    volume_noise: float = 0.3  # stationary std of the log-volume noise
    volume_vol_elasticity: float = 0.6  # d log volume / d log sigma
    volume_shock_elasticity: float = 0.35  # d log volume / d (|return| / sigma)

    def __post_init__(self) -> None:
        checks = {
            "n_symbols >= 1": self.n_symbols >= 1,
            "n_bars >= 2": self.n_bars >= 2,
            "n_sectors >= 1": self.n_sectors >= 1,
            "regime_durations >= 1": min(self.regime_durations) >= 1.0,
            "tail_df > 2": self.tail_df > 2.0,
            "0 <= vol_persistence < 1": 0.0 <= self.vol_persistence < 1.0,
            "0 <= volume_persistence < 1": 0.0 <= self.volume_persistence < 1.0,
            "-1 < leverage < 1": -1.0 < self.leverage < 1.0,
            "0 <= vol_common_share <= 1": 0.0 <= self.vol_common_share <= 1.0,
            "0 < overnight_share < 1": 0.0 < self.overnight_share < 1.0,
            "intensities in [0, 1]": all(
                0.0 <= p <= 1.0 for p in (*self.jump_intensity, *self.market_jump_intensity)
            ),
            "positive scales": min(self.annual_vol, self.initial_price, self.median_volume,
                                   self.anchor_halflife, *self.regime_vol_mult) > 0.0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid SyntheticMarketConfig: {', '.join(failed)}")


def synthetic_symbols(n: int) -> list[str]:
    """``SYN000, SYN001, ...``; the first k names never depend on ``n``."""
    return [f"SYN{i:03d}" for i in range(n)]


def trading_sessions(start: str, n: int) -> pd.DatetimeIndex:
    """The first ``n`` NYSE-like session dates on or after ``start`` (tz-naive)."""
    first = pd.Timestamp(start).normalize()
    last = first + pd.Timedelta(days=int(n * 1.5) + 30)  # ~1.45 days per session
    holidays = NYSEHolidayCalendar().holidays(first, last)
    days = pd.bdate_range(first, last, freq="C", holidays=holidays)
    if len(days) < n:  # cannot happen with ~252 sessions a year; guards the estimate
        raise RuntimeError(f"calendar span too short for {n} sessions from {start}")
    return days[:n]


def _simulate_regimes(rng: np.random.Generator, config: SyntheticMarketConfig) -> np.ndarray:
    """Regime index per bar, starting from the chain's stationary distribution."""
    stay = 1.0 - 1.0 / np.asarray(config.regime_durations, dtype=float)
    transition = _REGIME_EXITS * (1.0 - stay)[:, None] + np.diag(stay)
    eigvals, eigvecs = np.linalg.eig(transition.T)
    stationary = np.real(eigvecs[:, np.argmin(np.abs(eigvals - 1.0))])
    stationary = stationary / stationary.sum()
    cumulative = np.cumsum(transition, axis=1).tolist()
    draws = rng.random(config.n_bars).tolist()
    state = min(int(np.searchsorted(np.cumsum(stationary), draws[0], side="right")), 2)
    path = np.empty(config.n_bars, dtype=np.int8)
    for t, u in enumerate(draws):
        if t:
            row = cumulative[state]
            state = 0 if u < row[0] else (1 if u < row[1] else 2)
        path[t] = state
    return path


def _jumps(rng: np.random.Generator, probability: np.ndarray, median: float,
           down_prob: float) -> np.ndarray:
    """Jump log-sizes per bar (0 where none): Bernoulli arrival, lognormal size."""
    n = probability.shape[0]
    arrive = rng.random(n) < probability
    sign = np.where(rng.random(n) < down_prob, -1.0, 1.0)
    size = median * np.exp(0.5 * rng.standard_normal(n))
    return np.where(arrive, sign * size, 0.0)


def _t_scale(rng: np.random.Generator, df: float, shape: tuple[int, ...],
             volatile: np.ndarray) -> np.ndarray:
    """Multiplier turning N(0,1) into unit-variance Student-t draws on volatile bars."""
    scale = np.sqrt((df - 2.0) / rng.chisquare(df, size=shape))
    volatile = volatile.reshape((-1,) + (1,) * (len(shape) - 1))
    return np.where(volatile, scale, 1.0)


def generate_market_with_regimes(
    config: SyntheticMarketConfig,
) -> tuple[pd.DataFrame, pd.Series]:
    """The OHLCV table of ``generate_market`` and the regime of each session.

    The regime series is indexed by the sessions' timestamps, named ``regime``,
    categorical with categories ``REGIMES``.
    """
    c = config
    n, t_len = c.n_symbols, c.n_bars
    seeds = np.random.SeedSequence(c.seed).spawn(n + 1)
    market = np.random.Generator(np.random.PCG64(seeds[0]))

    # Market stream: regimes, trend signs, factors, market jumps, common vol shocks.
    regime = _simulate_regimes(market, c)
    volatile = regime == VOLATILE
    trending = regime == TRENDING
    episode = np.concatenate([[0], np.cumsum(regime[1:] != regime[:-1])])
    n_episodes = int(episode[-1]) + 1
    market_sign = np.where(market.random(n_episodes) < c.trend_up_prob, 1.0, -1.0)
    sector_sign = np.where(market.random((n_episodes, c.n_sectors)) < 0.5, 1.0, -1.0)
    f_market = market.standard_normal(t_len) * _t_scale(market, c.tail_df, (t_len,), volatile)
    f_sector = market.standard_normal((t_len, c.n_sectors)) * _t_scale(
        market, c.tail_df, (t_len, c.n_sectors), volatile)
    market_jump = _jumps(market, np.asarray(c.market_jump_intensity)[regime],
                         1.5 * c.jump_size, c.jump_down_prob)
    vol_common = market.standard_normal(t_len)

    # Symbol streams: scalars first, then one draw of each per-bar array.
    own_jump_p = np.asarray(c.jump_intensity)[regime]
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "e", "vol_eps", "gap_u", "hi_u", "lo_u", "jump", "vol_noise")}
    scalars = np.empty((n, 6))
    for i in range(n):
        rng = np.random.Generator(np.random.PCG64(seeds[i + 1]))
        scalars[i] = [rng.uniform(*c.market_beta), rng.uniform(*c.sector_beta),
                      *rng.standard_normal(4)]
        cols["e"].append(rng.standard_normal(t_len) * _t_scale(rng, c.tail_df, (t_len,), volatile))
        cols["vol_eps"].append(rng.standard_normal(t_len))
        cols["gap_u"].append(rng.standard_normal(t_len))
        cols["hi_u"].append(1.0 - rng.random(t_len))  # (0, 1]
        cols["lo_u"].append(1.0 - rng.random(t_len))
        cols["jump"].append(_jumps(rng, own_jump_p, c.jump_size, c.jump_down_prob))
        cols["vol_noise"].append(rng.standard_normal(t_len))
    arr = {k: np.stack(v, axis=1) for k, v in cols.items()}  # (bars, symbols)
    del cols
    beta_m, beta_s = scalars[:, 0], scalars[:, 1]
    sector = np.arange(n) % c.n_sectors
    base_sigma = c.annual_vol * np.exp(c.vol_dispersion * scalars[:, 2]) / np.sqrt(BARS_PER_YEAR)
    log_p0 = np.log(c.initial_price) + c.price_dispersion * scalars[:, 3]
    log_base_volume = np.log(c.median_volume) + c.volume_dispersion * scalars[:, 4]

    # Unit-variance correlated diffusion shocks; market loading rises when volatile.
    b_m = beta_m[None, :] * np.where(volatile, c.crisis_beta_mult, 1.0)[:, None]
    w_own = np.sqrt(np.maximum(1.0 - b_m**2 - beta_s[None, :] ** 2, 0.05))
    z = b_m * f_market[:, None] + beta_s * f_sector[:, sector] + w_own * arr.pop("e")
    np.clip(z, -_MAX_ABS_SHOCK, _MAX_ABS_SHOCK, out=z)
    jump = arr.pop("jump") + market_jump[:, None] * beta_m[None, :]

    # Log-vol innovations with leverage on the previous shock.
    vol_eta = (np.sqrt(c.vol_common_share) * vol_common[:, None]
               + np.sqrt(1.0 - c.vol_common_share) * arr.pop("vol_eps"))
    vol_eta *= np.sqrt(1.0 - c.leverage**2)
    vol_eta[1:] += c.leverage * np.clip(z[:-1], -4.0, 4.0)
    vol_eta *= c.vol_of_vol * np.sqrt(1.0 - c.vol_persistence**2)

    trend = c.trend_drift * (market_sign[episode][:, None] * beta_m
                             + sector_sign[episode][:, sector] * beta_s)
    drift = (c.market_drift * beta_m + np.where(trending[:, None], trend, 0.0)) / BARS_PER_YEAR
    target_level = np.log(np.asarray(c.regime_vol_mult))[regime]

    # Time loop: the recursions (vol level, log-vol, momentum, anchor pull).
    ret = np.empty((t_len, n))
    log_vol = np.empty((t_len, n))  # L + h
    h = c.vol_of_vol * scalars[:, 5]  # stationary start
    level = target_level[0]
    log_close, anchor, prev_diffusive = log_p0.copy(), log_p0.copy(), np.zeros(n)
    alpha = 1.0 - 0.5 ** (1.0 / c.anchor_halflife)
    for t in range(t_len):
        level += _REGIME_VOL_SPEED * (target_level[t] - level)
        h = c.vol_persistence * h + vol_eta[t]
        log_vol[t] = level + h
        r = drift[t] + base_sigma * np.exp(log_vol[t]) * z[t]
        if regime[t] == TRENDING:
            r += c.trend_momentum * prev_diffusive
        elif regime[t] == MEAN_REVERTING:
            if t and regime[t - 1] != MEAN_REVERTING:
                anchor = log_close.copy()  # the range forms where the episode starts
            r -= c.mean_reversion * (log_close - anchor) + c.reversal * prev_diffusive
        prev_diffusive = r
        r = r + jump[t]
        ret[t] = r
        log_close += r
        anchor += alpha * (log_close - anchor)
    del vol_eta, drift, trend, z

    # OHLC from returns: overnight gap (Brownian-bridge split + jumps), intraday extremes.
    sigma = base_sigma * np.exp(log_vol)
    log_c = log_p0 + np.cumsum(ret, axis=0)
    log_prev = np.vstack([log_p0[None, :], log_c[:-1]])
    w = c.overnight_share
    diffusive = ret - jump
    gap = w * diffusive + np.sqrt(w * (1.0 - w)) * sigma * arr.pop("gap_u") + jump
    log_o = log_prev + gap
    m = log_c - log_o
    s2 = (1.0 - w) * sigma**2
    up = 0.5 * (m + np.sqrt(m**2 - 2.0 * s2 * np.log(arr.pop("hi_u"))))
    down = 0.5 * (m - np.sqrt(m**2 - 2.0 * s2 * np.log(arr.pop("lo_u"))))
    close, open_ = np.exp(log_c), np.exp(log_o)
    high = np.maximum(np.exp(log_o + up), np.maximum(open_, close))
    low = np.minimum(np.exp(log_o + down), np.minimum(open_, close))
    del log_prev, gap, m, up, down, log_o

    # Volume: AR(1) noise + vol level + |shock|, lognormal base per symbol.
    noise = arr.pop("vol_noise") * (c.volume_noise * np.sqrt(1.0 - c.volume_persistence**2))
    for t in range(1, t_len):
        noise[t] += c.volume_persistence * noise[t - 1]
    shock = np.minimum((np.abs(diffusive) + np.abs(jump)) / sigma, _MAX_ABS_SHOCK_FOR_VOLUME)
    log_volume = (log_base_volume + noise + c.volume_vol_elasticity * log_vol
                  + c.volume_shock_elasticity * (shock - np.sqrt(2.0 / np.pi)))
    volume = np.maximum(np.rint(np.exp(log_volume)), 1.0)

    sessions = trading_sessions(c.start, t_len)
    naive = (sessions.as_unit("ns") + SESSION_CLOSE_UTC).to_numpy()
    timestamps = pd.DatetimeIndex(naive, name=TIMESTAMP).tz_localize("UTC")
    symbols = np.array(synthetic_symbols(n), dtype=object)
    frame = pd.DataFrame({
        TIMESTAMP: pd.DatetimeIndex(np.tile(naive, n)).tz_localize("UTC"),
        SYMBOL: np.repeat(symbols, t_len),
        "open": open_.T.ravel(), "high": high.T.ravel(), "low": low.T.ravel(),
        "close": close.T.ravel(), "volume": volume.T.ravel(),
    }, columns=list(OHLCV_COLUMNS))
    regimes = pd.Series(pd.Categorical.from_codes(regime, categories=list(REGIMES)),
                        index=timestamps, name="regime")
    return frame, regimes


def generate_market(config: SyntheticMarketConfig) -> pd.DataFrame:
    """Long OHLCV table (``OHLCV_COLUMNS``) sorted by (symbol, timestamp), RangeIndex."""
    return generate_market_with_regimes(config)[0]
