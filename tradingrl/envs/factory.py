"""The registered defaults: environments on a small synthetic market.

``gymnasium.make("tradingrl/SingleAsset-v0")`` calls :func:`make_synthetic_env`
with no arguments, ``gymnasium.make("tradingrl/Portfolio-v0")``
:func:`make_synthetic_portfolio_env`. The market is one symbol (or
``n_symbols`` symbols) of :func:`tradingrl.data.synthetic.generate_market`; the
features are a handful of past-only bar statistics (below), scaled per symbol
with the mean and std of the first ``fit_fraction`` of the bars only;
predictions are neutral. Markets are cached per (n_symbols, n_bars, seed,
fit_fraction): the arrays are read-only, so environments share them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.portfolio import PortfolioTradingEnv
from tradingrl.envs.single_asset import SingleAssetTradingEnv

# ret_k: log return over the last k bars; vol_20: std of the last 20 one-bar log
# returns; range_hl: log(high / low) of the bar; log_volume_z20: log volume minus
# its mean over the last 20 bars. All use bars <= t.
SYNTHETIC_FEATURES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_20", "vol_20", "range_hl", "log_volume_z20",
)
_WARMUP_BARS = 21  # vol_20 needs 20 one-bar returns, i.e. 21 closes


def simple_features(bars: pd.DataFrame) -> pd.DataFrame:
    """:data:`SYNTHETIC_FEATURES` (unscaled, float64) for one symbol's bars in time
    order; the first rows are NaN (warm-up)."""
    log_close = np.log(bars["close"].astype(float))
    ret_1 = log_close.diff()
    log_volume = np.log(bars["volume"].astype(float).clip(lower=1.0))
    return pd.DataFrame({
        "ret_1": ret_1,
        "ret_5": log_close.diff(5),
        "ret_20": log_close.diff(20),
        "vol_20": ret_1.rolling(20).std(),
        "range_hl": np.log(bars["high"] / bars["low"]),
        "log_volume_z20": log_volume - log_volume.rolling(20).mean(),
    }, index=bars.index)


def _check_fit_fraction(fit_fraction: float) -> None:
    if not 0.0 < fit_fraction <= 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1], got {fit_fraction}")


def _symbol_market_arrays(bars: pd.DataFrame, fit_fraction: float) -> MarketArrays:
    """MarketArrays of one symbol's synthetic bars (time order): the warm-up rows
    dropped, :func:`simple_features` scaled with the mean and std of the first
    ``fit_fraction`` of the remaining bars; sigma is the unscaled vol_20."""
    raw = simple_features(bars)
    keep = raw.notna().all(axis=1).to_numpy()
    keep[:_WARMUP_BARS] = False  # drop the warm-up rows, never fill them
    raw, bars = raw[keep], bars[keep]
    fit = raw.iloc[: max(2, int(len(raw) * fit_fraction))]
    scaled = (raw - fit.mean()) / fit.std(ddof=0).replace(0.0, 1.0)
    return MarketArrays(
        symbol=str(bars["symbol"].iloc[0]),
        open=bars["open"].to_numpy(), high=bars["high"].to_numpy(),
        low=bars["low"].to_numpy(), close=bars["close"].to_numpy(),
        volume=bars["volume"].to_numpy(),
        features=scaled[list(SYNTHETIC_FEATURES)].to_numpy(np.float32),
        feature_names=SYNTHETIC_FEATURES,
        sigma=raw["vol_20"].to_numpy(),
        timestamps=pd.DatetimeIndex(bars["timestamp"]).tz_localize(None).to_numpy(),
    )


@lru_cache(maxsize=8)
def synthetic_market_arrays(n_bars: int = 1000, seed: int = 11,
                            fit_fraction: float = 0.5) -> MarketArrays:
    """MarketArrays of one synthetic symbol with ``n_bars`` usable bars (after the
    features' warm-up), features scaled on the first ``fit_fraction`` of them.
    The impact model's sigma is the unscaled, past-only vol_20."""
    _check_fit_fraction(fit_fraction)
    bars = generate_market(SyntheticMarketConfig(
        n_symbols=1, n_bars=n_bars + _WARMUP_BARS, seed=seed))
    return _symbol_market_arrays(bars, fit_fraction)


@lru_cache(maxsize=8)
def synthetic_portfolio_arrays(n_symbols: int = 4, n_bars: int = 1000, seed: int = 11,
                               fit_fraction: float = 0.5) -> tuple[MarketArrays, ...]:
    """MarketArrays of ``n_symbols`` symbols of one synthetic market (correlated,
    same calendar), each built as :func:`synthetic_market_arrays` builds its one
    symbol (symbol 0 is that symbol: the generator's paths do not depend on
    ``n_symbols``). Neutral predictions."""
    _check_fit_fraction(fit_fraction)
    if n_symbols < 1:
        raise ValueError(f"n_symbols must be >= 1, got {n_symbols}")
    bars = generate_market(SyntheticMarketConfig(
        n_symbols=n_symbols, n_bars=n_bars + _WARMUP_BARS, seed=seed))
    return tuple(_symbol_market_arrays(group, fit_fraction)
                 for _, group in bars.groupby("symbol", sort=True))


def make_synthetic_env(n_bars: int = 1000, seed: int = 11, fit_fraction: float = 0.5,
                       **env_kwargs: Any) -> SingleAssetTradingEnv:
    """A :class:`SingleAssetTradingEnv` on :func:`synthetic_market_arrays`;
    ``env_kwargs`` go to the environment (window, costs, reward_mode, ...)."""
    market = synthetic_market_arrays(n_bars, seed, fit_fraction)
    return SingleAssetTradingEnv(market, **env_kwargs)


def make_synthetic_portfolio_env(n_symbols: int = 4, n_bars: int = 1000, seed: int = 11,
                                 fit_fraction: float = 0.5,
                                 **env_kwargs: Any) -> PortfolioTradingEnv:
    """A :class:`PortfolioTradingEnv` on :func:`synthetic_portfolio_arrays`;
    ``env_kwargs`` go to the environment (allow_short, window, costs, ...)."""
    markets = synthetic_portfolio_arrays(n_symbols, n_bars, seed, fit_fraction)
    return PortfolioTradingEnv(markets, **env_kwargs)
