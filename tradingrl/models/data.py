"""Windows of one symbol's bars for the CNN+LSTM: split, scaler, datasets.

A sample is the window of the last ``window`` rows (bars) of one symbol ending
at row e, ``x`` of shape (window, F) with row ``window - 1`` being row e, and
the target is the label of row e (class 0 = down, 1 = flat, 2 = up; -100 =
unlabelled, ignored by the loss) with its forward log return.

Memory: windows are never materialised. The scaled features live in one
C-contiguous (N, F) float32 array shared by every dataset; an item is a view of
rows e-window+1..e, and a batch copies only itself. On 1.37M rows x 85
features that array is 0.47 GB, against ~28 GB for an N x 60 x 85 copy.

Time discipline (ARCHITECTURE.md, "Time and leakage rules"): one cut in time
across all symbols; training labels whose interval [timestamp, t1] reaches the
validation span are purged, an embargo of distinct timestamps follows each
test span, and the scaler is fit on training rows only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from tradingrl.models.classes import (  # noqa: F401  (re-exported for callers)
    CLASS_NAMES,
    CLASS_OF_LABEL,
    IGNORE_INDEX,
    LABEL_OF_CLASS,
    N_CLASSES,
)
from tradingrl.splits.purged import purged_chronological_split, utc_ns


def classes_from_labels(labels: Any) -> np.ndarray:
    """Labels -1/0/1 (NA allowed) -> int64 class indices 0/1/2, -100 for NA."""
    series = pd.Series(labels)
    known = series.notna().to_numpy()
    values = series[known].to_numpy(dtype=np.int64)
    if not np.isin(values, LABEL_OF_CLASS).all():
        raise ValueError(f"labels must be in {LABEL_OF_CLASS} or NA, got {sorted(set(values))}")
    out = np.full(len(series), IGNORE_INDEX, dtype=np.int64)
    out[known] = values + 1
    return out


def labels_from_classes(classes: Any) -> np.ndarray:
    """Class indices 0/1/2 -> int8 labels -1/0/1 (no ignore index allowed)."""
    values = np.asarray(classes, dtype=np.int64)
    if ((values < 0) | (values >= N_CLASSES)).any():
        raise ValueError(f"class indices must be in 0..{N_CLASSES - 1}")
    return (values - 1).astype(np.int8)


def inverse_frequency_weights(classes: Any) -> list[float]:
    """Weight n / (3 * n_c) per class c for int class targets (-100 ignored),
    so that sum_c n_c * w_c = n: the weighted loss keeps the unweighted scale."""
    values = np.asarray(classes, dtype=np.int64)
    values = values[values != IGNORE_INDEX]
    counts = np.bincount(values, minlength=N_CLASSES)
    if (counts == 0).any():
        missing = [CLASS_NAMES[k] for k in np.flatnonzero(counts == 0)]
        raise ValueError(
            f"every class needs at least one labelled row; none of {missing}: "
            "inverse frequency undefined"
        )
    return [float(w) for w in values.size / (N_CLASSES * counts)]


# ----------------------------------------------------------------- windows
def window_end_indices(symbols: Any, usable: Any, window: int) -> np.ndarray:
    """Row indices i (int64, ascending) with usable[i] whose rows
    i-window+1..i all belong to one contiguous run of the same symbol, so a
    window never spans two symbols. Rows are consecutive rows of the table:
    a dropped bar inside a symbol is skipped over, not padded."""
    if window < 1:
        raise ValueError(f"window must be >= 1 bar, got {window}")
    codes = pd.factorize(np.asarray(symbols))[0]
    usable = np.asarray(usable, dtype=bool)
    if usable.shape != codes.shape:
        raise ValueError(f"usable ({usable.size}) and symbols ({codes.size}) differ in length")
    n = codes.size
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if n else np.zeros(0, np.int64)
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    position_in_run = np.arange(n) - run_start
    return np.flatnonzero(usable & (position_in_run >= window - 1)).astype(np.int64)


def check_frame_order(frame: pd.DataFrame) -> np.ndarray:
    """Raise unless each symbol's rows are contiguous with strictly increasing
    timestamps (the feature table's order). Returns int64 symbol codes."""
    codes, uniques = pd.factorize(frame["symbol"])
    if (codes < 0).any():
        raise ValueError("symbol must not be missing")
    runs = 1 + int((codes[1:] != codes[:-1]).sum()) if codes.size else 0
    if runs != len(uniques):
        raise ValueError("rows of a symbol are not contiguous; sort by (symbol, timestamp)")
    ts = utc_ns(frame["timestamp"])
    same = codes[1:] == codes[:-1]
    if not (ts[1:][same] > ts[:-1][same]).all():
        raise ValueError("timestamps are not strictly increasing within a symbol")
    return codes.astype(np.int64)


# ------------------------------------------------------------------ scaler
def _feature_columns(
    data: pd.DataFrame | np.ndarray, feature_names: Sequence[str]
) -> list[np.ndarray]:
    """One 1-d array per feature, as views where the input allows."""
    if isinstance(data, pd.DataFrame):
        missing = [name for name in feature_names if name not in data.columns]
        if missing:
            raise ValueError(f"features missing from the frame: {missing[:5]}")
        return [data[name].to_numpy() for name in feature_names]
    array = np.asarray(data)
    if array.ndim != 2 or array.shape[1] != len(feature_names):
        raise ValueError(f"expected an (N, {len(feature_names)}) array, got shape {array.shape}")
    return [array[:, j] for j in range(array.shape[1])]


def _raise_nonfinite(block: np.ndarray, feature_names: Sequence[str], what: str) -> None:
    bad = [feature_names[j] for j in np.flatnonzero(~np.isfinite(block).all(axis=0))]
    raise ValueError(f"non-finite values {what} in features {bad[:5]}")


@dataclass(frozen=True, eq=False)
class FeatureScaler:
    """Per-feature standardisation z = (x - mean) / std, fit on given rows.

    mean, std: (F,) float64 in the features' own units; std is the population
    standard deviation (ddof 0), set to 1 for a feature constant on the fit
    rows (whose mean is then that constant, so it scales to exactly 0).
    n_rows: rows the statistics were computed on.
    """

    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    n_rows: int

    @classmethod
    def fit(
        cls,
        data: pd.DataFrame | np.ndarray,
        feature_names: Sequence[str],
        rows: np.ndarray | None = None,
        chunk_rows: int = 16384,
    ) -> FeatureScaler:
        """Statistics of ``feature_names`` over ``rows`` (boolean mask or
        integer positions; None = all rows), in float64 over row chunks
        (Chan's pairwise update), so no float64 N x F array is made."""
        names = tuple(feature_names)
        columns = _feature_columns(data, names)
        n_total = columns[0].size if columns else 0
        if rows is None:
            index = np.arange(n_total)
        else:
            rows = np.asarray(rows)
            index = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        if index.size == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        f = len(names)
        count, mean, m2 = 0, np.zeros(f), np.zeros(f)
        low, high = np.full(f, np.inf), np.full(f, -np.inf)
        buffer = np.empty((min(chunk_rows, index.size), f))
        for start in range(0, index.size, chunk_rows):
            part = index[start : start + chunk_rows]
            block = buffer[: part.size]
            for j, column in enumerate(columns):
                block[:, j] = column[part]
            if not np.isfinite(block).all():
                _raise_nonfinite(block, names, "on the scaler's fit rows")
            block_mean = block.mean(axis=0)
            block_m2 = ((block - block_mean) ** 2).sum(axis=0)
            total = count + part.size
            delta = block_mean - mean
            mean = mean + delta * (part.size / total)
            m2 = m2 + block_m2 + delta**2 * (count * part.size / total)
            count = total
            low, high = np.minimum(low, block.min(axis=0)), np.maximum(high, block.max(axis=0))
        std = np.sqrt(m2 / count)
        constant = low == high
        std[constant], mean[constant] = 1.0, low[constant]
        return cls(names, mean, std, int(count))

    def transform(self, data: pd.DataFrame | np.ndarray, chunk_rows: int = 16384) -> np.ndarray:
        """(N, F) C-contiguous float32 scaled features, built in row chunks
        (float64 arithmetic on one chunk at a time). Raises on non-finite input."""
        if isinstance(data, np.ndarray) and data.ndim == 2 and len(data) <= chunk_rows:
            # One small block (serving): the same float64 arithmetic, no column loop.
            if data.shape[1] != len(self.feature_names):
                raise ValueError(f"expected an (N, {len(self.feature_names)}) array, got shape "
                                 f"{data.shape}")
            block = data.astype(np.float64)
            if not np.isfinite(block).all():
                _raise_nonfinite(block, self.feature_names, f"in rows 0..{len(block) - 1}")
            block -= self.mean
            block /= self.std
            return block.astype(np.float32)
        columns = _feature_columns(data, self.feature_names)
        n = columns[0].size
        out = np.empty((n, len(columns)), dtype=np.float32)
        buffer = np.empty((min(chunk_rows, max(n, 1)), len(columns)))
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            block = buffer[: stop - start]
            for j, column in enumerate(columns):
                block[:, j] = column[start:stop]
            if not np.isfinite(block).all():
                _raise_nonfinite(block, self.feature_names, f"in rows {start}..{stop - 1}")
            block -= self.mean
            block /= self.std
            out[start:stop] = block
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable form (floats round-trip exactly)."""
        return {
            "feature_names": list(self.feature_names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "n_rows": self.n_rows,
        }

    @classmethod
    def from_dict(cls, payload: dict) -> FeatureScaler:
        names = tuple(payload["feature_names"])
        mean = np.asarray(payload["mean"], dtype=np.float64)
        std = np.asarray(payload["std"], dtype=np.float64)
        if mean.shape != (len(names),) or std.shape != (len(names),) or (std <= 0).any():
            raise ValueError("scaler payload: mean/std must be one value per feature, std > 0")
        return cls(names, mean, std, int(payload["n_rows"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> FeatureScaler:
        return cls.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------- dataset
class WindowDataset(Dataset):
    """Windows ending at ``ends`` over a shared (N, F) array; nothing copied.

    features: (N, F) float32, C-contiguous (scaled), shared by reference.
    targets: (N,) int64 class per row, -100 where unlabelled.
    returns: (N,) float32 forward log return per row (NaN where unlabelled).
    ends: (M,) int64 end rows; the caller guarantees each window stays inside
        one symbol (see :func:`window_end_indices`). ``ends[k]`` maps item k
        back to its row of the feature table.
    window: rows (bars) per sample.

    ``dataset[k]`` = (x (window, F) float32 view of rows ends[k]-window+1..
    ends[k], y int64 scalar, r float32 scalar). ``dataset.batch(ks)`` gathers
    a whole batch at once (B, window, F), copying only that batch.
    """

    def __init__(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        returns: np.ndarray,
        ends: np.ndarray,
        window: int,
    ) -> None:
        if features.dtype != np.float32 or features.ndim != 2 or not features.flags.c_contiguous:
            raise ValueError("features must be a C-contiguous (N, F) float32 array (never copied)")
        n = features.shape[0]
        self.features = features
        self.targets = np.asarray(targets, dtype=np.int64)
        self.returns = np.asarray(returns, dtype=np.float32)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.window = int(window)
        if self.targets.shape != (n,) or self.returns.shape != (n,):
            raise ValueError(f"targets and returns must have shape ({n},)")
        if self.window < 1:
            raise ValueError(f"window must be >= 1 bar, got {window}")
        if self.ends.size and (self.ends.min() < self.window - 1 or self.ends.max() >= n):
            raise ValueError(f"window ends must lie in [{self.window - 1}, {n - 1}]")
        self._offsets = np.arange(1 - self.window, 1, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ends.size)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = int(self.ends[k])
        x = torch.from_numpy(self.features[e - self.window + 1 : e + 1])
        return x, torch.tensor(self.targets[e]), torch.tensor(self.returns[e])

    def batch(
        self, positions: Sequence[int] | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items ``positions`` as (x (B, window, F), y (B,), r (B,))."""
        ends = self.ends[np.asarray(positions, dtype=np.int64)]
        x = self.features[ends[:, None] + self._offsets]
        y, r = self.targets[ends], self.returns[ends]
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(r)


class _WholeBatches(Dataset):
    """Lets a DataLoader fetch a batch with one gather (``__getitems__``)
    instead of ``batch_size`` item calls and a stack: ~3 us against ~15 us per
    window (85 features, window 60, CPU). Samplers, shuffling and Lightning's
    sampler injection work as for any map-style dataset."""

    def __init__(self, windows: WindowDataset) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.windows[k]

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.windows.batch(positions)


def _batch_as_is(batch: Any) -> Any:
    # Module level (not a lambda) so worker processes can pickle it.
    return batch


def window_loader(
    windows: WindowDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """DataLoader of (x (B, window, F), y (B,), r (B,)) batches. Shuffled
    loaders draw their order from a generator seeded with ``seed``, so the
    same seed gives the same batches (each epoch a new permutation)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        _WholeBatches(windows),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        collate_fn=_batch_as_is,
        persistent_workers=num_workers > 0,
    )


def _frame_targets(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(class targets int64 with -100, forward returns float32) of a feature table."""
    targets = classes_from_labels(frame["label"])
    if not np.array_equal(targets != IGNORE_INDEX, frame["t1"].notna().to_numpy()):
        raise ValueError("label and t1 must be missing on the same rows")
    return targets, frame["fwd_return"].to_numpy(dtype=np.float32)


def window_dataset_from_frame(
    frame: pd.DataFrame, scaler: FeatureScaler, window: int, rows: np.ndarray | None = None
) -> WindowDataset:
    """Every window of ``frame`` (a feature table) scaled with a fitted
    ``scaler``, ending at the rows of the boolean mask ``rows`` (None = all),
    labelled or not: for inference on any span. Item k is row ``ends[k]``."""
    codes = check_frame_order(frame)
    targets, returns = _frame_targets(frame)
    usable = np.ones(len(frame), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    ends = window_end_indices(codes, usable, window)
    return WindowDataset(scaler.transform(frame), targets, returns, ends, window)


class FeatureWindowDataModule(L.LightningDataModule):
    """Train/validation windows of a feature table with a purged chronological split.

    frame: the feature table (contract in :mod:`tradingrl.features.contract`),
        sorted by (symbol, timestamp). ``setup`` drops the module's reference
        to it, so the caller can free the frame afterwards.
    feature_names: model inputs, in order (never "every numeric column").
    window: bars per sample; val_fraction: fraction of distinct timestamps
        at the end held out; embargo_bars: distinct timestamps embargoed after
        the validation span; batch_size: windows per batch; seed: shuffling.

    ``setup`` (idempotent): split with :func:`purged_chronological_split`;
    fit the scaler on exactly the training rows of that split (timestamp <
    cut, label known, t1 < cut; purged rows excluded); scale every row once
    into a shared (N, F) float32 array; training windows end at training
    rows, validation windows at labelled rows with timestamp >= cut. Windows
    never cross symbols; a validation window's earlier rows may lie before
    the cut (features only: they use bars <= its end).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        feature_names: Sequence[str],
        *,
        window: int = 60,
        val_fraction: float = 0.2,
        embargo_bars: int = 0,
        batch_size: int = 512,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if window < 1 or batch_size < 1 or num_workers < 0:
            raise ValueError("window and batch_size must be >= 1, num_workers >= 0")
        if not feature_names:
            raise ValueError("feature_names must not be empty")
        self.frame: pd.DataFrame | None = frame
        self.feature_names = tuple(feature_names)
        self.window, self.val_fraction, self.embargo_bars = window, val_fraction, embargo_bars
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.scaler: FeatureScaler | None = None
        self.split_info: dict = {}
        self.train_dataset: WindowDataset | None = None
        self.val_dataset: WindowDataset | None = None
        self._symbol_codes: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        frame = self.frame
        if frame is None:
            raise RuntimeError("no frame to set up from")
        codes = check_frame_order(frame)
        targets, returns = _frame_targets(frame)
        train_rows, val_rows, info = purged_chronological_split(
            frame["timestamp"], frame["t1"],
            val_fraction=self.val_fraction, embargo_bars=self.embargo_bars,
        )
        self.scaler = FeatureScaler.fit(frame, self.feature_names, rows=train_rows)
        features = self.scaler.transform(frame)
        train_ends = window_end_indices(codes, train_rows, self.window)
        val_ends = window_end_indices(codes, val_rows & (targets != IGNORE_INDEX), self.window)
        if train_ends.size == 0 or val_ends.size == 0:
            raise ValueError(
                f"{train_ends.size} training and {val_ends.size} validation windows of "
                f"{self.window} bars: too little data for this split"
            )
        self.train_dataset = WindowDataset(features, targets, returns, train_ends, self.window)
        self.val_dataset = WindowDataset(features, targets, returns, val_ends, self.window)
        self.split_info = {
            **info,
            "window": self.window,
            "rows_scaler_fit": self.scaler.n_rows,
            "windows_train": int(train_ends.size),
            "windows_val": int(val_ends.size),
        }
        self._symbol_codes = codes
        self.frame = None

    def _require_setup(self) -> tuple[WindowDataset, WindowDataset]:
        if self.train_dataset is None or self.val_dataset is None:
            raise RuntimeError("call setup() first")
        return self.train_dataset, self.val_dataset

    def class_weights(self) -> list[float]:
        """Inverse class frequency over the training windows' targets
        (down, flat, up); see :func:`inverse_frequency_weights`."""
        train, _ = self._require_setup()
        return inverse_frequency_weights(train.targets[train.ends])

    def train_dataloader(self) -> DataLoader:
        train, _ = self._require_setup()
        return window_loader(train, self.batch_size, shuffle=True, seed=self.seed,
                             num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        _, val = self._require_setup()
        return window_loader(val, self.batch_size, num_workers=self.num_workers)

    def all_windows_dataset(self, rows: np.ndarray | None = None) -> WindowDataset:
        """Every window (labelled or not) ending at the boolean mask ``rows``
        of the set-up table (None = all rows), sharing the scaled array."""
        train, _ = self._require_setup()
        assert self._symbol_codes is not None
        usable = np.ones(train.features.shape[0], bool) if rows is None else np.asarray(rows, bool)
        ends = window_end_indices(self._symbol_codes, usable, self.window)
        return WindowDataset(train.features, train.targets, train.returns, ends, self.window)
