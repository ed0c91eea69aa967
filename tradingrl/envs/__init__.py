"""Gymnasium trading environments over precomputed market arrays.

Importing this package registers ``tradingrl/SingleAsset-v0``: a
:class:`SingleAssetTradingEnv` on a small built-in synthetic market
(``gymnasium.make("tradingrl/SingleAsset-v0")`` needs no arguments; keyword
arguments go to :func:`make_synthetic_env`).
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
from tradingrl.envs.factory import SYNTHETIC_FEATURES, make_synthetic_env, synthetic_market_arrays
from tradingrl.envs.risk_hook import RiskContext, RiskFn, no_risk_limit, risk_layer_hook
from tradingrl.envs.single_asset import ACCOUNT_STATE_NAMES, REWARD_MODES, SingleAssetTradingEnv

SINGLE_ASSET_ENV_ID = "tradingrl/SingleAsset-v0"

if SINGLE_ASSET_ENV_ID not in registry:
    register(id=SINGLE_ASSET_ENV_ID, entry_point="tradingrl.envs.factory:make_synthetic_env")

__all__ = [
    "ACCOUNT_STATE_NAMES",
    "DEFAULT_PREDICTION_COLUMNS",
    "NEUTRAL_PREDICTIONS",
    "REWARD_MODES",
    "SINGLE_ASSET_ENV_ID",
    "SYNTHETIC_FEATURES",
    "ExecutionCosts",
    "FillCosts",
    "MarketArrays",
    "RiskContext",
    "RiskFn",
    "SingleAssetTradingEnv",
    "cap_fill",
    "fill_costs",
    "is_label_like",
    "make_synthetic_env",
    "no_risk_limit",
    "risk_layer_hook",
    "rolling_sigma",
    "synthetic_market_arrays",
]
