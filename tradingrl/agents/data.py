"""From the pipeline's tables to the agent's :class:`~tradingrl.envs.MarketArrays`.

The agent's table joins, per (symbol, timestamp), the validated OHLCV bars,
the chosen feature columns and the out-of-fold trend-model predictions.
Only bars that have a prediction enter (the first walk-forward training span
has none, by construction). ``sigma`` (the impact model's past-only
volatility) is computed on each symbol's whole validated close series before
the join, so it uses every earlier bar and nothing later.

Spans: :func:`span_markets` cuts one MarketArrays per symbol for the bars
in [start, end], with ``lookback`` earlier bars in front, marked as the
market's ``history_bars``: known before the span (past-only), so the first
decision (at the bar before ``start``, filling at ``start``) sees a full
observation window and the risk layer's full return history, as the served
policy does on the same bar, while trading starts at ``start``.
:func:`history_lookback` is how many bars that takes for an environment's
settings; the evaluation blocks and the validation spans use it. Features are
scaled with a scaler fitted on the training span only (:func:`fit_agent_scaler`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.envs.arrays import MarketArrays, check_state_columns, rolling_sigma

OHLCV = ("open", "high", "low", "close", "volume")


def build_agent_table(
    features: pd.DataFrame,
    ohlcv: pd.DataFrame,
    predictions: pd.DataFrame,
    feature_names: Sequence[str],
    prediction_names: Sequence[str],
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The agent's rows: timestamp, symbol, OHLCV, sigma, the feature and the
    prediction columns, sorted by symbol and time. Returns (table, counts)."""
    feature_names = check_state_columns(feature_names, "feature")
    prediction_names = check_state_columns(prediction_names, "prediction")
    missing = [c for c in feature_names if c not in features]
    missing += [c for c in prediction_names if c not in predictions]
    if missing:
        raise ValueError(f"columns {missing} are not in the feature/prediction tables")
    bars = ohlcv[["timestamp", "symbol", *OHLCV]].sort_values(["symbol", "timestamp"])
    bars = bars.assign(sigma=bars.groupby("symbol", sort=False)["close"].transform(
        lambda close: pd.Series(rolling_sigma(close.to_numpy()), index=close.index)))
    table = (features[["timestamp", "symbol", *feature_names]]
             .merge(predictions[["timestamp", "symbol", *prediction_names]],
                    on=["timestamp", "symbol"], how="inner", validate="one_to_one")
             .merge(bars, on=["timestamp", "symbol"], how="inner", validate="one_to_one"))
    table = table.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    counts = {
        "feature_rows": len(features),
        "prediction_rows": len(predictions),
        "rows": len(table),
        "symbols": int(table["symbol"].nunique()),
    }
    if not len(table):
        raise ValueError("no bar has features, an out-of-fold prediction and OHLCV together")
    return table, counts


def fit_agent_scaler(table: pd.DataFrame, feature_names: Sequence[str],
                     start: Any, end: Any) -> Any:
    """A :class:`~tradingrl.models.data.FeatureScaler` fitted on the rows with
    start <= timestamp <= end (the agent's training span) only."""
    from tradingrl.models.data import FeatureScaler

    ts = table["timestamp"]
    rows = ((ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))).to_numpy()
    return FeatureScaler.fit(table, feature_names, rows=rows)


def history_lookback(env_kwargs: Mapping[str, Any]) -> int:
    """Bars a span's market needs before its start so that the first decision
    (at the bar before the start) has the history a decision in the middle of
    the data has: the observation ``window``, the risk layer's
    ``risk_lookback`` returns (``risk_lookback + 1`` closes; the market's first
    return is NaN) and the costs' ``volume_window`` (the volume known at the
    decision). Missing keys take the environment's defaults."""
    from tradingrl.envs.costs import DEFAULT_VOLUME_WINDOW

    costs = env_kwargs.get("costs")
    volume_window = DEFAULT_VOLUME_WINDOW if costs is None else int(costs.volume_window)
    return max(int(env_kwargs.get("window", 20)), int(env_kwargs.get("risk_lookback", 20)) + 1,
               volume_window)


def span_markets(
    table: pd.DataFrame,
    scaler: Any,
    prediction_names: Sequence[str],
    *,
    start: Any,
    end: Any,
    lookback: int,
    min_bars: int = 2,
) -> list[MarketArrays]:
    """One MarketArrays per symbol holding the bars with start <= timestamp <=
    end plus up to ``lookback`` bars before them, which are the market's
    ``history_bars``: an env on it makes its first decision at the bar before
    ``start`` at the earliest (when ``lookback`` covers its window), which
    fills at ``start``; the earlier bars are history only (observation window,
    risk returns, known volume). A symbol with fewer earlier bars gets what
    exists. Symbols with fewer than ``min_bars`` bars in the span are left out."""
    if lookback < 0:
        raise ValueError(f"lookback must be >= 0, got {lookback}")
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    scaled = scaler.transform(table)
    predictions = table[list(prediction_names)].to_numpy(np.float32)
    ts = table["timestamp"]
    in_span = ((ts >= start) & (ts <= end)).to_numpy()
    markets = []
    for symbol, rows in table.groupby("symbol", sort=True).indices.items():
        inside = np.flatnonzero(in_span[rows])
        if inside.size < min_bars:
            continue
        first = max(0, int(inside[0]) - lookback)
        history = int(inside[0]) - first
        picked = rows[first:int(inside[-1]) + 1]
        part = table.iloc[picked]
        markets.append(MarketArrays(
            symbol=str(symbol),
            open=part["open"].to_numpy(), high=part["high"].to_numpy(),
            low=part["low"].to_numpy(), close=part["close"].to_numpy(),
            volume=part["volume"].to_numpy(),
            features=scaled[picked], feature_names=tuple(scaler.feature_names),
            predictions=predictions[picked], prediction_names=tuple(prediction_names),
            sigma=part["sigma"].to_numpy(),
            timestamps=pd.DatetimeIndex(part["timestamp"]).tz_convert("UTC")
            .tz_localize(None).to_numpy(),
            history_bars=history,
        ))
    if not markets:
        raise ValueError(f"no symbol has {min_bars} bars between {start} and {end}")
    return markets


def agent_spans(table: pd.DataFrame, val_fraction: float) -> dict[str, pd.Timestamp]:
    """Training and validation spans over the distinct sessions of ``table``:
    the last ``val_fraction`` of them validate, the rest train (inclusive
    bounds: train_start, train_end, val_start, val_end)."""
    distinct = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()
    n_val = int(np.floor(val_fraction * len(distinct) + 0.5))
    if not 1 <= n_val < len(distinct) - 1:
        raise ValueError(f"val_fraction {val_fraction} of {len(distinct)} sessions leaves no "
                         "training or no validation span")
    return {"train_start": distinct[0], "train_end": distinct[-n_val - 1],
            "val_start": distinct[-n_val], "val_end": distinct[-1]}
