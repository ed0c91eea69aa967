"""Combinatorial purged cross-validation (CPCV) of one CNN+LSTM configuration:
the second scoring mode of the Optuna search (:func:`tradingrl.models.search.search_hyperparameters`).

For every CPCV split (:func:`tradingrl.splits.cpcv.combinatorial_purged_splits`,
C(N, k) of them) one CNN+LSTM is fitted and scored:

- fit (:func:`tradingrl.models.cpcv_fit.fit_split_model`): only the labels
  of the split's train mask exist for the fit; early stopping and the
  temperature use the last ``val_fraction`` of those rows' timestamps, the
  scaler the earlier, purged ones. Test groups are never validated on.
- predict: every row of the split's test groups, plus each symbol's bar just
  before each test group (its decision fills at the group's first bar; its
  label reaches into the group, so the split never trained on it). One
  deterministic pass (no MC dropout: trials stay affordable), temperature
  fitted on the split's validation windows when ``temperature_scaling``.
- score: the test log loss over the labelled test rows with a prediction,
  and, per test group, the per-bar log returns of the evaluation's
  ``supervised`` baseline (:func:`tradingrl.evaluation.books.supervised_book`:
  position p_up - p_down, traded per symbol through the backtester with
  costs, equal weight across symbols). A group's returns are the fills at the
  group's bars; group 0 starts at the first bar with a full window.

The trial's value is the mean test log loss over splits; the groups' returns
are joined into the C(N-1, k-1) backtest paths (:func:`~tradingrl.splits.cpcv.cpcv_paths`)
whose Sharpe ratios (:func:`~tradingrl.evaluation.cpcv.path_sharpes`) show
how much the configuration's out-of-sample performance depends on the path.

Everything arrives as arguments (no paths, no params.yaml). Torch, Lightning
and Optuna are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tradingrl.envs.arrays import MarketArrays, rolling_sigma
from tradingrl.evaluation.books import supervised_book
from tradingrl.evaluation.cpcv import path_sharpes
from tradingrl.models.cpcv_fit import fit_split_model
from tradingrl.models.data import check_frame_order, classes_from_labels, window_end_indices
from tradingrl.models.metrics import log_loss_score
from tradingrl.models.search import CPCVSettings, cpcv_summary
from tradingrl.splits.cpcv import combinatorial_purged_splits, cpcv_paths, timestamp_groups

if TYPE_CHECKING:
    from tradingrl.models.fit import TrainSettings

# Prediction columns the backtest markets carry (the supervised baseline reads
# p_up, p_down and confidence).
MARKET_PREDICTIONS: tuple[str, ...] = ("p_down", "p_flat", "p_up", "expected_return", "confidence")
OHLCV: tuple[str, ...] = ("open", "high", "low", "close", "volume")


def aligned_bars(frame: pd.DataFrame, ohlcv: pd.DataFrame) -> pd.DataFrame:
    """OHLCV and the impact model's past-only ``sigma`` for every row of the
    feature table ``frame`` (same order, a fresh RangeIndex). ``sigma`` is
    computed on each symbol's whole ``ohlcv`` close series, as the
    evaluation's agent table does. Raises when a feature row has no bar."""

    missing = [c for c in ("timestamp", "symbol", *OHLCV) if c not in ohlcv.columns]
    if missing:
        raise ValueError(f"OHLCV table lacks columns {missing}")
    bars = ohlcv[["timestamp", "symbol", *OHLCV]].assign(
        timestamp=pd.to_datetime(ohlcv["timestamp"], utc=True))
    bars = bars.sort_values(["symbol", "timestamp"], kind="stable")
    bars["sigma"] = bars.groupby("symbol", sort=False)["close"].transform(
        lambda close: pd.Series(rolling_sigma(close.to_numpy()), index=close.index))
    keys = frame[["timestamp", "symbol"]].reset_index(drop=True)
    keys["timestamp"] = pd.to_datetime(keys["timestamp"], utc=True)
    out = keys.merge(bars, on=["timestamp", "symbol"], how="left", validate="one_to_one")
    absent = int(out["close"].isna().sum())
    if absent:
        raise ValueError(f"{absent} feature rows have no OHLCV bar (same symbol and timestamp)")
    return out


def prediction_rows(symbol_codes: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
    """Rows a split predicts: its test rows plus, per symbol, the row just
    before each run of test rows (the decision that fills at the run's first bar)."""
    test_rows = np.asarray(test_rows, dtype=bool)
    before = np.zeros_like(test_rows)
    same_symbol_next = symbol_codes[:-1] == symbol_codes[1:]
    before[:-1] = test_rows[1:] & ~test_rows[:-1] & same_symbol_next
    return test_rows | before


def group_markets(
    bars: pd.DataFrame,
    symbol_codes: np.ndarray,
    symbols: np.ndarray,
    in_group: np.ndarray,
    predictions: np.ndarray,
    predicted: np.ndarray,
) -> tuple[list[Any], list[int]]:
    """One :class:`~tradingrl.envs.arrays.MarketArrays` per symbol for one
    test group: the symbol's rows from the bar before the group (or the
    group's first bar with a prediction) to the group's last bar, with the
    split's predictions. Returns (markets, first decision bar of each): every
    market's first fill is at the latest first fill bar over the symbols, so
    the sleeves fill at the same timestamps (the evaluation's equal-weight
    book requires it; a symbol missing a bar inside the group is an error
    there). Symbols without a full window inside the group are left out.

    bars: :func:`aligned_bars` of the table; in_group: boolean mask of the
    group's rows; predictions: (rows, len(MARKET_PREDICTIONS)) float32, valid
    where ``predicted``."""

    markets, firsts = [], []
    stamps = pd.DatetimeIndex(bars["timestamp"]).tz_convert("UTC").tz_localize(None).to_numpy()
    for code in np.unique(symbol_codes[in_group]):
        rows = np.flatnonzero(in_group & (symbol_codes == code))
        start = rows[0] - 1 if rows[0] > 0 and symbol_codes[rows[0] - 1] == code else rows[0]
        span = np.arange(start, rows[-1] + 1)
        if not predicted[rows[-1]]:
            continue  # no window of this symbol is full inside the group
        first = int(np.argmax(predicted[span]))
        span = span[first:]
        if not predicted[span].all():
            raise AssertionError("predictions of a symbol's group are not contiguous")
        if span.size < 2:
            continue
        part = bars.iloc[span]
        markets.append(MarketArrays(
            symbol=str(symbols[span[0]]),
            open=part["open"].to_numpy(), high=part["high"].to_numpy(),
            low=part["low"].to_numpy(), close=part["close"].to_numpy(),
            volume=part["volume"].to_numpy(),
            features=np.zeros((span.size, 0), dtype=np.float32), feature_names=(),
            predictions=predictions[span], prediction_names=MARKET_PREDICTIONS,
            sigma=part["sigma"].to_numpy(), timestamps=stamps[span],
        ))
        firsts.append(markets[-1].first_sigma_bar)
    if markets:
        # The first fill bar common to all sleeves.
        start = max(m.timestamps[f + 1] for m, f in zip(markets, firsts, strict=True)
                    if f + 1 < len(m))
        firsts = [max(f, int(np.searchsorted(m.timestamps, start)) - 1)
                  for m, f in zip(markets, firsts, strict=True)]
    return markets, firsts


@dataclass
class SplitScore:
    """One split's out-of-sample scores: ``test_log_loss`` (nats) over
    ``rows_scored`` labelled test rows; ``group_returns`` test group -> per-bar
    log returns of the supervised book (net of costs)."""

    test_log_loss: float
    rows_scored: int
    group_returns: dict[int, np.ndarray]
    fit: dict[str, Any] = field(default_factory=dict)


@dataclass
class CPCVSearch:
    """Everything a CPCV trial needs besides its hyperparameters.

    frame: the feature table (sorted by symbol and time, with labels).
    feature_names: the model's inputs, in order.
    ohlcv: validated bars (timestamp, symbol, OHLCV) covering every row of
        ``frame``; the supervised book trades them.
    cpcv: the CPCV layout.
    env: the backtest's keyword arguments (``costs`` an ExecutionCosts,
        optionally initial_cash, fill, min_trade_fraction), as the evaluation
        passes its env kwargs.
    baselines: BaselineSettings of the supervised position (None = defaults).

    The splits and aligned bars are computed once, at construction.
    """

    frame: pd.DataFrame
    feature_names: Sequence[str]
    ohlcv: pd.DataFrame
    cpcv: CPCVSettings
    env: Mapping[str, Any] = field(default_factory=dict)
    baselines: Any = None

    def __post_init__(self) -> None:

        self.feature_names = list(self.feature_names)
        self.symbol_codes = check_frame_order(self.frame)
        self.classes = classes_from_labels(self.frame["label"])  # -100 unlabelled
        self.splits = combinatorial_purged_splits(
            self.frame["timestamp"], self.frame["t1"], n_groups=self.cpcv.n_groups,
            n_test_groups=self.cpcv.n_test_groups, embargo_bars=self.cpcv.embargo_bars)
        self.groups = timestamp_groups(self.frame["timestamp"], self.cpcv.n_groups)
        self.bars = aligned_bars(self.frame, self.ohlcv)
        self.symbols = self.frame["symbol"].to_numpy()

    def score_split(self, split: int, settings: TrainSettings, *, seed: int,
                    max_epochs: int | None = None) -> SplitScore:
        """Fit split ``split``'s model and score its test groups."""

        train, test, info = self.splits[split]
        trend, fit = fit_split_model(self.frame, self.feature_names, settings, train,
                                     seed=seed, max_epochs=max_epochs)
        rows = prediction_rows(self.symbol_codes, test)
        predicted_frame = trend.predict(self.frame, rows=rows)
        ends = window_end_indices(self.symbol_codes, rows, settings.window)
        if len(ends) != len(predicted_frame):
            raise AssertionError("predictions are not aligned with their rows")
        predictions = np.full((len(self.frame), len(MARKET_PREDICTIONS)), np.nan, np.float32)
        predictions[ends] = predicted_frame[list(MARKET_PREDICTIONS)].to_numpy(np.float32)
        predicted = np.zeros(len(self.frame), dtype=bool)
        predicted[ends] = True

        classes = self.classes
        scored = test & predicted & (classes >= 0)
        if not scored.any():
            raise ValueError(f"CPCV split {split}: no labelled test row has a full window")
        probs = predictions[scored][:, [MARKET_PREDICTIONS.index(c)
                                        for c in ("p_down", "p_flat", "p_up")]]
        loss = log_loss_score(probs.astype(np.float64), classes[scored])

        group_returns = {}
        env = dict(self.env)
        for g in info["test_groups"]:
            markets, firsts = group_markets(self.bars, self.symbol_codes, self.symbols,
                                            self.groups == g, predictions, predicted)
            if not markets:
                raise ValueError(f"CPCV group {g} has no bar with a full {settings.window}-bar "
                                 "window: use fewer groups or a shorter window")
            book = supervised_book(markets, firsts, env, self.baselines)
            group_returns[int(g)] = np.asarray(book.log_return, dtype=np.float64)
        fit = {"split": split, "test_groups": info["test_groups"], "rows_train": info["rows_train"],
               **{k: fit[k] for k in ("rows_fit", "rows_scaler_fit", "val_loss", "epochs",
                                      "temperature")}}
        return SplitScore(test_log_loss=loss, rows_scored=int(scored.sum()),
                          group_returns=group_returns, fit=fit)

    def evaluate(self, settings: TrainSettings, *, seed: int, max_epochs: int | None = None,
                 trial: Any = None) -> tuple[float, dict[str, Any]]:
        """Fit and score every split; return (mean test log loss, summary).

        With an Optuna ``trial``, the running mean test loss is reported
        after each split (``step`` = split index) and the trial is pruned
        (``optuna.TrialPruned``) when the pruner says so; the per-split
        losses so far are kept in its user attribute ``cpcv_test_log_loss``.
        The summary (:func:`cpcv_summary`) is JSON-safe."""

        losses: list[float] = []
        split_returns: list[dict[int, np.ndarray]] = []
        fits: list[dict[str, Any]] = []
        for split in range(len(self.splits)):
            score = self.score_split(split, settings, seed=seed, max_epochs=max_epochs)
            losses.append(score.test_log_loss)
            split_returns.append(score.group_returns)
            fits.append({**score.fit, "test_log_loss": score.test_log_loss,
                         "rows_scored": score.rows_scored})
            if trial is not None:
                import optuna

                trial.set_user_attr("cpcv_test_log_loss", [float(v) for v in losses])
                trial.report(float(np.mean(losses)), step=split)
                if trial.should_prune():
                    raise optuna.TrialPruned(
                        f"CPCV: running mean test log loss {np.mean(losses):.4f} after split "
                        f"{split} of {len(self.splits)}")
        paths = cpcv_paths(self.cpcv.n_groups, self.cpcv.n_test_groups)
        sharpes = path_sharpes(split_returns, paths, bars_per_year=self.cpcv.bars_per_year)
        value = float(np.mean(losses))
        return value, cpcv_summary(value, losses, sharpes, self.cpcv, fits)
