"""The champion's decisions over a span of bars, as the environment replays them.

:func:`replay_decisions` takes validated bars and their feature table (the
features stage's :func:`~tradingrl.features.build.build_feature_table`) and
returns, for every bar of the span from ``start`` on, the model's features,
the trend model's prediction columns and the agent's risk-checked target:

1. the trend model (the bundle's, with its saved scaler and temperatures)
   predicts every feature row of the span and the rows before it that the
   agent's observation and the risk layer's return window reach back to;
2. :func:`~tradingrl.agents.data.build_agent_table` and
   :func:`~tradingrl.agents.data.span_markets` turn them into one
   MarketArrays per symbol, the agent's features scaled with the bundle's
   agent scaler;
3. :func:`~tradingrl.agents.training.rollout_policy` steps the
   single-asset environment with the bundle's agent (deterministic) from the
   span's first bar to its last, with the bundle's costs, cash, fill and risk
   layer: the account (position, cash, drawdown, risk state) is carried from
   one decision to the next, starting flat.

The environment's observation, action and risk-checked target equal
:meth:`TradingPolicy.decide <tradingrl.registry.policy.TradingPolicy.decide>`'s
for the same bars and account (tests/unit/test_trading_policy.py), so these
are the decisions the served champion makes bar after bar. A decision at bar
t uses bars <= t only and fills at t+1; the span's last bar has no fill bar,
so its target is NaN.

:func:`reference_window` is the same replay over the last sessions of the
data a bundle was trained and evaluated on: what promotion
(:func:`tradingrl.registry.promotion.promote`) saves with the bundle as
``reference.parquet``, and what the drift check compares the newest window
with (:func:`replay_newest`; :func:`load_bundle` reads a downloaded bundle).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The columns of a decision the prediction-drift check compares.
DECISION_COLUMNS: tuple[str, ...] = ("p_up", "p_down", "confidence", "expected_return", "target")
ENV_CONFIG = "env_config.json"


def model_features(manifest: Mapping[str, Any]) -> list[str]:
    """The feature columns a bundle's models read (the trend model's and the
    agent's), in the feature table's order."""
    from tradingrl.features.technical import FEATURE_COLUMNS

    used = set(manifest["trend_model"]["features"]) | set(manifest["agent"]["features"])
    return [name for name in FEATURE_COLUMNS if name in used]


def lookback_rows(manifest: Mapping[str, Any]) -> int:
    """Feature rows with predictions a symbol's market holds before the first
    decision: the agent's observation window and the risk layer's
    ``risk_lookback`` returns (``risk_lookback + 1`` closes) both end at it."""
    agent = manifest["agent"]
    return max(int(agent["window"]), int(agent["risk_lookback"]) + 1)


def history_bars(manifest: Mapping[str, Any]) -> int:
    """Bars per symbol a span needs before its first decision bar: the feature
    warm-up, the trend model's window (for the first prediction) and
    :func:`lookback_rows`."""
    return (int(manifest["features"]["warmup_bars"]) + int(manifest["trend_model"]["window"]) - 1
            + lookback_rows(manifest))


def read_env_config(bundle_dir: str | Path) -> dict[str, Any]:
    """The agent's ``env_config.json`` in a bundle (its env, costs and risk
    settings as train_agent saved them)."""
    from tradingrl.registry.bundle import AGENT_DIR

    path = Path(bundle_dir) / AGENT_DIR / ENV_CONFIG
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    return json.loads(path.read_text())


@dataclass(frozen=True, eq=False)
class ChampionBundle:
    """What the drift check reads from a downloaded bundle. manifest: its
    policy.json (files checked); reference: its reference window (None: the
    bundle was built without one); policy / env_config: the loaded
    TradingPolicy and the agent's env_config (None without a reference: there
    is nothing to compare, so the decision code is not loaded)."""

    manifest: dict[str, Any]
    reference: pd.DataFrame | None
    policy: Any = None
    env_config: dict[str, Any] | None = None


def load_bundle(bundle_dir: str | Path) -> ChampionBundle:
    """:class:`ChampionBundle` of the bundle at ``bundle_dir``. Its files are
    checked first, its decision code when the policy is loaded, so a bundle
    without a reference window is reported as such whatever its code."""
    from tradingrl.registry.bundle import REFERENCE_FILE, read_manifest
    from tradingrl.registry.policy import TradingPolicy

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir, check_code=False)
    if "reference" not in manifest:
        return ChampionBundle(manifest=manifest, reference=None)
    return ChampionBundle(manifest=manifest,
                          reference=pd.read_parquet(bundle_dir / REFERENCE_FILE),
                          policy=TradingPolicy.load(bundle_dir),
                          env_config=read_env_config(bundle_dir))


def replay_env_kwargs(policy: Any, env_config: Mapping[str, Any], *,
                      risk_from_config: bool = False) -> dict[str, Any]:
    """The single-asset environment's keyword arguments for replaying
    ``policy``: window, observation clip and risk lookback from its manifest,
    cash and fill from ``env_config["env"]``, costs from
    ``env_config["costs"]``, the policy's own risk function. With
    ``risk_from_config`` the risk settings are ``env_config``'s too: its
    ``risk`` section (:func:`~tradingrl.envs.decision.risk_fn_from_config`;
    disabled: no risk function) and ``env["risk_lookback"]``: replaying a
    champion with a challenger's settings (the agent's window and clip stay
    the policy's, its observation's shape)."""
    from tradingrl.envs.costs import ExecutionCosts
    from tradingrl.envs.decision import risk_fn_from_config

    for key in ("env", "costs"):
        if key not in env_config:
            raise ValueError(f"the agent's env_config lacks {key!r}")
    env, agent = env_config["env"], policy.manifest["agent"]
    kwargs: dict[str, Any] = {
        "window": int(agent["window"]),
        "obs_clip": agent["obs_clip"],
        "risk_lookback": int(agent["risk_lookback"]),
        "initial_cash": float(env.get("initial_cash", 1_000_000.0)),
        "fill": env.get("fill", "next_open"),
        "costs": ExecutionCosts(**env_config["costs"]),
        **dict(agent.get("action") or {}),  # the action's meaning is the policy's own
    }
    kind = str(agent.get("env_kind", "single_asset"))
    if kind == "portfolio":  # the action's reach is the policy's own too
        kwargs["allow_short"] = bool(agent["allow_short"])
        kwargs["max_gross_leverage"] = float(agent["max_gross_leverage"])
    if risk_from_config:
        if "risk" not in env_config:
            raise ValueError("the agent's env_config lacks 'risk'")
        kwargs["risk_lookback"] = int(env.get("risk_lookback", kwargs["risk_lookback"]))
        risk_fn = risk_fn_from_config(env_config["risk"], kind)
    else:
        risk_fn = policy.risk_fn
    if risk_fn is not None:
        kwargs["risk_fn"] = risk_fn
    return kwargs


def backtest_env(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What the backtest of already risk-checked targets takes from the
    replay's environment arguments: costs, cash and fill, no risk function."""
    return {k: env_kwargs[k] for k in ("costs", "initial_cash", "fill")}


@dataclass(frozen=True, eq=False)
class ReplayedDecisions:
    """rows: one row per (symbol, bar) from ``start`` on: timestamp, symbol,
    the model's features, the trend model's PREDICTION_COLUMNS,
    requested_target (the agent's action, clipped) and target (after the risk
    layer; NaN at a symbol's last bar). markets: symbol -> the MarketArrays
    replayed (lookback rows first). env: the environment's arguments used."""

    rows: pd.DataFrame
    markets: dict[str, Any]
    env: dict[str, Any]


def _prediction_rows(features: pd.DataFrame, start: pd.Timestamp, before: int) -> np.ndarray:
    """Boolean mask of the feature rows to predict: each symbol's rows from
    ``before`` rows ahead of its first row at or after ``start``."""
    position = features.groupby("symbol", sort=False).cumcount().to_numpy()
    first = (features["timestamp"] >= start).to_numpy()
    first_position = pd.Series(np.where(first, position, np.iinfo(np.int64).max)).groupby(
        features["symbol"].to_numpy()).transform("min").to_numpy()
    return position >= first_position - before


def replay_decisions(policy: Any, env_config: Mapping[str, Any], bars: pd.DataFrame,
                     features: pd.DataFrame, *, start: Any,
                     risk_from_config: bool = False) -> ReplayedDecisions:
    """The champion's decisions at every bar from ``start`` on (see the module
    docstring). ``policy``: a loaded TradingPolicy; ``env_config``: its
    bundle's agent env_config (:func:`read_env_config`), or another agent's
    whose costs (and, with ``risk_from_config``, risk settings:
    :func:`replay_env_kwargs`) the replay trades with; ``bars``: validated
    OHLCV (long format); ``features``: their feature table. Every symbol needs
    :func:`lookback_rows` feature rows with a prediction before ``start``
    (:func:`history_bars` bars; with ``risk_from_config``, also the history
    the evaluation gives a block's first decision,
    :func:`~tradingrl.agents.data.history_lookback`), else a ValueError names it."""
    from tradingrl.agents.data import build_agent_table, history_lookback, span_markets
    from tradingrl.agents.training import rollout_policy

    start = pd.Timestamp(start)
    if start.tzinfo is None:
        start = start.tz_localize("UTC")
    manifest = policy.manifest
    columns = model_features(manifest)
    missing = [c for c in ("timestamp", "symbol", *columns) if c not in features.columns]
    if missing:
        raise ValueError(f"the feature table lacks column(s) {missing[:5]}")
    features = features.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    span = features[features["timestamp"] >= start]
    if span.empty:
        raise ValueError(f"no feature rows at or after {start.isoformat()}")
    env = replay_env_kwargs(policy, env_config, risk_from_config=risk_from_config)
    lookback = lookback_rows(manifest)
    if risk_from_config:
        lookback = max(lookback, history_lookback(env))
    predictions = policy.trend_model.predict(
        features, rows=_prediction_rows(features, start, lookback))
    agent = manifest["agent"]
    table, _ = build_agent_table(features, bars, predictions, agent["features"],
                                 agent["prediction_columns"])
    markets = {m.symbol: m for m in span_markets(
        table, policy.agent_scaler, agent["prediction_columns"], start=start,
        end=span["timestamp"].max(), lookback=lookback, min_bars=1)}

    if policy.kind == "portfolio":
        # One book over the policy's symbols; a bar some symbol lacks is not
        # decided (its rows keep a NaN target), as the served policy aligns.
        markets, targets = _portfolio_decisions(policy, markets, env, start, lookback)
        span = span[span["symbol"].isin(policy.symbols)]
        return _decision_rows(span, columns, predictions, targets, markets, env)
    short = []
    decided: list[pd.DataFrame] = []
    for symbol in sorted(span["symbol"].unique()):
        market = markets.get(symbol)
        first = (-1 if market is None else
                 int(np.searchsorted(market.timestamps,
                                     start.tz_convert("UTC").tz_localize(None).to_datetime64())))
        if market is None or first < lookback or len(market) - first < 2:
            short.append(symbol)
            continue
        rollout = rollout_policy(market, policy.agent, {**env, "start_bar": first})
        decision_bars = rollout["decision_bar"].astype(np.int64)
        if decision_bars[0] != first:
            raise RuntimeError(f"{symbol}: the environment's first decision is at bar "
                               f"{decision_bars[0]}, expected {first}")
        decided.append(pd.DataFrame({
            "symbol": symbol,
            "timestamp": pd.DatetimeIndex(market.timestamps[decision_bars]).tz_localize("UTC"),
            "requested_target": rollout["requested_target"], "target": rollout["target"]}))
    if short:
        raise ValueError(f"symbol(s) {short[:5]} lack {lookback} feature rows with predictions "
                         f"before {start.isoformat()} (or a bar after it); the champion needs "
                         f"{history_bars(manifest)} bars of history before its first decision")
    return _decision_rows(span, columns, predictions, pd.concat(decided, ignore_index=True),
                          markets, env)


def _decision_rows(span: pd.DataFrame, columns: list[str], predictions: pd.DataFrame,
                   targets: pd.DataFrame, markets: dict[str, Any],
                   env: dict[str, Any]) -> ReplayedDecisions:
    """The span's feature rows with their predictions and replayed targets."""
    from tradingrl.models.predict import PREDICTION_COLUMNS

    targets["timestamp"] = targets["timestamp"].astype(span["timestamp"].dtype)
    rows = (span[["timestamp", "symbol", *columns]]
            .merge(predictions[["timestamp", "symbol", *PREDICTION_COLUMNS]],
                   on=["timestamp", "symbol"], how="left", validate="one_to_one")
            .merge(targets, on=["timestamp", "symbol"], how="left", validate="one_to_one"))
    unpredicted = rows[list(PREDICTION_COLUMNS)].isna().any(axis=1)
    if unpredicted.any():
        raise RuntimeError(f"{int(unpredicted.sum())} rows of the span have no prediction")
    rows = rows.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    return ReplayedDecisions(rows=rows, markets=markets, env=env)


def portfolio_start_bar(markets: list[Any], start: pd.Timestamp, lookback: int) -> int:
    """The aligned portfolio markets' bar at ``start`` (its first decision),
    ValueError without ``lookback`` bars before it or a bar after it."""
    first = int(np.searchsorted(markets[0].timestamps,
                                start.tz_convert("UTC").tz_localize(None).to_datetime64()))
    if first < lookback or len(markets[0]) - first < 2:
        raise ValueError(f"the portfolio's common bars hold {first} bars before "
                         f"{start.isoformat()} and {len(markets[0]) - first} from it; the "
                         f"replay needs {lookback} before it and 2 from it")
    return first


def portfolio_markets(policy: Any, markets: Mapping[str, Any]) -> list[Any]:
    """The portfolio policy's markets in its weight order, aligned on the
    bars all of them have (as the served policy aligns a request)."""
    from tradingrl.envs.panel import align_markets

    missing = [s for s in policy.symbols if s not in markets]
    if missing:
        raise ValueError(f"the portfolio's symbol(s) {missing} have no bars to replay on")
    return align_markets([markets[s] for s in policy.symbols])


def _portfolio_decisions(policy: Any, markets: dict[str, Any], env: dict[str, Any],
                         start: pd.Timestamp, lookback: int
                         ) -> tuple[dict[str, Any], pd.DataFrame]:
    """A portfolio policy's weights at every common bar from ``start`` on:
    one deterministic episode of its agent in the portfolio environment over
    the aligned markets (the account carried from bar to bar, starting in
    cash). Returns the aligned markets by symbol and the targets' rows."""
    from tradingrl.envs.portfolio import PortfolioTradingEnv

    aligned = portfolio_markets(policy, markets)
    first = portfolio_start_bar(aligned, start, lookback)
    episode = PortfolioTradingEnv(aligned, **{**env, "start_bar": first})
    obs, _ = episode.reset()
    decision_bars, requested, target = [], [], []
    done = False
    while not done:
        decision_bars.append(episode.bar)
        action, _ = policy.agent.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = episode.step(action)
        requested.append(info["requested_weights"])
        target.append(info["target_weights"])
        done = terminated or truncated
    if decision_bars[0] != first:
        raise RuntimeError(f"the portfolio environment's first decision is at bar "
                           f"{decision_bars[0]}, expected {first}")
    stamps = pd.DatetimeIndex(aligned[0].timestamps[np.asarray(decision_bars)]).tz_localize("UTC")
    n = len(aligned)
    targets = pd.DataFrame({
        "symbol": np.tile(np.asarray(policy.symbols, dtype=object), len(stamps)),
        "timestamp": np.repeat(stamps, n),
        "requested_target": np.concatenate(requested), "target": np.concatenate(target)})
    return {m.symbol: m for m in aligned}, targets


def replay_newest(policy: Any, env_config: Mapping[str, Any], bars: pd.DataFrame,
                  features: pd.DataFrame, *, sessions: int) -> ReplayedDecisions:
    """:func:`replay_decisions` over the newest ``sessions`` sessions (distinct
    timestamps) of ``features``; fewer sessions with features is a ValueError."""
    stamps = pd.DatetimeIndex(features["timestamp"].unique()).sort_values()
    if len(stamps) < sessions:
        raise ValueError(f"{len(stamps)} sessions have features, the window needs {sessions}")
    return replay_decisions(policy, env_config, bars, features, start=stamps[-sessions])


def reference_start(features: pd.DataFrame, manifest: Mapping[str, Any],
                    sessions: int) -> pd.Timestamp:
    """The first timestamp of the reference window: the last ``sessions``
    distinct timestamps of ``features``, fewer when the data leaves less room
    (every symbol needs the trend model's window and :func:`lookback_rows`
    feature rows before it)."""
    if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 2:
        raise ValueError(f"reference sessions must be an int >= 2, got {sessions!r}")
    stamps = pd.DatetimeIndex(features["timestamp"].unique()).sort_values()
    before = int(manifest["trend_model"]["window"]) - 1 + lookback_rows(manifest)
    # Each symbol's earliest possible first decision: its row number `before`.
    ordered = features.sort_values(["symbol", "timestamp"], kind="stable")
    nth = ordered.groupby("symbol", sort=False)["timestamp"].nth(before)
    if len(nth) < ordered["symbol"].nunique():
        raise ValueError(f"a symbol has at most {before} feature rows; the reference window "
                         f"needs {before} rows of history before it")
    start = max(stamps[max(len(stamps) - sessions, 0)], pd.Timestamp(nth.max()))
    if (stamps >= start).sum() < 2:
        raise ValueError("the data leaves fewer than 2 sessions for the reference window")
    return start


def reference_window(policy: Any, env_config: Mapping[str, Any], bars: pd.DataFrame,
                     features: pd.DataFrame, *, sessions: int) -> pd.DataFrame:
    """The reference table a bundle carries: :func:`replay_decisions` over the
    last ``sessions`` sessions of ``features`` (see :func:`reference_start`)."""
    start = reference_start(features, policy.manifest, sessions)
    return replay_decisions(policy, env_config, bars, features, start=start).rows
