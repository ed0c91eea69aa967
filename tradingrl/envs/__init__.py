"""Gymnasium trading environments over precomputed market arrays.

Importing this package registers ``tradingrl/SingleAsset-v0``: a
:class:`SingleAssetTradingEnv` on a small built-in synthetic market
(``gymnasium.make("tradingrl/SingleAsset-v0")`` needs no arguments; keyword
arguments go to :func:`make_synthetic_env`), and ``tradingrl/Portfolio-v0``: a
:class:`PortfolioTradingEnv` on several synthetic symbols (keyword arguments go
to :func:`make_synthetic_portfolio_env`).
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from tradingrl.envs.arrays import (
    DEFAULT_PREDICTION_COLUMNS,
    NEUTRAL_PREDICTIONS,
    MarketArrays,
    is_label_like,
    rolling_sigma,
)
from tradingrl.envs.costs import ExecutionCosts, FillCosts, cap_fill, fill_costs
from tradingrl.envs.decision import ACCOUNT_STATE_NAMES, env_kwargs_from_config, risk_fn_from_config
from tradingrl.envs.episode import REWARD_MODES, RUIN_FLOOR
from tradingrl.envs.factory import (
    SYNTHETIC_FEATURES,
    make_synthetic_env,
    make_synthetic_portfolio_env,
    synthetic_market_arrays,
    synthetic_portfolio_arrays,
)
from tradingrl.envs.panel import (
    MarketPanel,
    align_markets,
    alignment_losses,
    check_same_bars,
    stack_markets,
)
from tradingrl.envs.portfolio import PORTFOLIO_ACCOUNT_STATE_NAMES, PortfolioTradingEnv
from tradingrl.envs.risk_hook import (
    PortfolioRiskContext,
    PortfolioRiskFn,
    RiskContext,
    RiskFn,
    no_risk_limit,
    portfolio_risk_layer_hook,
    risk_layer_hook,
)
from tradingrl.envs.single_asset import SingleAssetTradingEnv

SINGLE_ASSET_ENV_ID = "tradingrl/SingleAsset-v0"
PORTFOLIO_ENV_ID = "tradingrl/Portfolio-v0"

if SINGLE_ASSET_ENV_ID not in registry:
    register(id=SINGLE_ASSET_ENV_ID, entry_point="tradingrl.envs.factory:make_synthetic_env")
if PORTFOLIO_ENV_ID not in registry:
    register(id=PORTFOLIO_ENV_ID,
             entry_point="tradingrl.envs.factory:make_synthetic_portfolio_env")

__all__ = [
    "ACCOUNT_STATE_NAMES",
    "DEFAULT_PREDICTION_COLUMNS",
    "NEUTRAL_PREDICTIONS",
    "PORTFOLIO_ACCOUNT_STATE_NAMES",
    "PORTFOLIO_ENV_ID",
    "REWARD_MODES",
    "RUIN_FLOOR",
    "SINGLE_ASSET_ENV_ID",
    "SYNTHETIC_FEATURES",
    "ExecutionCosts",
    "FillCosts",
    "MarketArrays",
    "MarketPanel",
    "PortfolioRiskContext",
    "PortfolioRiskFn",
    "PortfolioTradingEnv",
    "RiskContext",
    "RiskFn",
    "SingleAssetTradingEnv",
    "align_markets",
    "alignment_losses",
    "cap_fill",
    "check_same_bars",
    "env_kwargs_from_config",
    "fill_costs",
    "is_label_like",
    "make_synthetic_env",
    "make_synthetic_portfolio_env",
    "no_risk_limit",
    "portfolio_risk_layer_hook",
    "risk_fn_from_config",
    "risk_layer_hook",
    "rolling_sigma",
    "stack_markets",
    "synthetic_market_arrays",
    "synthetic_portfolio_arrays",
]
