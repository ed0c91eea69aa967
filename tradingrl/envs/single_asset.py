"""Single-asset trading environment: the agent sets a target position each bar.

Timing (the project's fill rule). At decision bar t the agent has seen bars <= t
only. Its action is a target position, a signed fraction of equity in [-1, 1]
(long/short, no leverage beyond 1). The order is sized in shares from what is
known at t, ``target * equity_t / close_t``, capped by the volume limit, filled
at bar t+1's open (``fill="next_open"``) or close (``"next_close"``) after
costs (see :mod:`tradingrl.envs.costs`; the impact's sigma is the past-only
``sigma[t]``, the volume cap and impact use bar t+1's volume, the volume the
fill trades into), and the account is marked to market at bar t+1's close.
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
through float32. Shares are fractional; cash earns nothing and shorts pay no
borrow fee.

Observation (float32, flat, length ``window * F + P + 4``)::

    [features of bars t-window+1 .. t, oldest first, each row F values]
    [prediction columns of bar t (P values)]
    [position, cash / equity, unrealised PnL / equity, drawdown]

position = shares * close_t / equity_t; unrealised PnL is against the average
entry price of the open position (excluding costs); drawdown = 1 - equity /
peak equity. Every entry is clipped to [-obs_clip, obs_clip] (the features once,
when the environment is built), which are the space's bounds.

Episode: from a start bar (fixed, or random with ``random_start``) until the
last bar of the span has been the fill bar (terminated by default, see
``end_of_data``), equity <= 0 (terminated), or ``max_steps`` steps (truncated).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np

from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.costs import ExecutionCosts
from tradingrl.envs.rewards import differential_sharpe, drawdown_increase_penalty
from tradingrl.envs.risk_hook import RiskContext, RiskFn, no_risk_limit

ACCOUNT_STATE_NAMES: tuple[str, ...] = ("position", "cash_fraction", "unrealised_pnl", "drawdown")
REWARD_MODES = ("none", "drawdown_penalty", "differential_sharpe")
_RUIN_FLOOR = 1e-12  # x initial cash: equity used in the log when an account is wiped out


class SingleAssetTradingEnv(gym.Env):
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
    end_of_data: whether reaching the span's end is "terminate" or "truncate".
    copy_obs: return a fresh observation array (True) or the environment's
        own buffer, overwritten by the next step (False; fine for SB3's VecEnvs,
        which copy it).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

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
        end_of_data: Literal["terminate", "truncate"] = "terminate",
        copy_obs: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(market, MarketArrays):
            raise TypeError(f"market must be MarketArrays, got {type(market).__name__}")
        if fill not in ("next_open", "next_close"):
            raise ValueError(f"fill must be 'next_open' or 'next_close', got {fill!r}")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if end_of_data not in ("terminate", "truncate"):
            raise ValueError(f"end_of_data must be 'terminate' or 'truncate', got {end_of_data!r}")
        if window < 1 or min_episode_steps < 1 or risk_lookback < 1:
            raise ValueError("window, min_episode_steps and risk_lookback must be >= 1")
        if not (initial_cash > 0 and math.isfinite(initial_cash)):
            raise ValueError(f"initial_cash must be positive, got {initial_cash}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
        if not 0.0 < dsr_eta < 1.0:
            raise ValueError(f"dsr_eta must be in (0, 1), got {dsr_eta}")
        if min_trade_fraction < 0 or risk_lambda < 0:
            raise ValueError("min_trade_fraction and risk_lambda must be >= 0")
        n = len(market)
        end_bar = n if end_bar is None else end_bar
        if not 0 <= start_bar < end_bar <= n:
            raise ValueError(f"need 0 <= start_bar < end_bar <= {n}, got {start_bar}, {end_bar}")

        self.market = market
        self.window = int(window)
        self.initial_cash = float(initial_cash)
        self.costs = ExecutionCosts() if costs is None else costs
        self.fill = fill
        self.reward_mode = reward_mode
        self.risk_lambda = float(risk_lambda)
        self.dsr_eta = float(dsr_eta)
        self.max_steps = max_steps
        self.random_start = random_start
        self.min_episode_steps = int(min_episode_steps)
        self.min_trade_fraction = float(min_trade_fraction)
        self.risk_fn = None if risk_fn is no_risk_limit else risk_fn
        self.risk_lookback = int(risk_lookback)
        self.end_of_data = end_of_data
        self.copy_obs = copy_obs

        # Decision bars t: first_bar <= t <= last_bar - 1; last_bar is the last fill bar.
        self.first_bar = max(start_bar, self.window - 1, market.first_sigma_bar)
        self.last_bar = end_bar - 1
        self.last_start_bar = self.last_bar - self.min_episode_steps
        if self.last_start_bar < self.first_bar:
            raise ValueError(
                f"span [{start_bar}, {end_bar}) leaves no episode of {min_episode_steps} step(s) "
                f"after the {window}-bar window and sigma warm-up (first decision bar "
                f"{self.first_bar})")

        # Per-bar scalars as Python lists: indexing them is several times faster than numpy.
        self._close = market.close.tolist()
        self._fill_price = (market.open if fill == "next_open" else market.close).tolist()
        self._volume = market.volume.tolist()
        self._sigma = np.nan_to_num(market.sigma, nan=0.0).tolist()
        n_feat, n_pred = market.n_features, market.n_predictions
        features = market.features
        predictions = market.predictions
        if obs_clip is not None:
            if not obs_clip > 0:
                raise ValueError(f"obs_clip must be > 0 or None, got {obs_clip}")
            features = np.clip(features, -obs_clip, obs_clip)
            predictions = np.clip(predictions, -obs_clip, obs_clip)
        self._feat_flat = np.ascontiguousarray(features, dtype=np.float32).reshape(-1)
        self._preds = np.ascontiguousarray(predictions, dtype=np.float32)
        self._n_feat = n_feat
        self._win_len = self.window * n_feat
        self._acct = self._win_len + n_pred  # index of the first account-state entry
        self.obs_size = self._acct + len(ACCOUNT_STATE_NAMES)
        self._obs = np.zeros(self.obs_size, dtype=np.float32)
        self._bound = math.inf if obs_clip is None else float(obs_clip)
        bound = np.float32(self._bound)
        self.observation_space = gym.spaces.Box(-bound, bound, shape=(self.obs_size,),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

        self._commission_rate = self.costs.commission_bps * 1e-4
        self._half_spread_rate = 0.5 * self.costs.spread_bps * 1e-4
        self._impact_coef = self.costs.impact_coef
        self._participation = self.costs.participation_limit
        names = market.prediction_names
        self._conf_col = names.index("confidence") if "confidence" in names else -1
        self._er_col = names.index("expected_return") if "expected_return" in names else -1
        self._risk_state: dict[str, Any] = {}
        self._done = True
        self._reset_account(self.first_bar)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. options: {"start_bar": int} forces the first decision bar."""
        super().reset(seed=seed)
        start = None if options is None else options.get("start_bar")
        if start is not None:
            start = int(start)
            if not self.first_bar <= start <= self.last_start_bar:
                raise ValueError(f"start_bar must be in [{self.first_bar}, "
                                 f"{self.last_start_bar}], got {start}")
        elif self.random_start:
            start = int(self.np_random.integers(self.first_bar, self.last_start_bar + 1))
        else:
            start = self.first_bar
        self._reset_account(start)
        self._risk_state.clear()
        self._write_obs(start)
        info = {"bar": start, "equity": self._equity, "position": 0.0}
        return (self._obs.copy() if self.copy_obs else self._obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode has ended; call reset()")
        try:
            requested = float(action[0])
        except (TypeError, IndexError):
            requested = float(action)
        if math.isnan(requested):
            raise ValueError("action is NaN")
        requested = max(-1.0, min(requested, 1.0))

        t = self._t
        close_t = self._close[t]
        equity = self._equity
        shares = self._shares
        cash = self._cash
        target = requested
        if self.risk_fn is not None:
            target = float(self.risk_fn(requested, self._risk_context(t)))
            if math.isnan(target):
                raise ValueError("risk_fn returned NaN")
            target = max(-1.0, min(target, 1.0))

        f = t + 1
        price = self._fill_price[f]
        order = target * equity / close_t - shares
        traded = commission = spread = impact = 0.0
        capped = False
        if abs(order) * close_t > self.min_trade_fraction * equity:
            volume = self._volume[f]
            # Nothing fills on a bar without volume (and inf * 0 would be NaN).
            cap = self._participation * volume if volume > 0.0 else 0.0
            traded = order
            if abs(order) > cap:
                traded = cap if order > 0.0 else -cap
                capped = True
            if traded != 0.0:
                size = abs(traded)
                notional = size * price
                commission = notional * self._commission_rate
                spread = notional * self._half_spread_rate
                impact = notional * self._impact_coef * self._sigma[t] * math.sqrt(size / volume)
                cash -= traded * price + commission + spread + impact
                new_shares = shares + traded
                if shares == 0.0 or (shares > 0.0) != (new_shares > 0.0):
                    self._entry_price = price  # opened or flipped
                elif abs(new_shares) > abs(shares):
                    self._entry_price = (self._entry_price * shares + price * traded) / new_shares
                shares = new_shares
                if shares == 0.0:
                    self._entry_price = 0.0

        close_f = self._close[f]
        new_equity = cash + shares * close_f
        ruined = new_equity <= 0.0
        log_return = math.log((self._ruin if ruined else new_equity) / equity)
        old_drawdown = self._drawdown
        self._peak = max(self._peak, new_equity)
        drawdown = 1.0 - new_equity / self._peak

        mode = self.reward_mode
        if mode == "none":
            risk_term = 0.0
        elif mode == "drawdown_penalty":
            risk_term = drawdown_increase_penalty(old_drawdown, drawdown, self.risk_lambda)
        else:
            d, self._dsr_a, self._dsr_b = differential_sharpe(
                log_return, self._dsr_a, self._dsr_b, self.dsr_eta)
            risk_term = self.risk_lambda * d

        self._t = f
        self._cash = cash
        self._shares = shares
        self._equity = new_equity
        self._drawdown = drawdown
        self._steps += 1
        at_end = f >= self.last_bar
        terminated = ruined or (at_end and self.end_of_data == "terminate")
        truncated = not terminated and (
            (at_end and self.end_of_data == "truncate")
            or (self.max_steps is not None and self._steps >= self.max_steps))
        self._done = terminated or truncated
        position = self._write_obs(f)
        info = {
            "bar": f,
            "fill_price": price,
            "traded_shares": traded,
            "order_shares": order,
            "capped": capped,
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
        self._t = start
        self._steps = 0
        self._cash = self.initial_cash
        self._shares = 0.0
        self._entry_price = 0.0
        self._equity = self.initial_cash
        self._peak = self.initial_cash
        self._drawdown = 0.0
        self._ruin = _RUIN_FLOOR * self.initial_cash
        self._dsr_a = 0.0  # EMA of returns (Moody & Saffell's A)
        self._dsr_b = 0.0  # EMA of squared returns (B)
        self._done = False

    def _write_obs(self, t: int) -> float:
        """Fill the observation buffer for bar t; returns the position fraction."""
        obs = self._obs
        start = (t + 1) * self._n_feat - self._win_len
        obs[:self._win_len] = self._feat_flat[start:start + self._win_len]
        k = self._acct
        obs[self._win_len:k] = self._preds[t]
        equity = self._equity
        bound = self._bound
        if equity > 0.0:
            close = self._close[t]
            shares = self._shares
            position = shares * close / equity
            cash = self._cash / equity
            unrealised = shares * (close - self._entry_price) / equity if shares else 0.0
        else:  # only in the terminal observation of a ruined account
            position = cash = unrealised = 0.0
        obs[k] = max(-bound, min(position, bound))
        obs[k + 1] = max(-bound, min(cash, bound))
        obs[k + 2] = max(-bound, min(unrealised, bound))
        obs[k + 3] = min(self._drawdown, bound)
        return position

    def _risk_context(self, t: int) -> RiskContext:
        returns = self.market.log_returns[max(0, t - self.risk_lookback + 1):t + 1]
        row = self._preds[t]
        equity = self._equity
        return {
            "bar": t,
            "equity": equity,
            "peak_equity": self._peak,
            "drawdown": self._drawdown,
            "position": self._shares * self._close[t] / equity,
            "returns": returns,
            "sigma": self._sigma[t],
            "confidence": float(row[self._conf_col]) if self._conf_col >= 0 else math.nan,
            "expected_return": float(row[self._er_col]) if self._er_col >= 0 else math.nan,
            "state": self._risk_state,
        }

    # ------------------------------------------------------------------ read-only views
    @property
    def bar(self) -> int:
        """Index of the current decision bar (the last bar observed)."""
        return self._t

    @property
    def equity(self) -> float:
        return self._equity

    @property
    def shares(self) -> float:
        return self._shares

    @property
    def cash(self) -> float:
        return self._cash
