"""The replays promotion makes: the bundle's reference window, the champion's like-for-like book.

:func:`build_reference_bundle` is the promote stage's bundle: the whole
decision (feature settings, scalers, CNN+LSTM, agent, risk layer) in one
folder with ``reference.parquet``, the bundle's own decisions over the last
sessions of its training data (:func:`reference_table`). Once the version is
champion, the drift check compares the newest window with it. It lives here,
not in :mod:`tradingrl.registry`, because the window is a replay of the
decisions (:mod:`tradingrl.monitoring.decisions`), and monitoring builds on
the registry, not the other way round.

:func:`champion_comparison` is the other replay at promotion: the current
champion's bundle traded over the bars after its own training end with the
challenger's costs and risk settings, one evaluation block (fold) at a time
like the challenger's out-of-fold book: starting flat at the block's first
bar after the champion's training end, its decisions risk-checked by the
challenger's risk layer in the environment
(:func:`~tradingrl.monitoring.decisions.replay_decisions`), the book traded by
the backtester with the evaluation's cost model and end-of-block exit
(:func:`~tradingrl.evaluation.books.block_env`). The promotion gate compares
its Sharpe ratio with the challenger's on exactly the same bars
(:mod:`tradingrl.registry.comparison`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tradingrl.registry.comparison import ChampionComparison


def reference_table(bundle: str | Path, bars: pd.DataFrame, features: pd.DataFrame,
                    sessions: int) -> pd.DataFrame:
    """The bundle's decisions (features, predictions, targets) over the last
    ``sessions`` sessions of ``features`` (its feature table; ``bars``: the
    validated OHLCV it was built from), replayed with the bundle itself."""
    from tradingrl.monitoring.decisions import read_env_config, reference_window
    from tradingrl.registry.policy import TradingPolicy

    return reference_window(TradingPolicy.load(bundle), read_env_config(bundle), bars, features,
                            sessions=sessions)


def build_reference_bundle(cnn_lstm_dir: str | Path, agent_dir: str | Path,
                           features_params: Mapping[str, Any], out_dir: str | Path, *,
                           bars: pd.DataFrame, features: pd.DataFrame,
                           sessions: int) -> Path:
    """:func:`~tradingrl.registry.bundle.build_policy_bundle` into ``out_dir``
    (replaced) with its reference window over the last ``sessions`` sessions
    of ``features``; returns ``out_dir``."""
    from tradingrl.registry.bundle import build_policy_bundle

    pieces = (cnn_lstm_dir, agent_dir, features_params, out_dir)
    data_end = data_end_of(features)
    # The reference window is the bundle's own decisions: replayed with the
    # bundle built first, then added to it.
    bundle = build_policy_bundle(*pieces, overwrite=True, data_end=data_end)
    reference = reference_table(bundle, bars, features, int(sessions))
    return build_policy_bundle(*pieces, overwrite=True, reference=reference, data_end=data_end)


def data_end_of(features: pd.DataFrame) -> pd.Timestamp:
    """The last bar a feature table tells of: its last row or its latest
    label end (``t1``), whichever is later: what models trained on it can
    have learnt from."""
    ends = [pd.Timestamp(features["timestamp"].max())]
    if "t1" in features.columns and features["t1"].notna().any():
        ends.append(pd.Timestamp(features["t1"].max()))
    return max(ends)


def champion_comparison(bundle_dir: str | Path, version: str, *,
                        challenger_env_config: Mapping[str, Any], curves: pd.DataFrame,
                        bars: pd.DataFrame, features: pd.DataFrame, symbols: list[str],
                        min_bars: int, bars_per_year: int) -> ChampionComparison:
    """The champion (its downloaded bundle at ``bundle_dir``, registry
    ``version``) against the challenger on the bars out of sample for both
    (see the module docstring).

    challenger_env_config: the challenger's agent env_config (its costs,
    cash, fill, risk section and risk lookback: train_agent's, which the
    walk-forward evaluation traded with); curves: the evaluation's
    reports/evaluation/curves.parquet; bars / features: validated OHLCV and
    its feature table (the challenger's data); symbols: the symbols of the
    challenger's book (reports/metrics.json ``config.symbols``); min_bars:
    ``promote.gate.min_comparable_bars``. The champion is replayed with the
    current decision code (its bundle's files are checked; a code path that
    differs from its build is named in ``replay["code_differs"]``)."""
    from tradingrl.evaluation.books import block_env
    from tradingrl.monitoring.decisions import backtest_env, replay_decisions
    from tradingrl.registry.bundle import code_fingerprint, read_manifest
    from tradingrl.registry.comparison import (
        challenger_series,
        comparable_bars,
        compare_books,
        not_comparable,
        training_end,
    )
    from tradingrl.registry.policy import TradingPolicy

    bundle_dir, symbols = Path(bundle_dir), sorted(str(s) for s in symbols)
    manifest = read_manifest(bundle_dir, check_code=False)
    end, source = training_end(manifest)
    env = challenger_env_config.get("env", {})
    replay = {"training_end_source": source, "costs": dict(challenger_env_config["costs"]),
              "risk": dict(challenger_env_config["risk"]),
              "risk_lookback": env.get("risk_lookback")}
    common: dict[str, Any] = {"min_bars": int(min_bars), "symbols": symbols,
                              "bars_per_year": int(bars_per_year), "replay": replay}
    if end is None:
        return not_comparable(version, source, n_bars=0, end=None, **common)
    ours = challenger_series(curves, end)
    if len(ours) < min_bars:  # nothing to replay for
        return not_comparable(version, f"{len(ours)} bars of the challenger's out-of-fold book "
                              f"are after the champion's training end {end.isoformat()}, "
                              f"fewer than {min_bars}", n_bars=len(ours), end=end, **common)
    missing = sorted(set(symbols) - set(features["symbol"].astype(str)))
    if not symbols or missing:
        return not_comparable(version, f"the challenger's symbols {missing or symbols} have no "
                              "feature rows to replay the champion on", n_bars=0, end=end,
                              **common)
    current = code_fingerprint()
    replay["code_differs"] = sorted(name for name, digest in manifest["code_sha256"].items()
                                    if current.get(name) != digest)
    policy = TradingPolicy.load(bundle_dir, check_code=False)
    table = features[features["symbol"].astype(str).isin(symbols)]
    sessions = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    theirs = []
    for fold, rows in ours.groupby("fold", sort=True):
        first_fill, last_fill = rows["timestamp"].min(), rows["timestamp"].max()
        before = sessions[sessions < first_fill]
        if before.empty:
            return not_comparable(version, f"fold {fold}: no bar before {first_fill.isoformat()} "
                                  "to decide its first fill at", n_bars=0, end=end, **common)
        try:
            replayed = replay_decisions(policy, challenger_env_config, bars,
                                        table[table["timestamp"] <= last_fill],
                                        start=before[-1], risk_from_config=True)
            book = (_portfolio_block_book(policy, replayed, before[-1])
                    if policy.kind == "portfolio"
                    else _block_book(replayed, symbols, block_env(backtest_env(replayed.env))))
        except ValueError as error:  # too little history, other features, other calendars
            return not_comparable(version, f"the champion cannot be replayed on fold {fold}'s "
                                  f"bars: {error}", n_bars=0, end=end, **common)
        theirs.append(pd.DataFrame({
            "timestamp": pd.DatetimeIndex(book.timestamps).tz_localize("UTC"),
            "log_return": book.log_return}))
    joined = comparable_bars(ours, pd.concat(theirs, ignore_index=True))
    return compare_books(version, joined, min_bars=int(min_bars),
                         bars_per_year=int(bars_per_year), end=end, symbols=symbols,
                         replay=replay)


def _portfolio_block_book(policy: Any, replayed: Any, start: pd.Timestamp) -> Any:
    """A portfolio champion's book of one block: its agent trading the
    replay's aligned markets in one portfolio env from its first decision at
    ``start`` (the replay's), with the replay's costs and (challenger's) risk
    layer, the block ending in cash (:func:`~tradingrl.evaluation.books.block_env`),
    as the evaluation trades a portfolio agent's block. The agent is stepped
    again rather than its replayed weights backtested: the weights' action
    encoding would round them to float32."""
    from tradingrl.envs.portfolio import PortfolioTradingEnv
    from tradingrl.evaluation.books import block_env
    from tradingrl.evaluation.portfolio_books import policy_act, rollout_book
    from tradingrl.monitoring.decisions import portfolio_start_bar

    markets = [replayed.markets[s] for s in policy.symbols]
    first = portfolio_start_bar(markets, pd.Timestamp(start), 0)
    env = PortfolioTradingEnv(markets, **{**block_env(replayed.env), "start_bar": first})
    return rollout_book(env, policy_act(policy.agent))


def _block_book(replayed: Any, symbols: list[str], env: Mapping[str, Any]) -> Any:
    """The equal-weight book of the replay's risk-checked targets over
    ``symbols``: each symbol from its first decision to its market's
    second-last bar, traded by the backtester with ``env`` (no risk
    function: the targets are risk-checked; ``close_at_end``)."""
    from tradingrl.evaluation.books import backtest_sleeve, equal_weight_book

    steps, stamps = [], []
    for symbol in symbols:
        rows = replayed.rows[replayed.rows["symbol"] == symbol].sort_values("timestamp")
        market = replayed.markets[symbol]
        first_time = pd.DatetimeIndex(rows["timestamp"][:1]).tz_convert("UTC").tz_localize(None)
        first = int(np.searchsorted(market.timestamps, first_time.to_numpy()[0]))
        n_steps = len(market) - 1 - first
        targets = rows["target"].to_numpy(dtype=np.float64)[:-1]
        if n_steps < 1 or len(targets) != n_steps or not np.isfinite(targets).all():
            raise RuntimeError(f"{symbol}: the replay's {len(targets)} targets do not cover its "
                               f"market's {n_steps} decision bars")
        steps.append(backtest_sleeve(market, targets, first, env))
        stamps.append(market.timestamps[first + 1:first + 1 + n_steps])
    return equal_weight_book(steps, stamps)
