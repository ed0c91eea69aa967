"""Look-ahead and warm-up checks for features, built-in or a researcher's own.

A feature function takes one symbol's bars (a DataFrame with ``open``,
``high``, ``low``, ``close``, ``volume`` in time order, a RangeIndex) and
returns a DataFrame of named float columns with the same rows. Two checks
run on every column, on synthetic bars:

- **Past-only.** For each cut bar ``t`` in :data:`CUTS`, every bar after
  ``t`` is replaced by another path (joined at bar ``t``'s close, with
  three times the volume) and the feature recomputed. A past-only value at
  any bar ``<= t`` is then bit for bit the same (NaN where it was NaN). The
  earliest bar whose value changed is where the feature read the future.
  Exact equality, not a tolerance: a causal computation sees the same
  inputs in the same order, so it gives the same bits; a tolerance would
  let a small leak (a whole-series mean of a long series) through.
- **Warm-up.** The first bar with a finite value ("defined from"), and how
  long the values depend on where the series starts: the feature is
  recomputed on the bars from :data:`RESTART` on and compared with the
  full series' values on the same bars. A finite window agrees exactly once
  it is full; a recursive indicator seeded at the first bar (an EMA, Wilder
  smoothing) converges gradually and is reported with the bars it needs to
  agree within :data:`CONVERGED` of the column's spread. Longer than the
  features stage's ``warmup_bars`` is a warning, not a failure.

freqtrade's ``lookahead-analysis`` and ``recursive-analysis`` do the same for
strategies; this module runs on the feature functions themselves, so it
needs no backtest and names the first leaking bar.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

FeatureFunction = Callable[[pd.DataFrame], pd.DataFrame]

N_BARS = 700
CUTS: tuple[int, ...] = (0, 5, 20, 60, 150, 300, 500, 698)
RESTART = 200
CONVERGED = 1e-6
PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class FeatureCheck:
    """The verdict on one column."""

    name: str
    leak_bar: int | None      # first bar whose value changed with later bars; None: past-only
    leak_cut: int | None      # the cut bar whose later bars changed it
    defined_from: int | None  # first bar with a finite value; None: never finite
    start_independent_after: int | None  # bars after a restart until values agree; None: never
    exact_window: bool        # agreement is exact (a finite window), not a convergence

    @property
    def past_only(self) -> bool:
        return self.leak_bar is None

    def line(self, warmup_bars: int | None = None) -> str:
        """One verdict line: ``ok``, ``warn`` (warm-up longer than
        ``warmup_bars``, or never start-independent) or ``LEAK``."""
        if not self.past_only:
            return (f"LEAK  {self.name}: reads the future: its value at bar {self.leak_bar} "
                    f"changed when the bars after bar {self.leak_cut} changed")
        defined = ("never finite" if self.defined_from is None
                   else f"defined from bar {self.defined_from}")
        if self.start_independent_after is None:
            warm = f"still depends on where the series starts after {N_BARS - RESTART} bars"
        elif self.exact_window:
            warm = f"start-independent after {self.start_independent_after} bars"
        elif self.defined_from is not None and self.start_independent_after <= self.defined_from + 1:
            warm = f"start-independent after {self.start_independent_after} bars (to rounding)"
        else:
            warm = (f"recursive: within {CONVERGED:g} of its spread of a longer history after "
                    f"{self.start_independent_after} bars")
        needs = self.start_independent_after
        short = needs is None or (warmup_bars is not None and needs > warmup_bars)
        status = "warn" if short or self.defined_from is None else "ok  "
        tail = (f" (features.warmup_bars is {warmup_bars})"
                if short and warmup_bars is not None else "")
        return f"{status}  {self.name}: past-only; {defined}; {warm}{tail}"


def check_bars(n_bars: int = N_BARS, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two synthetic paths of one symbol's bars (the generator's first two
    symbols): the bars the features are checked on, and the other path that
    replaces their future."""
    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market

    market = generate_market(SyntheticMarketConfig(n_symbols=2, n_bars=n_bars, seed=seed))
    first, second = (frame.reset_index(drop=True)[["open", "high", "low", "close", "volume"]]
                     for _, frame in market.groupby("symbol", sort=True))
    return first, second


def _replace_future(bars: pd.DataFrame, other: pd.DataFrame, cut: int) -> pd.DataFrame:
    """``bars`` up to ``cut``, then ``other``'s path rescaled to start from
    bar ``cut``'s close, with three times its volume."""
    out = bars.copy()
    scale = bars["close"].iloc[cut] / other["close"].iloc[cut]
    later = slice(cut + 1, None)
    for column in PRICE_COLUMNS:
        out.loc[out.index[later], column] = other[column].iloc[later].to_numpy() * scale
    out.loc[out.index[later], "volume"] = other["volume"].iloc[later].to_numpy() * 3.0
    return out


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: equal bits, or both NaN."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _values(function: FeatureFunction, bars: pd.DataFrame) -> pd.DataFrame:
    out = function(bars.reset_index(drop=True))
    if not isinstance(out, pd.DataFrame):
        raise TypeError(f"a feature function returns a DataFrame of named columns, "
                        f"got {type(out).__name__}")
    if len(out) != len(bars):
        raise ValueError(f"a feature function returns one row per bar: {len(out)} rows "
                         f"for {len(bars)} bars")
    return out.reset_index(drop=True).astype(float)


def check_function(function: FeatureFunction, bars: pd.DataFrame | None = None,
                   other: pd.DataFrame | None = None) -> list[FeatureCheck]:
    """Both checks (module docstring) on every column ``function`` returns,
    in its column order."""
    if bars is None or other is None:
        bars, other = check_bars()
    n = len(bars)
    base = _values(function, bars)
    values = base.to_numpy()
    columns = list(base.columns)
    leak_bar: dict[int, int] = {}
    leak_cut: dict[int, int] = {}
    for cut in (c for c in CUTS if c < n - 1):
        changed = _values(function, _replace_future(bars, other, cut)).reindex(
            columns=columns).to_numpy()
        differs = ~_same(values[:cut + 1], changed[:cut + 1])
        for j in np.flatnonzero(differs.any(axis=0)):
            first = int(np.argmax(differs[:, j]))
            if j not in leak_bar or first < leak_bar[j]:
                leak_bar[j], leak_cut[j] = first, cut
    restarted = _values(function, bars.iloc[RESTART:]).reindex(columns=columns).to_numpy()
    tail = values[RESTART:]
    checks = []
    for j, name in enumerate(columns):
        finite = np.flatnonzero(np.isfinite(values[:, j]))
        spread = np.nanstd(values[:, j]) if finite.size else 0.0
        exact = _same(tail[:, j], restarted[:, j])
        close = exact | (np.abs(tail[:, j] - restarted[:, j]) <= CONVERGED * max(spread, 1e-12))
        agrees = _agrees_from(close)
        checks.append(FeatureCheck(
            name=str(name), leak_bar=leak_bar.get(j), leak_cut=leak_cut.get(j),
            defined_from=int(finite[0]) if finite.size else None,
            start_independent_after=agrees,
            exact_window=agrees is not None and _agrees_from(exact) == agrees))
    return checks


def _agrees_from(agree: np.ndarray) -> int | None:
    """The first index from which every later entry of ``agree`` is True."""
    bad = np.flatnonzero(~agree)
    if bad.size == 0:
        return 0
    first = int(bad[-1]) + 1
    return first if first < agree.size else None


def builtin_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's own 85 features (:func:`~tradingrl.features.fast_features.feature_matrix`)."""
    from tradingrl.features.fast_features import feature_matrix
    from tradingrl.features.technical import FEATURE_COLUMNS

    with np.errstate(divide="ignore", invalid="ignore"):
        values = feature_matrix(*(bars[c].to_numpy() for c in (*PRICE_COLUMNS, "volume")))
    values[~np.isfinite(values)] = np.nan
    return pd.DataFrame(values, columns=list(FEATURE_COLUMNS))


def load_function(spec: str) -> FeatureFunction:
    """``package.module:function`` -> the function (a one-line error otherwise)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{spec!r}: name a feature function as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{spec!r}: cannot import {module_name}: {error}") from None
    function = getattr(module, attribute, None)
    if function is None:
        raise ValueError(f"{spec!r}: {module_name} has no {attribute}")
    if not callable(function):
        raise TypeError(f"{spec!r}: {module_name}.{attribute} is not a function")
    return function
