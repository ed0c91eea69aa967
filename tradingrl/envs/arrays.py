"""One symbol's bars as frozen, contiguous numpy arrays: what an environment steps over.

The environment never touches pandas inside ``step()``; everything it reads is
prepared here once. Only the explicitly named feature and prediction columns
enter, in the given order, and names that look like labels (``label``,
``fwd_return``, ``t1``, ``target...``, ``future...``) are refused, so a label can
never become part of an agent's state.

Units: prices in the quote currency, volume in shares per bar, ``sigma`` the
per-bar standard deviation of log close-to-close returns (a fraction, past-only:
``sigma[t]`` uses closes <= t), ``log_returns[t] = log(close[t] / close[t-1])``
(NaN at bar 0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradingrl.features.labels import LABEL_COLUMNS

# The columns the trend model's predictions arrive in (a subset of
# tradingrl.models.predict.PREDICTION_COLUMNS), and their "no information" values.
DEFAULT_PREDICTION_COLUMNS: tuple[str, ...] = (
    "p_down", "p_flat", "p_up", "expected_return", "confidence",
)
NEUTRAL_PREDICTIONS: dict[str, float] = {
    "p_down": 1.0 / 3.0, "p_flat": 1.0 / 3.0, "p_up": 1.0 / 3.0,
    "expected_return": 0.0, "confidence": 0.0,
    "entropy": float(np.log(3.0)), "direction_std": 0.0,
}
DEFAULT_VOL_WINDOW = 20  # bars in the past-only sigma used by the impact model

_LABEL_LIKE = re.compile(
    r"^(label|labels|target|targets|y|t1)(_.*)?$"
    r"|^(fwd|forward|future|next|lead)_"
    r"|_(fwd|forward|future|lead)$"
)


def is_label_like(name: str) -> bool:
    """True for names a label would carry (``label``, ``fwd_return``, ``t1``,
    ``target_5``, ``future_ret``, ``ret_fwd`` ...): never state columns."""
    lowered = name.strip().lower()
    return lowered in LABEL_COLUMNS or _LABEL_LIKE.search(lowered) is not None


def check_state_columns(names: Sequence[str], kind: str) -> tuple[str, ...]:
    """Validate an explicit, ordered list of state column names."""
    if isinstance(names, str):
        raise TypeError(f"{kind} columns must be a sequence of names, not the string {names!r}")
    names = tuple(names)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"{kind} column names must be non-empty strings, got {bad}")
    leaks = [n for n in names if is_label_like(n)]
    if leaks:
        raise ValueError(f"label-like {kind} column(s) {leaks} refused: labels look forward "
                         "and must never enter the environment's state")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate {kind} column(s): {duplicates}")
    return names


def rolling_sigma(close: np.ndarray, window: int = DEFAULT_VOL_WINDOW) -> np.ndarray:
    """Past-only std (ddof=1) of log close-to-close returns over the last ``window``
    bars ending at t, with at least 2 returns (NaN at bars 0 and 1)."""
    if window < 2:
        raise ValueError(f"vol window must be >= 2 bars, got {window}")
    returns = pd.Series(np.log(np.asarray(close, dtype=np.float64))).diff()
    return returns.rolling(window, min_periods=2).std().to_numpy(dtype=np.float64)


def log_returns(close: np.ndarray) -> np.ndarray:
    """One-bar log returns ``log(close[t] / close[t-1])`` of a float64 close
    series (NaN at bar 0): the returns of the risk context's window."""
    close = np.asarray(close, dtype=np.float64)
    out = np.empty(close.shape[0])
    out[0] = np.nan
    np.log(close[1:] / close[:-1], out=out[1:])
    return out


def _frozen(values: object, dtype: type, name: str, ndim: int) -> np.ndarray:
    array = np.array(values, dtype=dtype, order="C", copy=True)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class MarketArrays:
    """Precomputed per-bar arrays of ONE symbol in time order (N bars).

    open, high, low, close: float64 (N,), quote currency, > 0.
    volume: float64 (N,), shares per bar, >= 0.
    features: float32 (N, F), already-scaled feature columns, finite.
    predictions: float32 (N, P), the trend model's columns for each bar
        (out-of-fold), finite.
    feature_names / prediction_names: the ordered names of those columns.
    sigma: float64 (N,) past-only per-bar vol of log returns; None -> computed
        with :func:`rolling_sigma` (NaN where too few returns; an environment
        starts after its leading NaNs).
    timestamps: optional datetime64[ns] (N,), strictly increasing.
    history_bars: leading bars (0 <= history_bars < N) that come before the
        span to be traded: known at the span's first decision, so the
        observation window and the risk layer's return history may use them,
        but never traded. An environment's first decision is then at bar
        ``history_bars - 1`` at the earliest (it fills at bar ``history_bars``,
        the span's first). 0 (default): every bar may be traded.

    All arrays are copied, made C-contiguous and read-only, so one instance can
    be shared by many environments. ``log_returns`` is derived.
    """

    symbol: str
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    predictions: np.ndarray | None = None
    prediction_names: tuple[str, ...] = DEFAULT_PREDICTION_COLUMNS
    sigma: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    history_bars: int = 0

    def __post_init__(self) -> None:
        put = object.__setattr__
        prices = {k: _frozen(getattr(self, k), np.float64, k, 1)
                  for k in ("open", "high", "low", "close", "volume")}
        n = prices["close"].shape[0]
        if n < 2:
            raise ValueError(f"need at least 2 bars, got {n}")
        for key, array in prices.items():
            if array.shape != (n,):
                raise ValueError(f"{key} has shape {array.shape}, expected ({n},)")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{key} has non-finite values")
            if key == "volume" and np.any(array < 0):
                raise ValueError("volume must be >= 0")
            if key != "volume" and np.any(array <= 0):
                raise ValueError(f"{key} prices must be > 0")
            put(self, key, array)

        feature_names = check_state_columns(self.feature_names, "feature")
        prediction_names = check_state_columns(self.prediction_names, "prediction")
        put(self, "feature_names", feature_names)
        put(self, "prediction_names", prediction_names)

        features = _frozen(self.features, np.float32, "features", 2)
        if features.shape != (n, len(feature_names)):
            raise ValueError(f"features have shape {features.shape}, expected "
                             f"({n}, {len(feature_names)}) for {len(feature_names)} names")
        if not np.all(np.isfinite(features)):
            raise ValueError("features have non-finite values (drop warm-up rows, never fill)")
        put(self, "features", features)

        if self.predictions is None:
            missing = [p for p in prediction_names if p not in NEUTRAL_PREDICTIONS]
            if missing:
                raise ValueError(f"no neutral value for prediction column(s) {missing}; "
                                 "pass the predictions")
            row = np.array([NEUTRAL_PREDICTIONS[p] for p in prediction_names], dtype=np.float32)
            predictions = np.broadcast_to(row, (n, len(row)))
        else:
            predictions = self.predictions
        predictions = _frozen(predictions, np.float32, "predictions", 2)
        if predictions.shape != (n, len(prediction_names)):
            raise ValueError(f"predictions have shape {predictions.shape}, expected "
                             f"({n}, {len(prediction_names)})")
        if not np.all(np.isfinite(predictions)):
            raise ValueError("predictions have non-finite values")
        put(self, "predictions", predictions)

        sigma = rolling_sigma(prices["close"]) if self.sigma is None else self.sigma
        sigma = _frozen(sigma, np.float64, "sigma", 1)
        if sigma.shape != (n,):
            raise ValueError(f"sigma has shape {sigma.shape}, expected ({n},)")
        finite = np.isfinite(sigma)
        first = int(np.argmax(finite)) if finite.any() else n
        if first == n or not finite[first:].all() or np.any(sigma[first:] < 0):
            raise ValueError("sigma must be >= 0 and finite after its leading warm-up NaNs")
        put(self, "sigma", sigma)

        if self.timestamps is not None:
            stamps = np.asarray(self.timestamps)
            if stamps.shape != (n,):
                raise ValueError(f"timestamps have shape {stamps.shape}, expected ({n},)")
            stamps = _frozen(stamps.astype("datetime64[ns]"), "datetime64[ns]", "timestamps", 1)
            if np.any(stamps[1:] <= stamps[:-1]):
                raise ValueError("timestamps must be strictly increasing")
            put(self, "timestamps", stamps)

        if isinstance(self.history_bars, bool) or int(self.history_bars) != self.history_bars \
                or not 0 <= self.history_bars < n:
            raise ValueError(f"history_bars must be an integer in [0, {n}), got "
                             f"{self.history_bars}")
        put(self, "history_bars", int(self.history_bars))

        returns = log_returns(prices["close"])
        returns.setflags(write=False)
        put(self, "log_returns", returns)

    def __len__(self) -> int:
        return self.close.shape[0]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_predictions(self) -> int:
        return len(self.prediction_names)

    @property
    def first_sigma_bar(self) -> int:
        """First bar whose sigma is known (earlier bars are the estimator's warm-up)."""
        return int(np.argmax(np.isfinite(self.sigma)))

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        feature_columns: Sequence[str],
        prediction_columns: Sequence[str] | None = None,
        *,
        symbol: str | None = None,
        sigma_column: str | None = None,
        vol_window: int = DEFAULT_VOL_WINDOW,
        fill_missing_predictions: bool = False,
    ) -> MarketArrays:
        """Arrays of one symbol from a long table (timestamp, symbol, OHLCV, ...).

        feature_columns: the explicit, ordered feature list (already scaled).
        prediction_columns: explicit prediction columns present in ``frame``;
            None -> :data:`DEFAULT_PREDICTION_COLUMNS` at their neutral values.
        symbol: which symbol to take when ``frame`` holds several.
        sigma_column: a past-only per-bar vol column (unscaled) for the impact
            model; None -> :func:`rolling_sigma` of the close over ``vol_window``.
        fill_missing_predictions: False (default) refuses rows without
            predictions; True sets them to the neutral values (an explicit
            choice, e.g. for the first bars the model cannot see a window for).
        """
        features = check_state_columns(feature_columns, "feature")
        predictions = (None if prediction_columns is None
                       else check_state_columns(prediction_columns, "prediction"))
        if sigma_column is not None:
            check_state_columns([sigma_column], "sigma")
        table = frame
        if "symbol" in table.columns:
            symbols = pd.unique(table["symbol"])
            if symbol is None and len(symbols) != 1:
                raise ValueError(f"frame holds {len(symbols)} symbols; pass symbol=")
            symbol = str(symbols[0]) if symbol is None else symbol
            table = table[table["symbol"] == symbol]
        elif symbol is None:
            raise ValueError("frame has no symbol column; pass symbol=")
        needed = ["open", "high", "low", "close", "volume", *features,
                  *(predictions or ()), *([sigma_column] if sigma_column else [])]
        absent = [c for c in needed if c not in table.columns]
        if absent:
            raise KeyError(f"columns not in frame: {absent}")
        if len(table) == 0:
            raise ValueError(f"no rows for symbol {symbol!r}")
        stamps = None
        if "timestamp" in table.columns:
            stamps = pd.DatetimeIndex(table["timestamp"])
            if not stamps.is_monotonic_increasing or stamps.has_duplicates:
                raise ValueError("rows must be in strictly increasing timestamp order")
            stamps = (stamps.tz_convert("UTC").tz_localize(None) if stamps.tz is not None
                      else stamps).to_numpy(dtype="datetime64[ns]")

        prediction_values = None
        if predictions is not None:
            prediction_values = table[list(predictions)].to_numpy(dtype=np.float64)
            missing = ~np.isfinite(prediction_values)
            if missing.any():
                if not fill_missing_predictions:
                    raise ValueError(f"{int(missing.any(axis=1).sum())} row(s) lack predictions; "
                                     "drop them or pass fill_missing_predictions=True")
                unknown = [p for p in predictions if p not in NEUTRAL_PREDICTIONS]
                if unknown:
                    raise ValueError(f"no neutral value for prediction column(s) {unknown}")
                neutral = np.array([NEUTRAL_PREDICTIONS[p] for p in predictions])
                prediction_values = np.where(missing, neutral[None, :], prediction_values)

        close = table["close"].to_numpy(dtype=np.float64)
        sigma = (table[sigma_column].to_numpy(dtype=np.float64) if sigma_column
                 else rolling_sigma(close, vol_window))
        return cls(
            symbol=str(symbol),
            open=table["open"].to_numpy(dtype=np.float64),
            high=table["high"].to_numpy(dtype=np.float64),
            low=table["low"].to_numpy(dtype=np.float64),
            close=close,
            volume=table["volume"].to_numpy(dtype=np.float64),
            features=table[list(features)].to_numpy(dtype=np.float32),
            feature_names=features,
            predictions=prediction_values,
            prediction_names=predictions or DEFAULT_PREDICTION_COLUMNS,
            sigma=sigma,
            timestamps=stamps,
        )
