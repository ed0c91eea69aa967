"""Backtest of a target-position series with the single-asset environment's accounting.

``targets[k]`` is the target position decided at bar ``t = start_bar + k``: a
signed fraction of equity, clipped to [-1, 1] as the environment clips its
action, known at the close of t. It is executed exactly as
:meth:`tradingrl.envs.SingleAssetTradingEnv.step` executes an action:

* the order is ``target * equity_t / close_t - shares`` shares, sized from what
  is known at t; no order when ``|order| * close_t <= min_trade_fraction * equity_t``;
* it fills at bar t+1's open (``fill="next_open"``) or close (``"next_close"``),
  at most ``participation_limit * V[t]`` shares, ``V[t]`` the volume known at
  t (:func:`tradingrl.envs.costs.decision_volume`: the mean volume of the
  ``costs.volume_window`` bars up to and including t); nothing fills on a
  fill bar without volume. The rest is dropped and recorded
  (``unfilled_shares``; ``n_capped`` and ``unfilled_fraction`` sum it up);
* it pays commission + half spread + square-root impact with the past-only
  ``sigma[t]`` and ``V[t]`` (:mod:`tradingrl.envs.costs`), from cash;
* the account is marked at bar t+1's close: ``equity_{t+1} = cash + shares *
  close_{t+1}``, ``log_return = log(equity_{t+1} / equity_t)``.

With ``close_at_end`` the last step targets flat whatever its target, and
that fill is not cut by the cap: the run ends flat, having paid its exit
(the environment's ``close_at_end``).

Ruin: when ``equity_{t+1} <= 0`` the run ends at that step, as the
environment's episode does. The result then holds the steps up to and including
the ruinous one (``ruined`` is True): its equity is the real (<= 0) mark, its
log return ``log(RUIN_FLOOR * initial_cash / equity_t)`` (the environment's
floor, :data:`tradingrl.envs.episode.RUIN_FLOOR` = 1e-12), its position 0. No
later step exists.

Two paths give the same numbers. Without a ``risk_fn`` a numba kernel runs the
path-dependent loop, every float operation in the environment's order, so its
results equal the environment's bit for bit (about 30-50 ns a step on the
project machine; ``benchmarks/bench_backtest.py``). With one, the risk layer
being stateful Python, the targets are replayed through
:class:`SingleAssetTradingEnv` itself, so the result equals the environment's by
construction, at Python speed: ~13-20 us a step with a no-op risk function, plus
the risk function's own time (``risk_layer_hook`` adds tens of us).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numba
import numpy as np

from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.costs import ExecutionCosts, decision_volume
from tradingrl.envs.episode import RUIN_FLOOR
from tradingrl.envs.risk_hook import RiskFn, no_risk_limit
from tradingrl.envs.single_asset import SingleAssetTradingEnv

FILL_MODES = ("next_open", "next_close")

# Per-step float64 outputs of the kernel, in the order of its ``out`` rows.
_KERNEL_FIELDS = ("targets", "traded_shares", "commission", "spread_cost", "impact_cost",
                  "equity", "log_returns", "unfilled_shares")


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Per-step record of a backtest; step k was decided at bar ``start_bar + k``
    and filled at bar ``start_bar + k + 1``.

    All per-step arrays have length ``n_steps`` (``len(targets)`` unless the
    account was ruined), are read-only, and are float64 unless noted.

    start_bar: the first decision bar (index into the market arrays).
    targets: the target position the order was sized for (after clipping to
        [-1, 1] and the risk function), fraction of equity.
    traded_shares: signed shares filled (0 when no order or nothing filled).
    fill_price: the price of the fill bar a fill uses (open or close), quote
        currency, also on steps without a trade (a view of the market's array).
    close: the close of the fill bar, at which the account is marked (a view).
    commission / spread_cost / impact_cost: the step's costs, quote currency.
    capped: bool, whether the volume cap cut the order (or nothing could fill).
    unfilled_shares: signed shares of the order the cap left unfilled
        (dropped; 0 when the order filled whole or none was sent).
    equity: equity at the close of the fill bar, quote currency.
    log_returns: log(equity after / equity before) (the ruin floor on a ruinous step).
    initial_cash: equity before the first step.
    ruined: whether the run ended because equity fell to <= 0.

    Derived on first access (cached), with the environment's own expressions
    and summation order, so they equal its info values: ``bars``, ``costs``,
    ``shares``, ``cash``, ``positions``; and ``turnover``, ``equity_before``,
    ``unfilled_notional``, ``n_capped``, ``unfilled_fraction``.
    """

    start_bar: int
    targets: np.ndarray
    traded_shares: np.ndarray
    fill_price: np.ndarray
    close: np.ndarray
    commission: np.ndarray
    spread_cost: np.ndarray
    impact_cost: np.ndarray
    capped: np.ndarray
    equity: np.ndarray
    log_returns: np.ndarray
    unfilled_shares: np.ndarray
    initial_cash: float
    ruined: bool

    @property
    def n_steps(self) -> int:
        return int(self.equity.shape[0])

    @cached_property
    def bars(self) -> np.ndarray:
        """int64, the fill bar t+1 of each step (index into the market arrays)."""
        return _read_only(np.arange(self.start_bar + 1, self.start_bar + 1 + self.n_steps))

    @property
    def decision_bars(self) -> np.ndarray:
        """int64, the bar t at which each step's target was decided (``bars - 1``)."""
        return self.bars - 1

    @cached_property
    def costs(self) -> np.ndarray:
        """Total cost of each step, commission + spread + impact, quote currency."""
        return _read_only(self.commission + self.spread_cost + self.impact_cost)

    @cached_property
    def shares(self) -> np.ndarray:
        """Shares held after each step's fill (the running sum of traded shares)."""
        return _read_only(np.cumsum(self.traded_shares))

    @cached_property
    def cash(self) -> np.ndarray:
        """Cash after each step's fill, quote currency: the initial cash less each
        fill's ``traded * price + costs``, subtracted in step order."""
        paid = self.traded_shares * self.fill_price + self.commission + self.spread_cost \
            + self.impact_cost
        return _read_only(np.subtract.accumulate(np.concatenate([[self.initial_cash], paid]))[1:])

    @cached_property
    def positions(self) -> np.ndarray:
        """Executed position at the close of the fill bar, ``shares * close / equity``
        (0 where equity <= 0): the environment's info["position"]."""
        equity = self.equity
        with np.errstate(divide="ignore", invalid="ignore"):
            position = self.shares * self.close / equity
        return _read_only(np.where(equity > 0.0, position, 0.0))

    @property
    def equity_before(self) -> np.ndarray:
        """Equity at the close of each decision bar t (the sizing equity)."""
        return np.concatenate([[self.initial_cash], self.equity[:-1]])

    @property
    def n_trades(self) -> int:
        """Steps on which shares were actually filled."""
        return int(np.count_nonzero(self.traded_shares))

    @property
    def turnover(self) -> np.ndarray:
        """Per step ``|traded_shares| * fill_price / equity_before`` (fraction of equity)."""
        return np.abs(self.traded_shares) * self.fill_price / self.equity_before

    @property
    def unfilled_notional(self) -> np.ndarray:
        """Per step ``|unfilled_shares| * fill_price``, quote currency: the
        env's info["unfilled_notional"]."""
        return np.abs(self.unfilled_shares) * self.fill_price

    @property
    def n_capped(self) -> int:
        """Steps on which the volume cap cut the order."""
        return int(np.count_nonzero(self.capped))

    @property
    def unfilled_fraction(self) -> float:
        """Unfilled share of the requested notional, ``sum(unfilled notional) /
        sum(filled + unfilled notional)`` (NaN when no order was sent)."""
        unfilled = float(self.unfilled_notional.sum())
        requested = float((np.abs(self.traded_shares) * self.fill_price).sum()) + unfilled
        return unfilled / requested if requested > 0.0 else math.nan

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])

    @property
    def total_costs(self) -> float:
        """Sum of all costs paid, quote currency."""
        return float(self.costs.sum())


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@numba.njit(cache=True)
def _backtest_kernel(close, fill_px, volume, known_volume, sigma, targets, start_bar,
                     initial_cash, commission_rate, half_spread_rate, impact_coef, participation,
                     min_trade_fraction, ruin_equity, close_last, out, capped_out):
    """Run the steps; ``out`` is (8, n) float64 in ``_KERNEL_FIELDS`` order.

    ``volume``: the bars' own volume (only "did the fill bar trade");
    ``known_volume``: the volume known at each decision bar, for the cap and
    the impact; ``close_last``: the last step targets flat, uncapped.
    Every float operation is written in the environment's order so that the two
    agree to the last bit. Returns the number of steps run (fewer than n on ruin).
    """
    n = targets.shape[0]
    equity = initial_cash
    cash = initial_cash
    shares = 0.0
    for k in range(n):
        t = start_bar + k
        f = t + 1
        closing = close_last and k == n - 1
        target = 0.0 if closing else max(-1.0, min(targets[k], 1.0))
        close_t = close[t]
        price = fill_px[f]
        order = target * equity / close_t - shares
        traded = 0.0
        unfilled = 0.0
        commission = 0.0
        spread = 0.0
        impact = 0.0
        capped = False
        if abs(order) * close_t > min_trade_fraction * equity:
            known = known_volume[t]
            if volume[f] > 0.0 and known > 0.0:
                cap = math.inf if closing else participation * known
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
                commission = notional * commission_rate
                spread = notional * half_spread_rate
                s = sigma[t]
                if math.isnan(s):  # NaN warm-up sigma counts as 0, as in the environment
                    s = 0.0
                impact = notional * impact_coef * s * math.sqrt(size / known)
                cash -= traded * price + commission + spread + impact
                shares = shares + traded
        new_equity = cash + shares * close[f]
        ruined = new_equity <= 0.0
        out[0, k] = target
        out[1, k] = traded
        out[2, k] = commission
        out[3, k] = spread
        out[4, k] = impact
        out[5, k] = new_equity
        out[6, k] = math.log((ruin_equity if ruined else new_equity) / equity)
        out[7, k] = unfilled
        capped_out[k] = capped
        equity = new_equity
        if ruined:
            return k + 1
    return n


def _check_targets(targets: object, start_bar: object, market: MarketArrays) -> np.ndarray:
    if isinstance(start_bar, bool) or not isinstance(start_bar, int | np.integer):
        raise TypeError(f"start_bar must be an int, got {type(start_bar).__name__}")
    array = np.asarray(targets)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) \
            or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"targets must be a real numeric array, got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"targets must be a non-empty 1-D array, got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"targets must be finite; targets[{bad}] is {array[bad]}")
    n_bars = len(market)
    # The environment's earliest decision: sigma known, and not in the market's history bars.
    first = max(market.first_sigma_bar, market.history_bars - 1)
    last = n_bars - 1 - array.shape[0]  # the last step's fill bar must exist
    if last < first:
        raise ValueError(f"{array.shape[0]} targets need at least {array.shape[0] + first + 1} "
                         f"bars (sigma is known and the history ends at bar {first}); the "
                         f"market has {n_bars}")
    if not first <= start_bar <= last:
        raise ValueError(
            f"{array.shape[0]} target(s) need start_bar in [{first}, {last}] (sigma is known "
            f"and the history ends at bar {first}; a decision at t fills at t+1 < {n_bars}), "
            f"got {start_bar}")
    return array


def backtest_positions(
    market: MarketArrays,
    targets: np.ndarray,
    *,
    start_bar: int,
    costs: ExecutionCosts | None = None,
    initial_cash: float = 1_000_000.0,
    fill: Literal["next_open", "next_close"] = "next_open",
    min_trade_fraction: float = 1e-6,
    risk_fn: RiskFn | None = None,
    risk_lookback: int = 20,
    close_at_end: bool = False,
) -> BacktestResult:
    """Trade ``targets`` (decided at bars ``start_bar, start_bar+1, ...``) on ``market``.

    See the module docstring for timing and accounting; every argument means what
    the same-named :class:`SingleAssetTradingEnv` argument means. ``start_bar``
    must be at or after ``market.first_sigma_bar`` (the environment never decides
    earlier) and ``start_bar + len(targets)`` at most ``len(market) - 1``.
    ``costs`` None means the default :class:`ExecutionCosts`. ``risk_fn`` (with
    ``risk_lookback`` bars of returns in its context) switches to the replay
    through the environment: same numbers, a Python-speed loop.
    ``close_at_end``: the last step targets flat, uncapped (module docstring).
    """
    if not isinstance(market, MarketArrays):
        raise TypeError(f"market must be MarketArrays, got {type(market).__name__}")
    array = _check_targets(targets, start_bar, market)
    costs = ExecutionCosts() if costs is None else costs
    if not isinstance(costs, ExecutionCosts):
        raise TypeError(f"costs must be ExecutionCosts or None, got {type(costs).__name__}")
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be 'next_open' or 'next_close', got {fill!r}")
    initial_cash = float(initial_cash)
    if not (initial_cash > 0 and math.isfinite(initial_cash)):
        raise ValueError(f"initial_cash must be finite and > 0, got {initial_cash}")
    min_trade_fraction = float(min_trade_fraction)
    if not (min_trade_fraction >= 0 and math.isfinite(min_trade_fraction)):
        raise ValueError(f"min_trade_fraction must be finite and >= 0, got {min_trade_fraction}")
    if risk_fn is not None and risk_fn is not no_risk_limit:
        if not callable(risk_fn):
            raise TypeError(f"risk_fn must be callable, got {type(risk_fn).__name__}")
        return _replay_through_env(market, array, int(start_bar), costs, initial_cash, fill,
                                   min_trade_fraction, risk_fn, risk_lookback,
                                   bool(close_at_end))

    n = array.shape[0]
    start_bar = int(start_bar)
    fill_px = market.open if fill == "next_open" else market.close
    out = np.empty((len(_KERNEL_FIELDS), n))
    capped = np.empty(n, dtype=np.bool_)
    known_volume = decision_volume(market.volume, costs.volume_window)
    n_steps = _backtest_kernel(
        market.close, fill_px, market.volume, known_volume, market.sigma, array, start_bar,
        initial_cash,
        # The same expressions as the environment's, so the rates match bit for bit.
        costs.commission_bps * 1e-4, 0.5 * costs.spread_bps * 1e-4, costs.impact_coef,
        costs.participation_limit, min_trade_fraction, RUIN_FLOOR * initial_cash,
        bool(close_at_end), out, capped)
    fields = {name: out[i, :n_steps] for i, name in enumerate(_KERNEL_FIELDS)}
    return _result(market, fill_px, start_bar, fields, capped[:n_steps], initial_cash)


def _result(market: MarketArrays, fill_px: np.ndarray, start_bar: int,
            fields: Mapping[str, np.ndarray], capped: np.ndarray,
            initial_cash: float) -> BacktestResult:
    n_steps = capped.shape[0]
    bars = slice(start_bar + 1, start_bar + 1 + n_steps)
    for array in (capped, *fields.values()):
        array.setflags(write=False)
    equity = fields["equity"]
    return BacktestResult(start_bar=start_bar, fill_price=fill_px[bars], close=market.close[bars],
                          capped=capped, **fields, initial_cash=initial_cash,
                          ruined=bool(n_steps > 0 and equity[-1] <= 0.0))


_INFO_KEYS = {  # result field -> the environment's info key
    "targets": "target", "traded_shares": "traded_shares", "commission": "commission",
    "spread_cost": "spread_cost", "impact_cost": "impact_cost", "equity": "equity",
    "log_returns": "log_return", "unfilled_shares": "unfilled_shares",
}


def _replay_through_env(market: MarketArrays, targets: np.ndarray, start_bar: int,
                        costs: ExecutionCosts, initial_cash: float, fill: str,
                        min_trade_fraction: float, risk_fn: RiskFn,
                        risk_lookback: int, close_at_end: bool) -> BacktestResult:
    """Step :class:`SingleAssetTradingEnv` with the targets and collect its infos."""
    n = targets.shape[0]
    env = SingleAssetTradingEnv(
        market, window=1, initial_cash=initial_cash, costs=costs, fill=fill,
        start_bar=start_bar, end_bar=start_bar + n + 1, min_trade_fraction=min_trade_fraction,
        obs_clip=None, risk_fn=risk_fn, risk_lookback=risk_lookback, close_at_end=close_at_end,
        copy_obs=False)
    env.reset(options={"start_bar": start_bar})
    columns: dict[str, list[float]] = {name: [] for name in _INFO_KEYS}
    capped: list[bool] = []
    for target in targets.tolist():  # a Python float is the env's float(action)
        _, _, terminated, truncated, info = env.step(target)
        for name, key in _INFO_KEYS.items():
            columns[name].append(info[key])
        capped.append(info["capped"])
        if terminated or truncated:
            break
    fields = {name: np.array(values, dtype=np.float64) for name, values in columns.items()}
    fill_px = market.open if fill == "next_open" else market.close
    return _result(market, fill_px, start_bar, fields, np.array(capped, dtype=np.bool_),
                   initial_cash)
