"""Single-asset trading environment: the agent sets a target position each bar.

Timing (the project's fill rule). At decision bar t the agent has seen bars <= t
only. Its action is a target position, a signed fraction of equity in [-1, 1]
(long/short, no leverage beyond 1). The order is sized in shares from what is
known at t, ``target * equity_t / close_t``, capped by the volume limit, filled
at bar t+1's open (``fill="next_open"``) or close (``"next_close"``) after
costs (see :mod:`tradingrl.envs.costs`; the impact's sigma is the past-only
``sigma[t]``, the volume cap and impact use the volume known at t, the mean
volume of the ``costs.volume_window`` bars up to t, and nothing fills on a
fill bar without volume), and the account is marked to market at bar t+1's
close. What the cap leaves unfilled is dropped (the next decision
re-targets) and recorded: ``info["unfilled_shares"]`` (signed) and
``info["unfilled_notional"]`` (at the fill price); ``info["capped"]`` says
whether the cap cut the order.

Closing at the end (``close_at_end=True``, what every evaluation book uses):
the step whose fill bar is the span's last bar targets flat whatever the
agent and the risk layer asked, and that fill is not cut by the volume cap
(it pays the full square-root impact of its size), so a book ends flat,
having paid the cost of its exit with the same cost model.
The step's reward is

    log_return = log(equity_{t+1} / equity_t)            (after costs)
    reward     = log_return + risk_term

with ``risk_term`` 0 (``reward_mode="none"``), ``-risk_lambda * max(dd_{t+1} - dd_t, 0)``
("drawdown_penalty", dd = drawdown from peak equity) or ``risk_lambda * D_t`` the
differential Sharpe ratio of Moody & Saffell with adaptation rate ``dsr_eta``
("differential_sharpe"). ``info["log_return"]`` keeps the raw part, so over an
episode ``sum(log_return) == log(final_equity / initial_cash)``.

A change of target smaller than ``min_trade_fraction`` of equity sends no order
(no cost): holding the observed position costs nothing even after it went
through float32.

The action's meaning (:class:`tradingrl.envs.decision.ActionRule`):
``action_mode="target"``: the action is the requested target;
``"residual"``: it adjusts the supervised position ``p_up - p_down`` of bar
t's predictions, ``requested = p_up - p_down + residual_scale * action``, so
action 0 trades exactly as the ``supervised`` baseline does. After the risk
layer, ``no_trade_band`` > 0 keeps the held position (no order) when the
target is less than the band away from it (a flat target always trades; the
closing step is never held). Shares are fractional; cash earns nothing and shorts pay no
borrow fee.

Observation (float32, flat, length ``window * F + P + 4``)::

    [features of bars t-window+1 .. t, oldest first, each row F values]
    [prediction columns of bar t (P values)]
    [position, cash / equity, unrealised PnL / equity, drawdown]

position = shares * close_t / equity_t; unrealised PnL is against the average
entry price of the open position (excluding costs); drawdown = 1 - equity /
peak equity. Every entry is clipped to [-obs_clip, obs_clip] (the features once,
when the environment is built), which are the space's bounds.

The observation, the action's clip, the risk function's context and its
target are built by :mod:`tradingrl.envs.decision`, the functions the served
policy (:class:`tradingrl.registry.policy.TradingPolicy`) calls too.

Episode: from a start bar (fixed, or random with ``random_start``) until the
last bar of the span has been the fill bar (terminated by default, see
``end_of_data``), equity <= 0 (terminated), or ``max_steps`` steps (truncated).
The span, the reward's risk term, the account's peak and drawdown and these
episode rules are shared with the portfolio environment:
:class:`tradingrl.envs.episode.TradingEpisode`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.costs import ExecutionCosts, decision_volume
from tradingrl.envs.decision import (
    ActionRule,
    allowed_target,
    banded_target,
    observation_inputs,
    observation_size,
    requested_target,
    return_window,
    risk_columns,
    risk_context,
    signal_columns,
    write_observation,
)
from tradingrl.envs.episode import TradingEpisode
from tradingrl.envs.risk_hook import RiskContext, RiskFn, no_risk_limit


class SingleAssetTradingEnv(TradingEpisode):
    """Trade one symbol with a target-position action; see the module docstring.

    market: the symbol's bars, features and predictions.
    window: bars of features in each observation (>= 1).
    initial_cash: starting equity, quote currency.
    costs: commission, spread, impact and volume cap.
    fill: "next_open" (default) or "next_close": the price of bar t+1 a
        decision at t fills at.
    reward_mode / risk_lambda / dsr_eta: the optional risk term.
    start_bar / end_bar: the span [start_bar, end_bar) of bars that may be
        traded; the observation window may reach back before start_bar (past
        bars). A decision bar t satisfies t + 1 < end_bar.
    max_steps: truncate after this many steps (None: run to the span's end).
    random_start: start each episode at a random decision bar, leaving at
        least ``min_episode_steps`` steps; otherwise at the first decision bar.
        ``reset(options={"start_bar": t})`` forces a start.
    min_trade_fraction: no order when |target - position| is at most this
        fraction of equity.
    obs_clip: bound of every observation entry (None: unbounded, no clipping).
    risk_fn: ``(proposed_target, RiskContext) -> allowed_target``; None = no-op.
    risk_lookback: returns in the risk context's window (bars).
    action_mode / residual_scale / no_trade_band: the action's meaning and the
        no-trade band (module docstring; :class:`~tradingrl.envs.decision.ActionRule`).
    end_of_data: whether reaching the span's end is "terminate" or "truncate".
    close_at_end: the step that fills at the span's last bar targets flat,
        uncapped (module docstring); False (default) leaves it to the agent.
    copy_obs: return a fresh observation array (True) or the environment's
        own buffer, overwritten by the next step (False; fine for SB3's VecEnvs,
        which copy it).
    """

    def __init__(
        self,
        market: MarketArrays,
        *,
        window: int = 20,
        initial_cash: float = 1_000_000.0,
        costs: ExecutionCosts | None = None,
        fill: Literal["next_open", "next_close"] = "next_open",
        reward_mode: Literal["none", "drawdown_penalty", "differential_sharpe"] = "none",
        risk_lambda: float = 1.0,
        dsr_eta: float = 0.01,
        start_bar: int = 0,
        end_bar: int | None = None,
        max_steps: int | None = None,
        random_start: bool = False,
        min_episode_steps: int = 1,
        min_trade_fraction: float = 1e-6,
        obs_clip: float | None = 10.0,
        risk_fn: RiskFn | None = None,
        risk_lookback: int = 20,
        action_mode: Literal["target", "residual"] = "target",
        residual_scale: float = 1.0,
        no_trade_band: float = 0.0,
        end_of_data: Literal["terminate", "truncate"] = "terminate",
        close_at_end: bool = False,
        copy_obs: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(market, MarketArrays):
            raise TypeError(f"market must be MarketArrays, got {type(market).__name__}")
        self._init_episode(
            n_bars=len(market), first_sigma_bar=market.first_sigma_bar, window=window,
            initial_cash=initial_cash, costs=costs, fill=fill, reward_mode=reward_mode,
            risk_lambda=risk_lambda, dsr_eta=dsr_eta, start_bar=start_bar, end_bar=end_bar,
            max_steps=max_steps, random_start=random_start, min_episode_steps=min_episode_steps,
            min_trade_fraction=min_trade_fraction, risk_lookback=risk_lookback,
            end_of_data=end_of_data, close_at_end=close_at_end, copy_obs=copy_obs,
            history_bars=market.history_bars)
        self.market = market
        self.risk_fn = None if risk_fn is no_risk_limit else risk_fn

        # Per-bar scalars as Python lists: indexing them is several times faster than numpy.
        self._close = market.close.tolist()
        self._fill_price = (market.open if fill == "next_open" else market.close).tolist()
        self._volume = market.volume.tolist()  # the fill bar's own: only "did it trade at all"
        self._known_volume = decision_volume(market.volume, self.costs.volume_window).tolist()
        self._sigma = np.nan_to_num(market.sigma, nan=0.0).tolist()
        n_feat = market.n_features
        features, self._preds = observation_inputs(market.features, market.predictions, obs_clip)
        self._feat_flat = features.reshape(-1)
        self._n_feat = n_feat
        self._win_len = self.window * n_feat
        self._init_observation(observation_size(self.window, n_feat, market.n_predictions),
                               obs_clip)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._risk_columns = risk_columns(market.prediction_names)
        self.action_rule = ActionRule(action_mode, float(residual_scale), float(no_trade_band))
        self._signal_columns = signal_columns(market.prediction_names, self.action_rule)
        self._band = self.action_rule.no_trade_band
        self._position_entry = self._win_len + market.n_predictions
        self._reset_account(self.first_bar)

    # ------------------------------------------------------------------ gym API
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode has ended; call reset()")
        t = self._t
        requested = requested_target(action, rule=self.action_rule, predictions=self._preds[t],
                                     columns=self._signal_columns)

        close_t = self._close[t]
        equity = self._equity
        shares = self._shares
        cash = self._cash
        target = requested
        if self.risk_fn is not None:
            target = allowed_target(self.risk_fn, requested, self._risk_context(t))

        f = t + 1
        closing = self.close_at_end and f == self.last_bar
        if closing:
            target = 0.0
        elif self._band > 0.0:
            # The observed (float32) position, the one a served policy is told.
            target = banded_target(target, float(self._obs[self._position_entry]), self._band)
        price = self._fill_price[f]
        order = target * equity / close_t - shares
        traded = unfilled = commission = spread = impact = 0.0
        capped = False
        if abs(order) * close_t > self.min_trade_fraction * equity:
            known = self._known_volume[t]
            # Nothing fills on a bar without volume (a halt) or with no volume
            # known at t (and inf * 0 would be NaN); the closing fill is uncapped.
            if self._volume[f] > 0.0 and known > 0.0:
                cap = math.inf if closing else self._participation * known
            else:
                cap = 0.0
            traded = order
            if abs(order) > cap:
                traded = cap if order > 0.0 else -cap
                capped = True
                unfilled = order - traded
            if traded != 0.0:
                size = abs(traded)
                notional = size * price
                commission = notional * self._commission_rate
                spread = notional * self._half_spread_rate
                impact = notional * self._impact_coef * self._sigma[t] * math.sqrt(size / known)
                cash -= traded * price + commission + spread + impact
                new_shares = shares + traded
                if shares == 0.0 or (shares > 0.0) != (new_shares > 0.0):
                    self._entry_price = price  # opened or flipped
                elif abs(new_shares) > abs(shares):
                    self._entry_price = (self._entry_price * shares + price * traded) / new_shares
                shares = new_shares
                if shares == 0.0:
                    self._entry_price = 0.0

        new_equity = cash + shares * self._close[f]
        log_return, drawdown, risk_term, terminated, truncated = self._settle(
            f, cash, shares, new_equity)
        position = self._write_obs(f)
        info = {
            "bar": f,
            "fill_price": price,
            "traded_shares": traded,
            "order_shares": order,
            "capped": capped,
            "unfilled_shares": unfilled,
            "unfilled_notional": abs(unfilled) * price,
            "commission": commission,
            "spread_cost": spread,
            "impact_cost": impact,
            "cost": commission + spread + impact,
            "target": target,
            "requested_target": requested,
            "position": position,
            "shares": shares,
            "cash": cash,
            "equity": new_equity,
            "drawdown": drawdown,
            "log_return": log_return,
            "risk_term": risk_term,
        }
        obs = self._obs.copy() if self.copy_obs else self._obs
        return obs, log_return + risk_term, terminated, truncated, info

    # ------------------------------------------------------------------ internals
    def _reset_account(self, start: int) -> None:
        super()._reset_account(start)
        self._shares = 0.0  # signed, fractional
        self._entry_price = 0.0  # average entry price of the open position (0 when flat)

    def _reset_info(self, start: int) -> dict[str, Any]:
        return {"bar": start, "equity": self._equity, "position": 0.0}

    def _write_obs(self, t: int) -> float:
        """Fill the observation buffer for bar t; returns the position fraction."""
        start = (t + 1) * self._n_feat - self._win_len
        equity = self._equity
        if equity > 0.0:
            close = self._close[t]
            shares = self._shares
            position = shares * close / equity
            cash = self._cash / equity
            unrealised = shares * (close - self._entry_price) / equity if shares else 0.0
        else:  # only in the terminal observation of a ruined account
            position = cash = unrealised = 0.0
        write_observation(self._obs, self._feat_flat[start:start + self._win_len], self._preds[t],
                          position, cash, unrealised, self._drawdown, self._bound)
        return position

    def _risk_context(self, t: int) -> RiskContext:
        equity = self._equity
        return risk_context(
            t, equity, self._peak, self._drawdown, self._shares * self._close[t] / equity,
            return_window(self.market.log_returns, t, self.risk_lookback), self._sigma[t],
            self._preds[t], self._risk_columns, self._risk_state)

    # ------------------------------------------------------------------ read-only views
    @property
    def shares(self) -> float:
        """Shares held (signed, fractional)."""
        return self._shares
