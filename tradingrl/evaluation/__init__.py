"""Evaluation statistics: performance summaries, PSR/DSR, PBO and CPCV path Sharpe ratios.

Return conventions (details in each module): summaries, DSR, PBO and CPCV
paths take per-bar *log* returns of net equity (the backtester's and the
environment's output) and compute Sharpe ratios, VaR and moments on simple
returns ``expm1(log r)``; the small building blocks of
:mod:`tradingrl.evaluation.performance` take simple returns. Sharpe ratios in
PSR/DSR are per period, kurtosis is non-excess (normal = 3).

Importing this package loads numpy only; scipy and pandas load inside the
functions that need them. The splits themselves are in :mod:`tradingrl.splits`.
"""

from tradingrl.evaluation.cpcv import path_sharpes
from tradingrl.evaluation.pbo import probability_of_backtest_overfitting
from tradingrl.evaluation.performance import (
    VAR_LEVEL,
    downside_deviation,
    drawdown_durations,
    drawdown_series,
    max_drawdown,
    performance_summary,
    rolling_sharpe,
    sharpe_ratio,
    sortino_ratio,
    var_cvar,
)
from tradingrl.evaluation.sharpe import (
    EULER_MASCHERONI,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    probabilistic_sharpe_ratio,
    skew_kurtosis,
)

__all__ = [
    "EULER_MASCHERONI",
    "VAR_LEVEL",
    "deflated_sharpe_ratio",
    "downside_deviation",
    "drawdown_durations",
    "drawdown_series",
    "expected_maximum_sharpe",
    "max_drawdown",
    "path_sharpes",
    "performance_summary",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "rolling_sharpe",
    "sharpe_ratio",
    "skew_kurtosis",
    "sortino_ratio",
    "var_cvar",
]
