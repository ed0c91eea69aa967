"""Backtests of target-position series with the trading environment's fills and costs.

:func:`backtest_positions` trades one symbol (numba kernel, or a replay through
:class:`tradingrl.envs.SingleAssetTradingEnv` when a risk function is given);
:func:`backtest_equal_weight` trades several symbols, each with an equal share
of the cash. A decision at bar t fills at bar t+1 after costs, as in the env.
"""

from tradingrl.backtest.engine import FILL_MODES, BacktestResult, backtest_positions
from tradingrl.backtest.portfolio import EqualWeightResult, backtest_equal_weight

__all__ = [
    "FILL_MODES",
    "BacktestResult",
    "EqualWeightResult",
    "backtest_equal_weight",
    "backtest_positions",
]
