"""Books of a portfolio agent's evaluation block: one account over all symbols.

A ``Portfolio-v0`` agent (``train_agent.env_kind: portfolio``) sets target
weights over every symbol from one cash account, so its evaluation block is
traded in one :class:`~tradingrl.envs.portfolio.PortfolioTradingEnv` over the
block's aligned markets (:func:`block_portfolio_env`: the agent's env
settings, every episode from the block's first decision bar to its end, and
the block-end rule of :func:`tradingrl.evaluation.books.block_env`: the step
that fills at the block's last bar goes to cash and pays for it).

The baselines trade the same env, the same costs and the same risk layer;
their actions are target weights (``action_mode`` "target") decided at bar
t from bars <= t only, through :meth:`PortfolioTradingEnv.action_for_weights`:

- ``buy_and_hold``: 1/N of equity in each symbol at the first decision, then
  the drifted weights held (the risk layer may still resize them);
- ``equal_weight``: 1/N in each symbol at every bar (rebalanced);
- ``inverse_volatility``: weights proportional to 1 / sigma_i at t (the
  symbol's past-only volatility), summing to 1;
- ``flat``: all cash;
- ``sma_crossover``, ``supervised``, ``random``: the single-asset baselines'
  targets (:func:`tradingrl.evaluation.books.baseline_targets`) divided by
  N, i.e. each symbol's equal share of equity positioned as the single-asset
  baseline positions its sleeve (long-only envs clip negative weights to 0).

A book's per-step series (:class:`~tradingrl.evaluation.books.BookSeries`)
are read from the env's info: log return after costs, net and gross
weights at the fill bar's close, turnover and costs over the equity before
the step, the fills the volume cap cut and the notional it left unfilled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tradingrl.envs.arrays import MarketArrays
from tradingrl.evaluation.books import BaselineSettings, BookSeries, baseline_targets, block_env

PORTFOLIO_BASELINE_NAMES: tuple[str, ...] = (
    "buy_and_hold", "equal_weight", "inverse_volatility", "flat", "sma_crossover",
    "supervised", "random",
)

Act = Callable[[np.ndarray, Any], Any]


def block_portfolio_env(markets: Sequence[MarketArrays], env_kwargs: Mapping[str, Any]) -> Any:
    """The portfolio env that trades an evaluation block: ``env_kwargs``
    (the agent's) with one episode over the whole span and ``close_at_end``."""
    from tradingrl.agents.training import build_env, validation_env_kwargs

    return build_env(list(markets), validation_env_kwargs(block_env(env_kwargs)),
                     kind="portfolio")


def rollout_book(env: Any, act: Act) -> BookSeries:
    """One episode of ``env`` (a :class:`PortfolioTradingEnv`), the action at
    each decision bar ``act(observation, env)``, as a book."""
    obs, info = env.reset()
    before = float(info["equity"])
    rows: dict[str, list[float]] = {k: [] for k in (
        "log_return", "position", "exposure", "turnover", "cost", "capped", "unfilled")}
    bars: list[int] = []
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs, env))
        done = terminated or truncated
        weights = np.asarray(info["weights"], dtype=np.float64)
        traded = np.abs(info["traded_shares"]) * info["fill_price"]
        bars.append(int(info["bar"]))
        rows["log_return"].append(float(info["log_return"]))
        rows["position"].append(float(weights.sum()))
        rows["exposure"].append(float(np.abs(weights).sum()))
        rows["turnover"].append(float(traded.sum()) / before)
        rows["cost"].append(float(info["cost"]) / before)
        rows["capped"].append(float(np.sum(info["capped"])))
        rows["unfilled"].append(float(np.sum(info["unfilled_notional"])) / before)
        before = float(info["equity"])
    stamps = env.panel.timestamps
    if stamps is None:
        raise ValueError("a portfolio book needs markets with timestamps")
    return BookSeries(timestamps=np.asarray(stamps)[np.asarray(bars)],
                      **{k: np.asarray(v, dtype=np.float64) for k, v in rows.items()})


def policy_act(model: Any) -> Act:
    """The act function of an SB3 model (deterministic actions)."""
    def act(obs: np.ndarray, env: Any) -> Any:
        action, _ = model.predict(obs, deterministic=True)
        return action
    return act


def weights_act(weights: Callable[[Any], np.ndarray]) -> Act:
    """The act function that requests ``weights(env)`` (N,) at the env's
    decision bar, made reachable: clipped to the env's bounds and scaled
    down to its gross leverage when over it."""
    def act(obs: np.ndarray, env: Any) -> Any:
        w = np.asarray(weights(env), dtype=np.float64)
        w = np.clip(w, -1.0 if env.allow_short else 0.0, 1.0)
        gross = float(np.abs(w).sum())
        if gross > env.max_gross_leverage:
            w = w * (env.max_gross_leverage / gross)
        return env.action_for_weights(w)
    return act


def baseline_weights(markets: Sequence[MarketArrays], first_decision: int, n_steps: int,
                     sma: Sequence[np.ndarray], settings: BaselineSettings, *, fold: int
                     ) -> dict[str, Callable[[Any], np.ndarray]]:
    """Per baseline, ``weights(env)`` at the env's decision bar (module
    docstring). ``sma``: each market's SMA crossover target on its bars;
    decisions at bars ``first_decision .. first_decision + n_steps - 1``."""
    n = len(markets)
    per_symbol = [baseline_targets(m, first_decision, n_steps, s, settings, fold=fold)
                  for m, s in zip(markets, sma, strict=True)]
    # (n_steps, N) target series of the single-asset baselines, per name.
    series = {name: np.column_stack([targets[name] for targets in per_symbol]) / n
              for name in ("sma_crossover", "supervised", "random")
              if all(name in targets for targets in per_symbol)}
    equal = np.full(n, 1.0 / n)

    def step(env: Any) -> int:
        k = env.bar - first_decision
        if not 0 <= k < n_steps:
            raise ValueError(f"decision bar {env.bar} outside the block's decisions "
                             f"{first_decision}..{first_decision + n_steps - 1}")
        return k

    def buy_and_hold(env: Any) -> np.ndarray:
        return equal if step(env) == 0 else env.weights

    def inverse_volatility(env: Any) -> np.ndarray:
        step(env)
        sigma = np.asarray(env.panel.sigma[env.bar], dtype=np.float64)
        if not (np.isfinite(sigma).all() and (sigma > 0).all()):
            raise ValueError(f"inverse_volatility: sigma at bar {env.bar} is not positive "
                             f"and finite for every symbol: {sigma}")
        inverse = 1.0 / sigma
        return inverse / inverse.sum()

    def constant(weights: np.ndarray) -> Callable[[Any], np.ndarray]:
        return lambda env: weights + 0.0 * step(env)

    def from_series(targets: np.ndarray) -> Callable[[Any], np.ndarray]:
        return lambda env: targets[step(env)]

    out: dict[str, Callable[[Any], np.ndarray]] = {
        "buy_and_hold": buy_and_hold, "equal_weight": constant(equal),
        "inverse_volatility": inverse_volatility, "flat": constant(np.zeros(n)),
        **{name: from_series(targets) for name, targets in series.items()},
    }
    return {name: out[name] for name in PORTFOLIO_BASELINE_NAMES if name in out}
