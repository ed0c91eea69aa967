"""Portfolio trading environment: each bar the agent sets target weights over N symbols.

Conventions are those of :mod:`tradingrl.envs.single_asset` (timing, costs,
reward, episodes, observation layout, seeding), per symbol, with one cash
account. With N = 1 the two environments give the same equity path for the
same targets (weight w here, position w there).

Action -> requested weights (w_i: signed fraction of equity in symbol i; the
rest, ``1 - sum_i w_i``, is cash). Entries are first clipped to [-1, 1].

* long-only (``allow_short=False``, default): a in [-1, 1]^(N+1), the last
  entry for cash. ``raw = (a + 1) / 2`` in [0, 1]^(N+1), ``s = raw /
  sum(raw)`` (all cash when every entry is -1), ``w = s[:N]``. Every point of
  the simplex is reachable (``a = 2 s / max(s) - 1``; see
  :meth:`PortfolioTradingEnv.action_for_weights`), and the map is linear in
  each direction, so it is easy to read a policy's output.
* with shorting (``allow_short=True``): a in [-1, 1]^N, ``w = a``.

* residual (``action_mode="residual"``): a in [-1, 1]^N adjusts the
  supervised positions: ``w_i = clip(s_i + residual_scale * a_i, -1, 1) / N``
  with ``s_i = p_up - p_down`` of symbol i at the decision bar (long-only:
  ``max(w_i, 0)``), each symbol's sleeve of 1/N positioned as the
  single-asset residual rule positions it (:func:`residual_weights`), so an
  agent that acts 0 requests the portfolio ``supervised`` baseline's weights.

Then, in every mode, ``w *= L / sum|w|`` when ``sum|w| > L =
max_gross_leverage`` (default 1; long-only needs L <= 1, with shorting L > 1
borrows cash). So requested weights satisfy |w_i| <= 1, sum|w_i| <= L, and
w_i >= 0 when long-only.

Timing. At decision bar t the agent has seen bars <= t only. The (risk-checked)
target of symbol i is sized in shares from what is known at t,
``w_i * equity_t / close_t[i]``; the order (target minus held shares) is
capped at ``participation_limit`` of the symbol's volume known at t (the mean
volume of the ``costs.volume_window`` bars up to t,
:func:`tradingrl.envs.costs.decision_volume`; nothing fills on a fill bar
without volume), filled at bar t+1's open (``fill="next_open"``) or close
(``"next_close"``) after the costs of :mod:`tradingrl.envs.costs`
(commission, half spread, square-root impact with the past-only ``sigma[t]``
of the symbol and the same known volume), and the book is marked to market
at bar t+1's close. What the cap leaves unfilled is dropped and recorded
(``info["unfilled_shares"]``, ``info["unfilled_notional"]``, per symbol).
With ``close_at_end`` the step that fills at the span's last bar targets
all cash, uncapped, as in the single-asset environment. Buys and sells settle in one cash
account; cash earns nothing, shorts pay no borrow fee, shares are fractional.
A symbol whose |target - weight_t| is at most ``min_trade_fraction`` sends no
order and costs nothing. Because sizing uses close_t, a fill at a different
open can leave cash slightly negative (a small overdraft) or a weight slightly
off target; weights also drift with prices between decisions.

Reward, as in the single-asset environment::

    log_return = log(equity_{t+1} / equity_t)            (after all costs)
    reward     = log_return + risk_term

``risk_term``: 0 (``reward_mode="none"``), ``-risk_lambda * max(dd_{t+1} -
dd_t, 0)`` ("drawdown_penalty") or ``risk_lambda * D_t``, Moody & Saffell's
differential Sharpe ratio with rate ``dsr_eta`` ("differential_sharpe").
``info["log_return"]`` is the raw part: over an episode ``sum(log_return) ==
log(final_equity / initial_cash)``.

Observation (float32, flat, length ``N * window * F + N * P + N + 3``)::

    [symbol 0: features of bars t-window+1 .. t, oldest first, F per bar]
    ... [symbol N-1: the same]
    [symbol 0: prediction columns at t (P values)] ... [symbol N-1: the same]
    [weight_0 .. weight_{N-1}, cash / equity, unrealised PnL / equity, drawdown]

weight_i = shares_i * close_t[i] / equity_t; unrealised PnL is summed over
symbols against each position's average entry price (costs excluded);
drawdown = 1 - equity / peak equity. Every entry is clipped to
[-obs_clip, obs_clip], the space's bounds (features and predictions once, when
the environment is built). Only the markets' named feature and prediction
columns enter; :class:`MarketArrays` refuses label-like names.

Episode: from a start bar (fixed, or random with ``random_start``) until the
span's last bar has been the fill bar (terminated, or truncated with
``end_of_data="truncate"``), equity <= 0 (terminated), or ``max_steps`` steps
(truncated). The span, reward, account and episode rules are the shared ones of
:class:`tradingrl.envs.episode.TradingEpisode`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.costs import ExecutionCosts, decision_volume
from tradingrl.envs.decision import (
    ActionRule,
    observation_inputs,
    risk_columns,
    signal_columns,
    supervised_signal,
)
from tradingrl.envs.episode import TradingEpisode
from tradingrl.envs.panel import stack_markets
from tradingrl.envs.risk_hook import PortfolioRiskContext, PortfolioRiskFn

# The account entries after the N weights at the end of the observation.
PORTFOLIO_ACCOUNT_STATE_NAMES: tuple[str, ...] = ("cash_fraction", "unrealised_pnl", "drawdown")
_RISK_TOLERANCE = 1e-9  # round-off a risk_fn's weights may exceed the env's limits by


def portfolio_observation_size(n_symbols: int, window: int, n_features: int,
                               n_predictions: int) -> int:
    """Entries of a portfolio observation (the module docstring's layout)."""
    return (n_symbols * window * n_features + n_symbols * n_predictions + n_symbols
            + len(PORTFOLIO_ACCOUNT_STATE_NAMES))


def action_size(n_symbols: int, allow_short: bool, residual: bool = False) -> int:
    """Entries of a portfolio action: N with shorting or a residual action
    (one adjustment per symbol), N + 1 (the last for cash) for long-only
    target weights."""
    return n_symbols if allow_short or residual else n_symbols + 1


def residual_weights(action: Any, signal: np.ndarray, residual_scale: float,
                     allow_short: bool, max_gross_leverage: float) -> np.ndarray:
    """The requested weights (N,) float64 of a residual action: symbol i's
    sleeve of 1/N of equity positioned as the single-asset residual rule
    positions it, ``w_i = clip(signal_i + residual_scale * a_i, -1, 1) / N``
    (``a`` clipped to [-1, 1] first; long-only: ``max(w_i, 0)``), scaled down
    to ``max_gross_leverage`` when over it. ``signal``: (N,) the supervised
    positions ``p_up - p_down`` at the decision bar, so action 0 requests
    the portfolio ``supervised`` baseline's weights. ValueError on a wrong
    size or NaN."""
    n = len(signal)
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size != n:
        raise ValueError(f"action must have {n} entries, got {a.size}")
    if np.isnan(a).any():
        raise ValueError("action has NaN")
    w = np.clip(signal + residual_scale * np.clip(a, -1.0, 1.0), -1.0, 1.0) / n
    if not allow_short:
        w = np.maximum(w, 0.0)
    gross = float(np.abs(w).sum())
    if gross > max_gross_leverage:
        w *= max_gross_leverage / gross
    return w


def weights_from_action(action: Any, n_symbols: int, allow_short: bool,
                        max_gross_leverage: float) -> np.ndarray:
    """The requested weights (N,) float64 of an action (the module docstring's
    map); ValueError on a wrong size or NaN. The environment and the served
    policy (:class:`~tradingrl.registry.policy.TradingPolicy`) both call it."""
    n_actions = action_size(n_symbols, allow_short)
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (n_actions,):
        if a.size != n_actions:
            raise ValueError(f"action must have {n_actions} entries, got shape {a.shape}")
        a = a.reshape(n_actions)
    # NaN survives the clip and makes the sum NaN. Sums of the few entries
    # are taken in Python: numpy's reductions cost more on small arrays.
    a = np.minimum(np.maximum(a, -1.0), 1.0)
    if allow_short:
        w = a
        gross = sum(np.abs(w).tolist())
    else:
        a += 1.0  # raw = (a + 1) / 2; the 1/2 cancels in raw / sum(raw)
        total = sum(a.tolist())
        if math.isnan(total):
            raise ValueError("action has NaN")
        if total <= 0.0:
            return np.zeros(n_symbols)
        w = a[:n_symbols] / total
        if max_gross_leverage >= 1.0:
            return w
        gross = sum(w.tolist())
    if math.isnan(gross):
        raise ValueError("action has NaN")
    if gross > max_gross_leverage:
        w *= max_gross_leverage / gross
    return w


def check_reachable(w: np.ndarray, allow_short: bool, max_gross_leverage: float,
                    what: str) -> None:
    """ValueError unless ``w`` (N,) is finite and within the action's reach
    (beyond 1e-9 round-off): in [-1, 1] ([0, 1] long-only), gross <= L."""
    if not np.isfinite(w).all():
        raise ValueError(f"{what} are not finite: {w}")
    low = -1.0 if allow_short else 0.0
    if w.min() < low - _RISK_TOLERANCE or w.max() > 1.0 + _RISK_TOLERANCE:
        raise ValueError(f"{what} {w} outside [{low}, 1]")
    gross = np.abs(w).sum()
    if gross > max_gross_leverage * (1.0 + _RISK_TOLERANCE):
        raise ValueError(f"{what} {w} have gross {gross} > max_gross_leverage "
                         f"{max_gross_leverage}")


def allowed_weights(risk_fn: PortfolioRiskFn, requested: np.ndarray,
                    context: PortfolioRiskContext, allow_short: bool,
                    max_gross_leverage: float) -> np.ndarray:
    """The risk function's weights for the requested ones, checked against
    the limits (:func:`check_reachable`) and their round-off clipped."""
    n = len(requested)
    w = np.asarray(risk_fn(requested.copy(), context), dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"risk_fn must return {n} weights, got shape {w.shape}")
    check_reachable(w, allow_short, max_gross_leverage, "risk_fn weights")
    w = np.clip(w, -1.0 if allow_short else 0.0, 1.0)
    gross = np.abs(w).sum()
    if gross > max_gross_leverage:
        w *= max_gross_leverage / gross
    return w


def model_risk_inputs(predictions: np.ndarray, prediction_names: Sequence[str]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The trend model's confidence and expected return per symbol, float64,
    from the observation's float32 prediction block (``(..., N, P)``; NaN
    where the markets have no such column): what the risk context reads."""
    shape = predictions.shape[:-1]
    return tuple(predictions[..., k].astype(np.float64) if k >= 0 else np.full(shape, np.nan)
                 for k in risk_columns(prediction_names))


def portfolio_risk_context(bar: int, equity: float, peak_equity: float, drawdown: float,
                           weights: np.ndarray, returns: np.ndarray, sigma: np.ndarray,
                           confidence: np.ndarray, expected_return: np.ndarray,
                           symbols: tuple[str, ...], state: dict[str, Any]
                           ) -> PortfolioRiskContext:
    """The risk function's context at decision bar ``bar`` (fields and units:
    :class:`~tradingrl.envs.risk_hook.PortfolioRiskContext`); the environment
    and the served policy both build it here."""
    return {"bar": bar, "equity": equity, "peak_equity": peak_equity, "drawdown": drawdown,
            "weights": weights, "returns": returns, "sigma": sigma, "confidence": confidence,
            "expected_return": expected_return, "symbols": symbols, "state": state}


def write_portfolio_account(obs: np.ndarray, k: int, weights: np.ndarray, cash_fraction: float,
                            unrealised_pnl: float, drawdown: float, bound: float) -> None:
    """Write the account entries of a portfolio observation in place from
    index ``k`` (the first weight): the N weights, cash / equity, unrealised
    PnL / equity (each clipped to [-bound, bound]) and the drawdown (at most
    bound)."""
    n = len(weights)
    # Clipping is rare; checking in Python is cheaper than a numpy clip.
    listed = weights.tolist()
    if max(listed) > bound or min(listed) < -bound:
        np.minimum(np.maximum(weights, -bound), bound, out=obs[k:k + n])
    else:
        obs[k:k + n] = weights
    obs[k + n] = max(-bound, min(cash_fraction, bound))
    obs[k + n + 1] = max(-bound, min(unrealised_pnl, bound))
    obs[k + n + 2] = min(drawdown, bound)


class PortfolioTradingEnv(TradingEpisode):
    """Trade N symbols with a target-weights action; see the module docstring.

    markets: the symbols' bars, all with the same timestamps (ValueError naming
        the first mismatch; :func:`tradingrl.envs.panel.align_markets` keeps the
        common bars) and the same ordered feature and prediction columns.
    allow_short: False (default): long-only weights plus cash, action of length
        N + 1; True: signed weights, action of length N.
    max_gross_leverage: largest sum_i |w_i| of a target, fraction of equity
        (> 0; <= 1 when long-only).
    Every other argument is that of :class:`SingleAssetTradingEnv`, per symbol:
    window (bars of features per symbol), initial_cash, costs, fill,
    reward_mode / risk_lambda / dsr_eta, start_bar / end_bar (span
    [start_bar, end_bar); a decision bar t has t + 1 < end_bar), max_steps,
    random_start / min_episode_steps (``reset(options={"start_bar": t})``
    forces a start), min_trade_fraction (per symbol, of equity), obs_clip,
    risk_lookback (bars of returns in the risk context), end_of_data,
    close_at_end, copy_obs.
    risk_fn: ``(requested_weights (N,), PortfolioRiskContext) -> weights (N,)``,
        called once per step at bar t; None = no risk function. Its output must
        keep the environment's limits (ValueError otherwise, beyond 1e-9
        round-off): finite, in [-1, 1] (in [0, 1] long-only), gross <= L.
    """

    def __init__(
        self,
        markets: Sequence[MarketArrays],
        *,
        allow_short: bool = False,
        max_gross_leverage: float = 1.0,
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
        risk_fn: PortfolioRiskFn | None = None,
        risk_lookback: int = 20,
        action_mode: Literal["target", "residual"] = "target",
        residual_scale: float = 1.0,
        no_trade_band: float = 0.0,
        end_of_data: Literal["terminate", "truncate"] = "terminate",
        close_at_end: bool = False,
        copy_obs: bool = True,
    ) -> None:
        if no_trade_band != 0.0:
            raise ValueError("the portfolio env has no no-trade band: set "
                             "train_agent.env.no_trade_band to 0 for env_kind portfolio "
                             f"(got {no_trade_band})")
        self.action_rule = ActionRule(action_mode, residual_scale, no_trade_band)
        super().__init__()
        if not isinstance(markets, MarketArrays):  # stack_markets refuses a single one
            markets = tuple(markets)
        panel = stack_markets(markets)
        n_bars = panel.n_bars
        self._init_episode(
            n_bars=n_bars, first_sigma_bar=panel.first_sigma_bar, window=window,
            initial_cash=initial_cash, costs=costs, fill=fill, reward_mode=reward_mode,
            risk_lambda=risk_lambda, dsr_eta=dsr_eta, start_bar=start_bar, end_bar=end_bar,
            max_steps=max_steps, random_start=random_start, min_episode_steps=min_episode_steps,
            min_trade_fraction=min_trade_fraction, risk_lookback=risk_lookback,
            end_of_data=end_of_data, close_at_end=close_at_end, copy_obs=copy_obs,
            # The markets share their timestamps: the longest history ends the others' too.
            history_bars=max(m.history_bars for m in markets))
        if not (max_gross_leverage > 0 and math.isfinite(max_gross_leverage)):
            raise ValueError(f"max_gross_leverage must be finite and > 0, got {max_gross_leverage}")
        if not allow_short and max_gross_leverage > 1.0:
            raise ValueError(f"max_gross_leverage {max_gross_leverage} > 1 needs allow_short=True "
                             "(long-only weights plus cash sum to 1)")
        if risk_fn is not None and not callable(risk_fn):
            raise TypeError(f"risk_fn must be callable, got {type(risk_fn).__name__}")
        self.panel = panel
        self.markets = tuple(markets)
        self.symbols = panel.symbols
        self.n_symbols = n = panel.n_symbols
        self.allow_short = bool(allow_short)
        self.max_gross_leverage = float(max_gross_leverage)
        self.risk_fn = risk_fn

        # (T, N) float64 arrays read in step(); rows are contiguous (N,) views.
        self._close = panel.close
        self._fill_price = panel.open if fill == "next_open" else panel.close
        volume = panel.volume
        # (T, N): the volume known at each decision bar t, per symbol.
        known = np.column_stack([decision_volume(volume[:, i], self.costs.volume_window)
                                 for i in range(panel.n_symbols)])
        # Row t holds the cap of the fill at t + 1: nothing fills on a fill bar
        # without volume or with no volume known at t (and inf * 0 would be NaN);
        # the impact's q / V then divides 0 shares by 1.
        fills = np.zeros_like(volume, dtype=bool)
        fills[:-1] = (volume[1:] > 0.0) & (known[:-1] > 0.0)
        self._cap = np.where(fills, self._participation * known, 0.0)
        self._open_cap = np.where(fills, np.inf, 0.0)  # the closing fill: uncapped
        self._impact_volume = np.where(fills, known, 1.0)
        self._sigma = np.nan_to_num(panel.sigma, nan=0.0)
        self._log_returns = panel.log_returns

        n_feat, n_pred = len(panel.feature_names), len(panel.prediction_names)
        features, self._preds = observation_inputs(panel.features, panel.predictions, obs_clip)
        # (N, T * F): symbol i's window at t is one contiguous slice of row i.
        self._feat = features.reshape(n, -1)
        self._preds_flat = self._preds.reshape(n_bars, n * n_pred)  # (T, N * P)
        self._n_feat = n_feat
        self._win_len = self.window * n_feat
        self._pred_start = n * self._win_len
        self._acct = self._pred_start + n * n_pred  # index of weight_0
        self._init_observation(portfolio_observation_size(n, self.window, n_feat, n_pred),
                               obs_clip)
        self._obs_windows = self._obs[:self._pred_start].reshape(n, self._win_len)
        self.n_actions = action_size(n, self.allow_short, self.action_rule.residual)
        self._signal = None  # (T, N) supervised positions p_up - p_down, residual mode only
        if self.action_rule.residual:
            up, down = signal_columns(panel.prediction_names, self.action_rule)
            self._signal = supervised_signal(self._preds[:, :, up], self._preds[:, :, down])
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.n_actions,), dtype=np.float32)

        self._confidence, self._expected_return = model_risk_inputs(self._preds,
                                                                    panel.prediction_names)
        self._zeros = np.zeros(n)
        self._reset_account(self.first_bar)

    # ------------------------------------------------------------------ actions
    def weights_from_action(self, action: Any) -> np.ndarray:
        """The requested weights (N,) float64 of an action at the current
        decision bar (the module docstring's map, or :func:`residual_weights`)."""
        if self._signal is not None:
            return residual_weights(action, self._signal[self._t],
                                    self.action_rule.residual_scale, self.allow_short,
                                    self.max_gross_leverage)
        return weights_from_action(action, self.n_symbols, self.allow_short,
                                   self.max_gross_leverage)

    def action_for_weights(self, weights: Any) -> np.ndarray:
        """A float32 action whose requested weights are ``weights`` (N,), e.g. the
        weights of the last observation to hold the book. ValueError when the
        weights are outside the action's reach (beyond 1e-9 round-off): negative
        when long-only, |w_i| > 1, or sum |w_i| > max_gross_leverage."""
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (self.n_symbols,):
            raise ValueError(f"need {self.n_symbols} weights, got shape {w.shape}")
        self._check_reachable(w, "weights")
        if self._signal is not None:  # the adjustment that requests w at this bar
            a = (w * self.n_symbols - self._signal[self._t]) / self.action_rule.residual_scale
            return np.clip(a, -1.0, 1.0).astype(np.float32)
        if self.allow_short:
            return np.clip(w, -1.0, 1.0).astype(np.float32)
        w = np.maximum(w, 0.0)
        simplex = np.append(w, max(1.0 - w.sum(), 0.0))
        return (2.0 * simplex / simplex.max() - 1.0).astype(np.float32)

    def _check_reachable(self, w: np.ndarray, what: str) -> None:
        check_reachable(w, self.allow_short, self.max_gross_leverage, what)

    def _allowed_weights(self, requested: np.ndarray, t: int) -> np.ndarray:
        """The risk function's weights for the requested ones, checked against
        the environment's limits (round-off clipped)."""
        return allowed_weights(self.risk_fn, requested, self._risk_context(t), self.allow_short,
                               self.max_gross_leverage)

    # ------------------------------------------------------------------ gym API
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode has ended; call reset()")
        requested = self.weights_from_action(action)
        t = self._t
        target = (requested.copy() if self.risk_fn is None
                  else self._allowed_weights(requested, t))

        f = t + 1
        closing = self.close_at_end and f == self.last_bar
        if closing:
            target = np.zeros(self.n_symbols)
        close_t = self._close[t]
        equity = self._equity
        shares = self._shares
        price = self._fill_price[f]
        order = target * equity / close_t - shares
        abs_order = np.abs(order)
        active = abs_order * close_t > self.min_trade_fraction * equity
        # Branch-free over symbols: an inactive symbol trades 0 shares at 0 cost.
        cap = self._open_cap[t] if closing else self._cap[t]
        traded = np.minimum(np.maximum(order, -cap), cap)
        traded *= active
        capped = active & (abs_order > cap)
        unfilled = (order - traded) * capped
        size = np.abs(traded)
        notional = size * price
        notional_total = sum(notional.tolist())
        commission_total = notional_total * self._commission_rate
        spread_total = notional_total * self._half_spread_rate
        impact_total = self._impact_coef * float(
            (notional * self._sigma[t]) @ np.sqrt(size / self._impact_volume[t]))
        cash = self._cash - (float(traded @ price) + commission_total + spread_total
                             + impact_total)
        new_shares = shares + traded
        self._update_entry_prices(shares, traded, new_shares, price)
        shares = new_shares

        new_equity = cash + float(shares @ self._close[f])
        log_return, drawdown, risk_term, terminated, truncated = self._settle(
            f, cash, shares, new_equity)
        weights = self._write_obs(f)
        info = {
            "bar": f,
            "fill_price": price,  # a read-only view of the market's prices
            "order_shares": order,
            "traded_shares": traded,
            "capped": capped,
            "unfilled_shares": unfilled,
            "unfilled_notional": np.abs(unfilled) * price,
            "commission": commission_total,
            "spread_cost": spread_total,
            "impact_cost": impact_total,
            "cost": commission_total + spread_total + impact_total,
            "target_weights": target,
            "requested_weights": requested,
            "weights": weights,
            "shares": shares.copy(),
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
        self._shares = np.zeros(self.n_symbols)
        self._entry_price = np.zeros(self.n_symbols)

    def _reset_info(self, start: int) -> dict[str, Any]:
        return {"bar": start, "equity": self._equity, "cash": self._cash,
                "weights": np.zeros(self.n_symbols), "shares": np.zeros(self.n_symbols)}

    def _update_entry_prices(self, shares: np.ndarray, traded: np.ndarray,
                             new_shares: np.ndarray, price: np.ndarray) -> None:
        """Average entry price per symbol, in place: the fill price when a
        position opens or flips, the share-weighted mean when it grows,
        unchanged when it shrinks, 0 when flat (as in the single-asset env)."""
        entry = self._entry_price
        grown = shares * traded > 0.0  # a trade on the position's side
        mean = entry * shares
        mean += price * traded
        np.divide(mean, new_shares, out=entry, where=grown)
        # From flat or flipped (a flat symbol that did not trade is zeroed below).
        np.copyto(entry, price, where=shares * new_shares <= 0.0)
        entry *= new_shares != 0.0

    def _write_obs(self, t: int) -> np.ndarray:
        """Fill the observation buffer for bar t; returns the weights (N,) float64."""
        start = (t + 1) * self._n_feat - self._win_len
        self._obs_windows[...] = self._feat[:, start:start + self._win_len]
        obs = self._obs
        k = self._acct
        obs[self._pred_start:k] = self._preds_flat[t]
        equity = self._equity
        bound = self._bound
        if equity > 0.0:
            close = self._close[t]
            shares = self._shares
            weights = shares * close
            unrealised = (sum(weights.tolist()) - float(shares @ self._entry_price)) / equity
            weights /= equity
            cash = self._cash / equity
        else:  # only in the terminal observation of a ruined account
            weights = self._zeros.copy()
            cash = unrealised = 0.0
        write_portfolio_account(obs, k, weights, cash, unrealised, self._drawdown, bound)
        return weights

    def _risk_context(self, t: int) -> PortfolioRiskContext:
        equity = self._equity
        return portfolio_risk_context(
            t, equity, self._peak, self._drawdown, self._shares * self._close[t] / equity,
            self._log_returns[max(0, t - self.risk_lookback + 1):t + 1], self.panel.sigma[t],
            self._confidence[t].copy(), self._expected_return[t].copy(), self.symbols,
            self._risk_state)

    # ------------------------------------------------------------------ read-only views
    @property
    def observation_names(self) -> list[str]:
        """A name per observation entry, e.g. ``SYN000:ret_1[t-19]``, ``SYN001:p_up``,
        ``weight:SYN000``, ``cash_fraction``."""
        panel = self.panel
        names = [f"{s}:{name}[t-{lag}]" if lag else f"{s}:{name}[t]"
                 for s in self.symbols
                 for lag in range(self.window - 1, -1, -1)
                 for name in panel.feature_names]
        names += [f"{s}:{p}" for s in self.symbols for p in panel.prediction_names]
        names += [f"weight:{s}" for s in self.symbols]
        return names + list(PORTFOLIO_ACCOUNT_STATE_NAMES)

    @property
    def shares(self) -> np.ndarray:
        """Shares held per symbol (N,), signed and fractional; a copy."""
        return self._shares.copy()

    @property
    def weights(self) -> np.ndarray:
        """Current weights (N,) at the close of the current bar."""
        return self._shares * self._close[self._t] / self._equity
