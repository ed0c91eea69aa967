"""The hook through which a risk layer may change the agent's target before execution.

A risk function is any callable ``(proposed_target, context) -> allowed_target``:
targets are positions as signed fractions of equity in [-1, 1]; the environment
clips the returned value to that range and refuses NaN. It is called once per
step, at the decision bar t, before the order is sized; everything in the
context is known at the close of bar t.

The portfolio environment's risk function takes and returns the N weights
instead, with a :class:`PortfolioRiskContext`.

The real layer lives in :mod:`tradingrl.risk`; this module fixes the
contracts, a no-op default and the layer's adapters (:func:`risk_layer_hook`,
:func:`portfolio_risk_layer_hook`).
:func:`tradingrl.envs.decision.risk_fn_from_config` builds an adapter from
params.yaml's risk section; :func:`tradingrl.envs.decision.risk_context`
builds the single-asset context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np


class RiskContext(TypedDict):
    """What the environment passes to the risk function at decision bar t.

    bar: index of bar t in the market arrays.
    equity: account equity at the close of t (quote currency).
    peak_equity: highest equity at a close since the episode began.
    drawdown: 1 - equity / peak_equity (fraction, >= 0).
    position: current position, signed fraction of equity at the close of t.
    returns: read-only view of the asset's last ``risk_lookback`` log
        close-to-close returns ending at t (oldest first; fewer near the start
        of the data, the first bar's is NaN; the market's history bars count,
        so a span's first decision sees the returns before the span).
    sigma: the asset's past-only per-bar volatility at t (fraction).
    confidence: the trend model's confidence at t (NaN without that column).
    expected_return: the trend model's expected forward log return at t (NaN
        without that column).
    state: a dict owned by the environment for the hook's own memory; emptied at
        every ``reset()``, otherwise left alone.
    """

    bar: int
    equity: float
    peak_equity: float
    drawdown: float
    position: float
    returns: np.ndarray
    sigma: float
    confidence: float
    expected_return: float
    state: dict[str, Any]


RiskFn = Callable[[float, RiskContext], float]


def no_risk_limit(proposed_target: float, context: RiskContext) -> float:
    """The default: allow the agent's target unchanged."""
    return proposed_target


def risk_layer_hook(limits: Any, *, forecast_horizon_bars: int = 1) -> RiskFn:
    """A :data:`RiskFn` that passes every target through
    :func:`tradingrl.risk.apply_risk` (single asset), keeping the layer's
    state (peak equity, breaker) in ``context["state"]``.

    The env's log returns are turned into the simple returns the layer
    expects; the trend model's expected return covers ``forecast_horizon_bars``
    bars and is divided down to one bar for the Kelly cap. Give the env a
    ``risk_lookback`` above ``limits.min_history``: the oldest return in the
    window can be NaN, and too little history makes the layer go flat
    (``insufficient_history``). A span's market carries the bars before the
    span as history (:attr:`~tradingrl.envs.arrays.MarketArrays.history_bars`,
    :func:`tradingrl.agents.data.history_lookback`), so the first decisions of
    an evaluation block or a validation span have the full window.
    """
    from tradingrl.risk import RiskState, apply_risk

    if forecast_horizon_bars < 1:
        raise ValueError("forecast_horizon_bars must be >= 1")

    def hook(proposed_target: float, context: RiskContext) -> float:
        memory = context["state"]
        decision = apply_risk(
            np.array([proposed_target]),
            limits=limits,
            state=memory.get("risk_state", RiskState()),
            equity=context["equity"],
            recent_returns=np.expm1(context["returns"])[:, None],
            confidence=np.array([context["confidence"]]) if limits.confidence_sizing else None,
            expected_return=(
                np.array([np.expm1(context["expected_return"]) / forecast_horizon_bars])
                if limits.kelly_fraction is not None
                else None
            ),
        )
        memory["risk_state"] = decision.state
        memory["binding"] = decision.binding
        return float(decision.target[0])

    return hook


class PortfolioRiskContext(TypedDict):
    """What the environment passes to a portfolio risk function at decision bar t.

    bar: index of bar t. equity: equity at the close of t (quote currency).
    peak_equity: highest equity at a close since the episode began.
    drawdown: 1 - equity / peak_equity (fraction, >= 0).
    weights: (N,) current weights, signed fractions of equity at the close of t.
    returns: read-only (k, N) view of the symbols' last ``risk_lookback`` log
        close-to-close returns ending at t, oldest first (fewer near the start
        of the data; the first bar's row is NaN).
    sigma: read-only (N,) past-only per-bar volatility at t (fraction; NaN
        in a symbol's warm-up).
    confidence / expected_return: (N,) the trend model's columns at t (NaN when
        the markets have no such column); expected_return is a forward log return.
    symbols: the N symbols, in weight order.
    state: a dict owned by the environment for the function's own memory;
        emptied at every ``reset()``.
    """

    bar: int
    equity: float
    peak_equity: float
    drawdown: float
    weights: np.ndarray
    returns: np.ndarray
    sigma: np.ndarray
    confidence: np.ndarray
    expected_return: np.ndarray
    symbols: tuple[str, ...]
    state: dict[str, Any]


PortfolioRiskFn = Callable[[np.ndarray, PortfolioRiskContext], np.ndarray]


def portfolio_risk_layer_hook(limits: Any, forecast_horizon_bars: int = 1) -> PortfolioRiskFn:
    """A :data:`PortfolioRiskFn` passing the book's weights through
    :func:`tradingrl.risk.apply_risk`, keeping the layer's state (peak equity,
    breaker) in ``context["state"]`` (its binding rules under ``"binding"``).

    The context's log returns become the simple returns the layer expects; the
    expected return (a log return over ``forecast_horizon_bars`` bars) is
    turned into a simple return and divided down to one bar for the Kelly cap.
    ``limits.confidence_sizing`` / ``limits.kelly_fraction`` need the markets'
    ``confidence`` / ``expected_return`` prediction columns (ValueError at the
    first call otherwise). Give the env a ``risk_lookback`` above
    ``limits.min_history``: the oldest row of the window can be NaN.
    """
    from tradingrl.risk import RiskState, apply_risk

    if forecast_horizon_bars < 1:
        raise ValueError(f"forecast_horizon_bars must be >= 1, got {forecast_horizon_bars}")

    def hook(proposed: np.ndarray, context: PortfolioRiskContext) -> np.ndarray:
        confidence = expected = None
        if limits.confidence_sizing:
            confidence = context["confidence"]
            if np.isnan(confidence).any():
                raise ValueError("limits.confidence_sizing needs a 'confidence' prediction "
                                 "column in the markets")
        if limits.kelly_fraction is not None:
            if np.isnan(context["expected_return"]).any():
                raise ValueError("limits.kelly_fraction needs an 'expected_return' prediction "
                                 "column in the markets")
            expected = np.expm1(context["expected_return"]) / forecast_horizon_bars
        memory = context["state"]
        decision = apply_risk(
            proposed,
            limits=limits,
            state=memory.get("risk_state", RiskState()),
            equity=context["equity"],
            recent_returns=np.expm1(context["returns"]),
            confidence=confidence,
            expected_return=expected,
        )
        memory["risk_state"] = decision.state
        memory["binding"] = decision.binding
        return decision.target

    return hook
