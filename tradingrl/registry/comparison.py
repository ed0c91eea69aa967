"""Challenger vs champion on bars that are out of sample for both.

The promotion gate's ``beats_champion`` check (:mod:`tradingrl.registry.gate`)
reads a :class:`ChampionComparison`: both sides' annualised Sharpe ratios
after costs on exactly the same bars.

- The challenger's side is its out-of-fold book: the ``policy`` series of
  reports/evaluation/curves.parquet (per-bar log returns of the equal-weight
  book the walk-forward evaluation traded, each fold's block ending flat).
- The champion's side is its bundle replayed over the same bars with the
  challenger's costs and risk settings
  (:func:`tradingrl.monitoring.reference.champion_comparison`: the replay
  lives in monitoring, which builds on the registry).
- The bars: the challenger's fill timestamps strictly after the champion's
  training end (:func:`training_end`; bundles record it when they are built,
  :func:`training_section`) that both books fill at
  (:func:`comparable_bars`), so neither side has learnt from them.

Fewer than ``min_bars`` such bars, or a champion that cannot be replayed on
the challenger's symbols, make the comparison *not comparable*: its reason is
recorded and the gate's absolute checks decide. A comparable pair with an
undefined Sharpe ratio on either side fails the check (see
:func:`tradingrl.registry.gate.run_gate`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

POLICY_SERIES = "policy"


@dataclass(frozen=True)
class ChampionComparison:
    """The champion ``version`` against the challenger on the same bars.

    comparable: False when the bars both sides can be judged on are fewer
        than ``min_bars`` or the champion could not be replayed there;
        ``reason`` then says why.
    n_bars: bars in the comparison (fill timestamps, both books).
    min_bars: the least ``n_bars`` for a comparison (params
        ``promote.gate.min_comparable_bars``).
    training_end: ISO timestamp of the last bar the champion learnt from
        (None: its bundle does not say); only later bars are compared.
    first / last: ISO timestamps of the first and last compared bar.
    symbols: the symbols of both books.
    challenger_sharpe / champion_sharpe: annualised Sharpe ratios (after
        costs, ``bars_per_year``) of the two books on those bars; None when
        not computed or undefined (fewer than 2 bars, zero variance).
    replay: how the champion was replayed (costs, risk settings, code).
    """

    version: str
    comparable: bool
    reason: str
    n_bars: int
    min_bars: int
    training_end: str | None
    first: str | None = None
    last: str | None = None
    symbols: list[str] = field(default_factory=list)
    challenger_sharpe: float | None = None
    champion_sharpe: float | None = None
    bars_per_year: int = 252
    replay: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON-able (reports/promotion.json's ``champion_comparison``)."""
        return asdict(self)


def latest_utc(values: Mapping[str, Any]) -> str | None:
    """The latest of the timestamps among ``values``' values (None and ""
    skipped; naive times are UTC) as ISO-8601, or None."""
    stamps = [_utc(value) for value in values.values() if value not in (None, "")]
    return max(stamps).isoformat() if stamps else None


def training_section(config: Mapping[str, Any], env_config: Mapping[str, Any],
                     data_end: Any = None) -> dict[str, Any]:
    """A bundle's ``manifest["training"]``: ``end``, the latest of the bars
    the pieces say they learnt from (``config``, the trend model's
    config.json: ``trained_to`` and its split's validation end, which early
    stopping and calibration read; ``env_config``, the agent's: its spans'
    validation end) and ``data_end`` (the last bar, label ends included, of
    the data the pieces were trained on, as the caller knows it); None when
    nothing says. ``sources``: each of them."""
    split = dict(config.get("split") or {})
    spans = dict(env_config.get("spans") or {})
    sources = {
        "trend_model_end": latest_utc({"trained_to": config.get("trained_to"),
                                       **{k: split.get(k) for k in ("cut", "test_end")}}),
        "agent_spans_end": latest_utc(spans),
        "data_end": latest_utc({"data_end": data_end}),
    }
    return {"end": latest_utc(sources), "sources": sources}


def training_end(manifest: Mapping[str, Any]) -> tuple[pd.Timestamp | None, str]:
    """The last bar a bundle learnt from, and where that was read:
    ``manifest["training"]["end"]`` (written by
    :func:`~tradingrl.registry.bundle.build_policy_bundle`), else the last
    session of its reference window (the last sessions of its training data,
    for bundles built before the training end was recorded); (None, why)
    when neither is there."""
    recorded = (manifest.get("training") or {}).get("end")
    if recorded:
        return _utc(recorded), "policy.json training.end"
    last = (manifest.get("reference") or {}).get("last")
    if last:
        return _utc(last), "policy.json reference.last (no training end recorded)"
    return None, "the bundle records neither its training end nor a reference window"


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def challenger_series(curves: pd.DataFrame, after: pd.Timestamp) -> pd.DataFrame:
    """The challenger's out-of-fold book on the bars after ``after``: rows
    (fold, timestamp, log_return) of curves.parquet's ``policy`` series whose
    fill timestamp is strictly later, in time order."""
    missing = [c for c in ("series", "fold", "timestamp", "log_return") if c not in curves.columns]
    if missing:
        raise ValueError(f"the evaluation's curves lack column(s) {missing}")
    rows = curves[curves["series"] == POLICY_SERIES]
    stamps = pd.DatetimeIndex(rows["timestamp"])
    stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    out = pd.DataFrame({"fold": rows["fold"].to_numpy(), "timestamp": stamps,
                        "log_return": rows["log_return"].to_numpy(dtype=np.float64)})
    out = out[out["timestamp"] > _utc(after)].sort_values("timestamp", kind="stable")
    if out["timestamp"].duplicated().any():
        raise ValueError("the evaluation's policy series fills twice at one timestamp")
    return out.reset_index(drop=True)


def comparable_bars(challenger: pd.DataFrame, champion: pd.DataFrame) -> pd.DataFrame:
    """Rows (timestamp, challenger, champion) of the bars both books fill at:
    the log returns of each side, inner-joined on the fill timestamp."""
    joined = challenger[["timestamp", "log_return"]].merge(
        champion[["timestamp", "log_return"]], on="timestamp", how="inner",
        suffixes=("_challenger", "_champion"), validate="one_to_one")
    return joined.rename(columns={"log_return_challenger": "challenger",
                                  "log_return_champion": "champion"})


def book_sharpe(log_returns: Any, bars_per_year: int) -> float | None:
    """Annualised Sharpe ratio of a book's per-bar log returns (as the
    evaluation's: :func:`~tradingrl.evaluation.performance.sharpe_ratio` of
    the simple returns); None when undefined or not finite."""
    from tradingrl.evaluation.performance import sharpe_ratio

    simple = np.expm1(np.asarray(log_returns, dtype=np.float64))
    if simple.size < 2 or not np.isfinite(simple).all():
        return None
    value = float(sharpe_ratio(simple, bars_per_year=bars_per_year))  # NaN: zero variance
    return value if math.isfinite(value) else None


def not_comparable(version: str, reason: str, *, n_bars: int, min_bars: int,
                   end: pd.Timestamp | None, **extra: Any) -> ChampionComparison:
    """A :class:`ChampionComparison` that compares nothing, with its reason."""
    return ChampionComparison(version=version, comparable=False, reason=reason, n_bars=n_bars,
                              min_bars=min_bars,
                              training_end=None if end is None else end.isoformat(), **extra)


def compare_books(version: str, joined: pd.DataFrame, *, min_bars: int, bars_per_year: int,
                  end: pd.Timestamp, symbols: list[str],
                  replay: Mapping[str, Any]) -> ChampionComparison:
    """The comparison on ``joined`` (:func:`comparable_bars`): not comparable
    below ``min_bars`` bars, else both sides' Sharpe ratios."""
    n_bars = len(joined)
    span = ({"first": joined["timestamp"].min().isoformat(),
             "last": joined["timestamp"].max().isoformat()} if n_bars else {})
    common = {"n_bars": n_bars, "min_bars": min_bars, "end": end, "symbols": list(symbols),
              "bars_per_year": bars_per_year, "replay": dict(replay), **span}
    if n_bars < min_bars:
        return not_comparable(version, f"{n_bars} bars after the champion's training end "
                              f"{end.isoformat()} are out of sample for both, fewer than "
                              f"{min_bars}", **common)
    common.pop("end")
    return ChampionComparison(
        version=version, comparable=True, training_end=end.isoformat(),
        reason=f"{n_bars} bars after the champion's training end {end.isoformat()}, "
               f"{len(symbols)} symbols, the challenger's costs and risk settings",
        challenger_sharpe=book_sharpe(joined["challenger"], bars_per_year),
        champion_sharpe=book_sharpe(joined["champion"], bars_per_year), **common)
