"""The trading decision's one code path: observation, risk context, risk function.

Judged = served. Everything that decides a single-asset target goes through
these functions, so the environment that trains and evaluates the agent
(:class:`~tradingrl.envs.single_asset.SingleAssetTradingEnv`, and through it
the backtester's risk replay and the drift replay) and the served policy
(:class:`~tradingrl.registry.policy.TradingPolicy`) cannot drift apart:

1. :func:`observation_inputs` makes the feature and prediction blocks float32
   and clips them to ``obs_clip`` (the environment once per market, the
   policy once per request);
2. :func:`write_observation` lays out the observation (length
   :func:`observation_size`)::

       [features of bars t-window+1 .. t, oldest first, each row F values]
       [prediction columns of bar t (P values)]
       [position, cash / equity, unrealised PnL / equity, drawdown]

   with the account entries (:data:`ACCOUNT_STATE_NAMES`) clipped to the bound;
3. :func:`requested_target` turns the agent's action into the requested
   target, a signed fraction of equity in [-1, 1], by the env's
   :class:`ActionRule`: the action is the target itself (``action_mode``
   "target") or an adjustment of the supervised position
   :func:`supervised_signal` (``p_up - p_down`` of the decision bar's
   predictions, "residual": ``signal + residual_scale * action``), so an
   agent whose action is 0 trades the supervised baseline;
4. :func:`risk_context` builds the :class:`~tradingrl.envs.risk_hook.RiskContext`
   at the decision bar (returns window from :func:`return_window`, the trend
   model's confidence and expected return read from the observation's own
   float32 prediction row at :func:`risk_columns`);
5. :func:`allowed_target` passes the requested target through the risk
   function that :func:`risk_fn_from_config` builds from params.yaml's
   ``train_agent.risk`` section (:func:`env_kwargs_from_config` builds all of
   an environment's keyword arguments from its sections);
6. :func:`banded_target` applies the no-trade band: a target less than
   ``no_trade_band`` away from the position held sends no order (the
   position is kept), except a flat target, which is always executed.

The portfolio environment shares :func:`observation_inputs`, :class:`ActionRule`,
:func:`supervised_signal` and
:func:`risk_fn_from_config` (``kind="portfolio"``); its observation layout,
action map and risk check are its own functions in
:mod:`tradingrl.envs.portfolio`, which the served policy calls as well.

The functions take plain arrays and floats: the environment calls them in its
step loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradingrl.envs.costs import ExecutionCosts
from tradingrl.envs.risk_hook import (
    PortfolioRiskFn,
    RiskContext,
    RiskFn,
    portfolio_risk_layer_hook,
    risk_layer_hook,
)
from tradingrl.risk.limits import RiskLimits

ACCOUNT_STATE_NAMES: tuple[str, ...] = ("position", "cash_fraction", "unrealised_pnl", "drawdown")
ENV_KINDS: tuple[str, ...] = ("single_asset", "portfolio")
# params.yaml train_agent.env keys that become environment keyword arguments.
ENV_PARAM_KEYS: tuple[str, ...] = (
    "window", "initial_cash", "fill", "reward_mode", "risk_lambda", "dsr_eta", "max_steps",
    "random_start", "min_episode_steps", "end_of_data", "risk_lookback",
    "action_mode", "residual_scale", "no_trade_band",
)
ACTION_MODES: tuple[str, ...] = ("target", "residual")
# The env keys of the action's meaning (ActionRule's fields), in the bundle's manifest too.
ACTION_KEYS: tuple[str, ...] = ("action_mode", "residual_scale", "no_trade_band")
# Keys of the risk section that are not RiskLimits fields.
_RISK_HOOK_KEYS = ("enabled", "forecast_horizon_bars")


# ------------------------------------------------------------------ observation
def observation_size(window: int, n_features: int, n_predictions: int) -> int:
    """Entries of a single-asset observation: ``window`` bars of ``n_features``,
    ``n_predictions`` prediction columns and the account entries."""
    return window * n_features + n_predictions + len(ACCOUNT_STATE_NAMES)


def observation_bound(obs_clip: float | None) -> float:
    """The clip bound of the observation's entries as a float (``math.inf``
    for obs_clip None)."""
    return math.inf if obs_clip is None else float(obs_clip)


def clip_observation_inputs(obs_clip: float | None,
                            *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``arrays`` clipped to [-obs_clip, obs_clip]; unchanged when obs_clip is
    None. ValueError unless obs_clip is None or > 0."""
    if obs_clip is None:
        return arrays
    if not obs_clip > 0:
        raise ValueError(f"obs_clip must be > 0 or None, got {obs_clip}")
    return tuple(np.clip(a, -obs_clip, obs_clip) for a in arrays)


def observation_inputs(features: np.ndarray, predictions: np.ndarray,
                       obs_clip: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The observation's feature block (scaled features, any shape) and
    prediction block (the trend model's columns) as C-contiguous float32,
    clipped to [-obs_clip, obs_clip] (None: not clipped; ValueError unless
    None or > 0). Clipped first, then cast, so a float64 bound never makes
    the result float64."""
    features, predictions = clip_observation_inputs(obs_clip, features, predictions)
    return (np.ascontiguousarray(features, dtype=np.float32),
            np.ascontiguousarray(predictions, dtype=np.float32))


def write_observation(obs: np.ndarray, window: np.ndarray, predictions: np.ndarray,
                      position: float, cash_fraction: float, unrealised_pnl: float,
                      drawdown: float, bound: float) -> None:
    """Fill ``obs`` (float32, :func:`observation_size` entries) in place.

    window: the flat float32 features of the observation's bars, oldest first
        (from :func:`observation_inputs`, already clipped).
    predictions: the float32 prediction columns at the decision bar (clipped).
    position: shares * close_t / equity, signed fraction of equity.
    cash_fraction: cash / equity. unrealised_pnl: shares * (close_t - average
        entry price) / equity. drawdown: 1 - equity / peak equity (>= 0).
    bound: clip bound of the account entries (``math.inf``: no clipping).
    """
    w = len(window)
    k = w + len(predictions)
    obs[:w] = window
    obs[w:k] = predictions
    obs[k] = max(-bound, min(position, bound))
    obs[k + 1] = max(-bound, min(cash_fraction, bound))
    obs[k + 2] = max(-bound, min(unrealised_pnl, bound))
    obs[k + 3] = min(drawdown, bound)


@dataclass(frozen=True)
class ActionRule:
    """What a single-asset agent's action (one entry in [-1, 1]) means.

    mode: "target": the action is the requested target; "residual": it
        adjusts the supervised position, ``requested = supervised_signal +
        residual_scale * action`` (clipped to [-1, 1]), so action 0 requests
        what the ``supervised`` baseline does.
    residual_scale: how far (a fraction of equity) a full action moves the
        request away from the signal (> 0; used by "residual" only).
    no_trade_band: a risk-checked target less than this far from the held
        position sends no order (:func:`banded_target`; 0: every change
        trades), in [0, 1).
    """

    mode: str = "target"
    residual_scale: float = 1.0
    no_trade_band: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.mode!r}")
        if not (self.residual_scale > 0 and math.isfinite(self.residual_scale)):
            raise ValueError(f"residual_scale must be > 0 and finite, got {self.residual_scale}")
        if not 0.0 <= self.no_trade_band < 1.0:
            raise ValueError(f"no_trade_band must be in [0, 1), got {self.no_trade_band}")

    @property
    def residual(self) -> bool:
        return self.mode == "residual"

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ActionRule:
        """From a mapping of :data:`ACTION_KEYS` (an env section, a manifest's
        ``action``); missing keys (a bundle older than the rule) take the
        defaults: the action is the target."""
        config = config or {}
        return cls(str(config.get("action_mode", "target")),
                   float(config.get("residual_scale", 1.0)),
                   float(config.get("no_trade_band", 0.0)))


def signal_columns(prediction_names: Sequence[str], rule: ActionRule) -> tuple[int, int]:
    """Positions of ``p_up`` and ``p_down`` among the prediction columns for
    :func:`supervised_signal` ((-1, -1) when the rule does not read them);
    ValueError when a residual rule's state lacks them."""
    if not rule.residual:
        return (-1, -1)
    names = list(prediction_names)
    missing = [c for c in ("p_up", "p_down") if c not in names]
    if missing:
        raise ValueError(f"action_mode 'residual' adjusts p_up - p_down, but the agent's "
                         f"prediction columns lack {missing}")
    return names.index("p_up"), names.index("p_down")


def supervised_signal(p_up: Any, p_down: Any) -> Any:
    """The supervised position, ``p_up - p_down`` in float64 (floats or
    arrays): the ``supervised`` baseline's target and the residual action's
    base, one definition for both."""
    return np.asarray(p_up, dtype=np.float64) - np.asarray(p_down, dtype=np.float64)


def requested_target(action: Any, label: str = "", *, rule: ActionRule | None = None,
                     predictions: np.ndarray | None = None,
                     columns: tuple[int, int] = (-1, -1)) -> float:
    """The agent's action (an array of one entry or a number) as the requested
    target, a float clipped to [-1, 1], by ``rule`` (None: the action is the
    target). A residual rule adds ``residual_scale * action`` (the action
    clipped to [-1, 1] first) to :func:`supervised_signal` of the decision
    bar's float32 prediction row ``predictions`` at ``columns``
    (:func:`signal_columns`). ValueError (message prefixed with ``label``)
    when the action is NaN."""
    try:
        requested = float(action[0])
    except (TypeError, IndexError):
        requested = float(action)
    if math.isnan(requested):
        raise ValueError(f"{label}action is NaN")
    if rule is not None and rule.residual:
        if predictions is None or columns[0] < 0:
            raise ValueError(f"{label}a residual action needs the prediction row and its "
                             "p_up / p_down columns")
        signal = float(supervised_signal(predictions[columns[0]], predictions[columns[1]]))
        requested = signal + rule.residual_scale * max(-1.0, min(requested, 1.0))
    return max(-1.0, min(requested, 1.0))


def banded_target(target: float, position: float, band: float) -> float:
    """The no-trade band: ``position`` (hold, no order) when ``target`` is
    less than ``band`` away from it, else ``target``. A flat target (0.0:
    the drawdown breaker, a flat request, the block's closing step) is
    always executed. ``band`` 0 never holds."""
    if target != 0.0 and abs(target - position) < band:
        return position
    return target


# ------------------------------------------------------------------ risk
def risk_columns(prediction_names: Sequence[str]) -> tuple[int, int]:
    """Positions of ``confidence`` and ``expected_return`` among the
    prediction columns (-1 where absent)."""
    names = list(prediction_names)
    return (names.index("confidence") if "confidence" in names else -1,
            names.index("expected_return") if "expected_return" in names else -1)


def return_window(log_returns: np.ndarray, t: int, lookback: int) -> np.ndarray:
    """The last ``lookback`` one-bar log returns ending at bar t, oldest first
    (fewer near the start): a view of ``log_returns``."""
    return log_returns[max(0, t - lookback + 1):t + 1]


def risk_context(bar: int, equity: float, peak_equity: float, drawdown: float,
                 position: float, returns: np.ndarray, sigma: float,
                 predictions: np.ndarray, columns: tuple[int, int],
                 state: dict[str, Any]) -> RiskContext:
    """The risk function's context at decision bar ``bar`` (fields and units:
    :class:`~tradingrl.envs.risk_hook.RiskContext`). ``predictions``: the
    observation's float32 prediction row at the bar; ``columns``: its
    :func:`risk_columns` (confidence and expected return are NaN where -1)."""
    conf, er = columns
    return {
        "bar": bar,
        "equity": equity,
        "peak_equity": peak_equity,
        "drawdown": drawdown,
        "position": position,
        "returns": returns,
        "sigma": sigma,
        "confidence": float(predictions[conf]) if conf >= 0 else math.nan,
        "expected_return": float(predictions[er]) if er >= 0 else math.nan,
        "state": state,
    }


def allowed_target(risk_fn: RiskFn, requested: float, context: RiskContext,
                   label: str = "") -> float:
    """``risk_fn``'s target for the requested one, clipped to [-1, 1];
    ValueError (message prefixed with ``label``) when it returns NaN."""
    target = float(risk_fn(requested, context))
    if math.isnan(target):
        raise ValueError(f"{label}risk_fn returned NaN")
    return max(-1.0, min(target, 1.0))


def _check_kind(kind: str) -> None:
    if kind not in ENV_KINDS:
        raise ValueError(f"env kind must be one of {ENV_KINDS}, got {kind!r}")


def risk_fn_from_config(risk: Mapping[str, Any],
                        kind: str = "single_asset") -> RiskFn | PortfolioRiskFn | None:
    """The risk function of params.yaml's ``train_agent.risk`` section: None
    when ``risk["enabled"]`` is false, else the risk layer
    (:func:`~tradingrl.envs.risk_hook.risk_layer_hook`, or
    :func:`~tradingrl.envs.risk_hook.portfolio_risk_layer_hook` for ``kind``
    "portfolio") with ``RiskLimits`` of the section's other keys and its
    ``forecast_horizon_bars`` (the trend model's label horizon, bars).
    ``risk`` is not changed. KeyError without ``enabled`` (or, enabled,
    without ``forecast_horizon_bars``); TypeError / ValueError on bad limits."""
    _check_kind(kind)
    if not risk["enabled"]:
        return None
    horizon = int(risk["forecast_horizon_bars"])
    limits = RiskLimits(**{k: v for k, v in risk.items() if k not in _RISK_HOOK_KEYS})
    if kind == "portfolio":
        return portfolio_risk_layer_hook(limits, forecast_horizon_bars=horizon)
    return risk_layer_hook(limits, forecast_horizon_bars=horizon)


def env_kwargs_from_config(env: Mapping[str, Any], costs: Mapping[str, Any],
                           risk: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """An environment's keyword arguments from params.yaml's ``train_agent``
    sections: the :data:`ENV_PARAM_KEYS` of ``env`` (all required),
    ``costs=ExecutionCosts(**costs)`` and, when the risk layer is enabled,
    ``risk_fn`` (:func:`risk_fn_from_config` for ``kind``). The mappings are
    not changed."""
    kwargs = {k: env[k] for k in ENV_PARAM_KEYS}
    kwargs["costs"] = ExecutionCosts(**costs)
    risk_fn = risk_fn_from_config(risk, kind)
    if risk_fn is not None:
        kwargs["risk_fn"] = risk_fn
    return kwargs
