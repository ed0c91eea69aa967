"""The ``trading-policy`` model: bundle, in-process policy, MLflow pyfunc.

- :func:`build_policy_bundle` copies the trend model, the agent, their
  scalers and the feature settings into one folder with a manifest;
- :class:`TradingPolicy` loads a bundle and decides (plain Python, no MLflow);
- :class:`TradingPolicyModel` / :func:`log_trading_policy` (module
  :mod:`tradingrl.registry.pyfunc`, imported on first use: it pulls in
  mlflow) log and register it as an MLflow pyfunc.
"""

from __future__ import annotations

from typing import Any

from tradingrl.registry.bundle import (
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    build_policy_bundle,
    read_manifest,
    required_history,
)
from tradingrl.registry.inputs import AccountState, prepare_ohlcv
from tradingrl.registry.policy import TradingPolicy

_PYFUNC_NAMES = ("ACCOUNT_PARAM", "TradingPolicyModel", "log_trading_policy",
                 "parse_account_param", "serving_input", "serving_output")


def __getattr__(name: str) -> Any:
    if name in _PYFUNC_NAMES:
        from tradingrl.registry import pyfunc

        return getattr(pyfunc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCOUNT_PARAM",
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "AccountState",
    "TradingPolicy",
    "TradingPolicyModel",
    "build_policy_bundle",
    "log_trading_policy",
    "parse_account_param",
    "prepare_ohlcv",
    "read_manifest",
    "required_history",
    "serving_input",
    "serving_output",
]
