"""What the trading environments share: settings, span, account and episode rules.

:class:`TradingEpisode` is the base of
:class:`~tradingrl.envs.single_asset.SingleAssetTradingEnv` and
:class:`~tradingrl.envs.portfolio.PortfolioTradingEnv`. It holds what does not
depend on how many symbols are traded; each environment keeps its own order
sizing, fills, costs per symbol, observation layout and info keys.

Span. Bars are indexed 0 .. n_bars - 1; an environment trades the span
[start_bar, end_bar). A decision bar t has seen bars <= t only and fills at
bar t + 1, so decision bars run from ``first_bar`` (the latest of start_bar,
the end of the first observation window, ``window - 1``, and the first bar
with a past-only sigma) to ``last_bar - 1``, where ``last_bar = end_bar - 1``
is the last fill bar. An episode starts at a bar in [first_bar,
last_start_bar], ``last_start_bar = last_bar - min_episode_steps``: the
first decision bar, a random one (``random_start``) or
``reset(options={"start_bar": t})``.

Account, per step, once the environment has marked its book to market at the
fill bar's close (equity in quote currency)::

    log_return = log(equity_{t+1} / equity_t)   (a ruined equity_{t+1} <= 0 counts as
                                                 RUIN_FLOOR * initial_cash)
    peak       = max(peak, equity_{t+1});  drawdown = 1 - equity_{t+1} / peak
    reward     = log_return + risk_term

``risk_term`` is 0 (``reward_mode="none"``), ``-risk_lambda * max(dd_{t+1} -
dd_t, 0)`` ("drawdown_penalty") or ``risk_lambda * D_t``, Moody & Saffell's
differential Sharpe ratio with adaptation rate ``dsr_eta`` per step
("differential_sharpe"; see :mod:`tradingrl.envs.rewards`).

Episode end: terminated when equity <= 0 or, with ``end_of_data="terminate"``
(default), when the fill bar is ``last_bar``; truncated (when not terminated)
at ``last_bar`` with ``end_of_data="truncate"`` or after ``max_steps`` steps.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np

from tradingrl.envs.costs import ExecutionCosts
from tradingrl.envs.decision import observation_bound
from tradingrl.envs.rewards import differential_sharpe, drawdown_increase_penalty

REWARD_MODES = ("none", "drawdown_penalty", "differential_sharpe")
# x initial cash: the equity a wiped-out account (equity <= 0) counts as in the
# step's log return, so the log stays finite. The backtesters use it too.
RUIN_FLOOR = 1e-12


class TradingEpisode(gym.Env, abc.ABC):
    """Base of the trading environments: span, account and episode rules (module docstring).

    A subclass's ``__init__`` calls :meth:`_init_episode` (settings and span),
    builds its arrays, calls :meth:`_init_observation` and ends with
    ``self._reset_account(self.first_bar)``. It implements ``step()``, which
    hands the marked-to-market book to :meth:`_settle`, and the hooks
    :meth:`_write_obs` and :meth:`_reset_info`; it extends
    :meth:`_reset_account` with its positions (``_shares``, ``_entry_price``).

    Account state (float, quote currency unless said): ``_t`` decision bar,
    ``_steps`` steps taken, ``_cash``, ``_equity``, ``_peak`` (highest equity at
    a close this episode), ``_drawdown`` (fraction), ``_dsr_a`` / ``_dsr_b``
    (the differential Sharpe ratio's moment estimates), ``_done``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def _init_episode(
        self,
        *,
        n_bars: int,
        first_sigma_bar: int,
        window: int,
        initial_cash: float,
        costs: ExecutionCosts | None,
        fill: Literal["next_open", "next_close"],
        reward_mode: Literal["none", "drawdown_penalty", "differential_sharpe"],
        risk_lambda: float,
        dsr_eta: float,
        start_bar: int,
        end_bar: int | None,
        max_steps: int | None,
        random_start: bool,
        min_episode_steps: int,
        min_trade_fraction: float,
        risk_lookback: int,
        end_of_data: Literal["terminate", "truncate"],
        copy_obs: bool,
        close_at_end: bool = False,
        history_bars: int = 0,
    ) -> None:
        """Check and store the shared settings and fix the span (ValueError on bad
        input). n_bars: bars in the market data; first_sigma_bar: the first bar
        whose past-only sigma is defined; history_bars: leading bars of the
        market that are history only (:attr:`MarketArrays.history_bars`: the
        first decision is at bar ``history_bars - 1`` at the earliest, so the
        first fill is at the span's first bar). The other arguments are the
        environments' own, documented there."""
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
        end_bar = n_bars if end_bar is None else end_bar
        if not 0 <= start_bar < end_bar <= n_bars:
            raise ValueError(f"need 0 <= start_bar < end_bar <= {n_bars}, got {start_bar}, "
                             f"{end_bar}")

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
        self.risk_lookback = int(risk_lookback)
        self.end_of_data = end_of_data
        self.copy_obs = copy_obs
        self.close_at_end = bool(close_at_end)

        # Decision bars t: first_bar <= t <= last_bar - 1; last_bar is the last fill bar.
        self.first_bar = max(start_bar, self.window - 1, first_sigma_bar, history_bars - 1)
        self.last_bar = end_bar - 1
        self.last_start_bar = self.last_bar - self.min_episode_steps
        if self.last_start_bar < self.first_bar:
            raise ValueError(
                f"span [{start_bar}, {end_bar}) leaves no episode of {min_episode_steps} step(s) "
                f"after the {window}-bar window and sigma warm-up (first decision bar "
                f"{self.first_bar})")

        # Cost rates per unit of traded notional (see tradingrl.envs.costs).
        self._commission_rate = self.costs.commission_bps * 1e-4
        self._half_spread_rate = 0.5 * self.costs.spread_bps * 1e-4
        self._impact_coef = self.costs.impact_coef
        self._participation = self.costs.participation_limit
        self._risk_state: dict[str, Any] = {}
        self._done = True

    def _init_observation(self, obs_size: int, obs_clip: float | None) -> None:
        """The flat float32 observation buffer ``_obs`` of ``obs_size`` entries and
        its space, bounded by obs_clip (None: unbounded); ``_bound`` is the bound
        as a float for clipping the account entries."""
        self.obs_size = obs_size
        self._obs = np.zeros(obs_size, dtype=np.float32)
        self._bound = observation_bound(obs_clip)
        bound = np.float32(self._bound)
        self.observation_space = gym.spaces.Box(-bound, bound, shape=(obs_size,),
                                                dtype=np.float32)

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
        return (self._obs.copy() if self.copy_obs else self._obs), self._reset_info(start)

    # ------------------------------------------------------------------ internals
    def _reset_account(self, start: int) -> None:
        """All cash, no drawdown, decision bar ``start``; subclasses add positions."""
        self._t = start
        self._steps = 0
        self._cash = self.initial_cash
        self._equity = self.initial_cash
        self._peak = self.initial_cash
        self._drawdown = 0.0
        self._ruin = RUIN_FLOOR * self.initial_cash
        self._dsr_a = 0.0  # EMA of returns (Moody & Saffell's A)
        self._dsr_b = 0.0  # EMA of squared returns (B)
        self._done = False

    def _settle(self, f: int, cash: float, shares: Any,
                new_equity: float) -> tuple[float, float, float, bool, bool]:
        """Close the step from decision bar ``_t`` to fill bar ``f``: the book
        (cash, shares) is worth ``new_equity`` at f's close. Updates peak,
        drawdown, the differential Sharpe state and the account (now at f),
        counts the step and applies the episode-end rules. Returns
        ``(log_return, drawdown, risk_term, terminated, truncated)``."""
        ruined = new_equity <= 0.0
        log_return = math.log((self._ruin if ruined else new_equity) / self._equity)
        old_drawdown = self._drawdown
        peak = self._peak
        if new_equity > peak:  # max(peak, new_equity) without the builtin's call
            self._peak = peak = new_equity
        drawdown = 1.0 - new_equity / peak

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
        return log_return, drawdown, risk_term, terminated, truncated

    @abc.abstractmethod
    def _write_obs(self, t: int) -> Any:
        """Fill ``_obs`` for decision bar t from the account state."""

    @abc.abstractmethod
    def _reset_info(self, start: int) -> dict[str, Any]:
        """The info dict ``reset()`` returns for an episode starting at bar ``start``."""

    # ------------------------------------------------------------------ read-only views
    @property
    def bar(self) -> int:
        """Index of the current decision bar (the last bar observed)."""
        return self._t

    @property
    def equity(self) -> float:
        """Equity at the close of the current bar, quote currency."""
        return self._equity

    @property
    def cash(self) -> float:
        """Cash in the account, quote currency."""
        return self._cash
