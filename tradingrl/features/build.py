"""Turn validated bars into the feature table, one symbol at a time.

Per symbol (never across symbol boundaries): features from
:func:`feature_block`, labels from :func:`forward_labels`, then the first
``warmup_bars`` rows are dropped (not filled) and so are later rows whose
features are not finite (e.g. a ratio over a stretch of zero volume); every
dropped row is counted in the report.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from tradingrl.features.labels import LabelSpec, forward_labels
from tradingrl.features.technical import FEATURE_COLUMNS, MIN_WARMUP_BARS


class FeatureBlock(NamedTuple):
    """One symbol's features as the feature table keeps them.

    values: (N, F) float32, every bar, :data:`FEATURE_COLUMNS` order (the
        table's dtype; NaN where undefined).
    kept: (N,) bool, the bars that become table rows: past the warm-up and
        every feature finite in float32.
    nonfinite: (F,) int64, per feature, the bars after the warm-up where it
        is not finite (the report's accounting).
    """

    values: np.ndarray
    kept: np.ndarray
    nonfinite: np.ndarray


def feature_block(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                  volume: np.ndarray, warmup_bars: int) -> FeatureBlock:
    """Features of one symbol's bars (time order) and which bars the table
    keeps: the rule the features stage and the served policy share.

    The values come from :func:`~tradingrl.features.fast_features.feature_matrix`,
    the one-pass numba kernel, not from the ``ta``/pandas reference
    :func:`~tradingrl.features.technical.compute_features`: much faster on a
    serving window (benchmarks/bench_feature_kernel.py), and tested equal to
    the reference (identical NaN pattern, values to the last bit except ~1e-15
    relative in a few log columns; tests/unit/test_fast_features.py)."""
    from tradingrl.features.fast_features import feature_matrix

    values = feature_matrix(open_, high, low, close, volume).astype(np.float32)
    finite_cells = np.isfinite(values[warmup_bars:])
    kept = np.zeros(len(values), dtype=bool)
    kept[warmup_bars:] = finite_cells.all(axis=1)
    return FeatureBlock(values, kept, (~finite_cells).sum(axis=0))


def build_feature_table(
    bars: pd.DataFrame, label_spec: LabelSpec, warmup_bars: int = 120
) -> tuple[pd.DataFrame, dict]:
    """Features + labels for validated ``bars`` (long format, sorted by symbol
    and time). Returns (table in :func:`feature_schema` layout, report)."""
    if warmup_bars < MIN_WARMUP_BARS:
        raise ValueError(f"warmup_bars must be >= {MIN_WARMUP_BARS}, got {warmup_bars}")
    parts: list[pd.DataFrame] = []
    per_symbol: dict[str, dict] = {}
    nonfinite_by_feature = np.zeros(len(FEATURE_COLUMNS), dtype=np.int64)
    for symbol, group in bars.groupby("symbol", sort=True):
        group = group.sort_values("timestamp")
        stamps = group["timestamp"].reset_index(drop=True)
        arrays = [group[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close", "volume")]
        block = feature_block(*arrays, warmup_bars=warmup_bars)
        labels = forward_labels(stamps, arrays[0], arrays[3], label_spec)
        table = pd.concat(
            [pd.DataFrame({"timestamp": stamps, "symbol": str(symbol)}),
             pd.DataFrame(block.values, columns=list(FEATURE_COLUMNS), copy=False), labels],
            axis=1,
        )
        nonfinite_by_feature += block.nonfinite
        kept = table[block.kept]
        warmup_dropped = min(len(group), warmup_bars)
        per_symbol[str(symbol)] = {
            "bars": len(group),
            "warmup_dropped": warmup_dropped,
            "nonfinite_dropped": len(group) - warmup_dropped - len(kept),
            "rows": len(kept),
        }
        parts.append(kept)
    if not parts:
        raise ValueError("no bars to build features from")
    out = pd.concat(parts, ignore_index=True)
    worst = {
        FEATURE_COLUMNS[j]: int(nonfinite_by_feature[j])
        for j in np.argsort(-nonfinite_by_feature, kind="stable")[:5]
        if nonfinite_by_feature[j] > 0
    }
    if out.empty:
        after = sum(max(0, s["bars"] - warmup_bars) for s in per_symbol.values())
        detail = (
            f"all {after} rows after warm-up have undefined features, most often "
            + ", ".join(f"{name} ({count})" for name, count in worst.items())
            + " (constant prices or zero volume?)"
            if after
            else f"every symbol has at most {warmup_bars} bars (features.warmup_bars)"
        )
        raise ValueError(f"no feature rows left: {detail}")
    labelled = out["label"].dropna()
    report = {
        "rows_in": len(bars),
        "rows_out": len(out),
        "rows_warmup_dropped": sum(s["warmup_dropped"] for s in per_symbol.values()),
        "rows_nonfinite_dropped": sum(s["nonfinite_dropped"] for s in per_symbol.values()),
        "rows_labelled": len(labelled),
        "nonfinite_by_feature": worst,
        "n_features": len(FEATURE_COLUMNS),
        "features": list(FEATURE_COLUMNS),
        "label": {
            "horizon": label_spec.horizon,
            "threshold_mode": label_spec.threshold_mode,
            "threshold": label_spec.threshold,
            "distribution": {str(k): int(v) for k, v in labelled.value_counts().sort_index().items()},
        },
        "warmup_bars": warmup_bars,
        "per_symbol": per_symbol,
    }
    accounted = report["rows_out"] + report["rows_warmup_dropped"] + report["rows_nonfinite_dropped"]
    if accounted != report["rows_in"]:  # a bug in this function, never in the data
        raise AssertionError(f"feature row accounting broken: {report['rows_in']} != {accounted}")
    return out, report
