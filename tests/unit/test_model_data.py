"""Model data: purged split, training-only scaler, lazy windows inside one symbol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tradingrl.models.data import (
    IGNORE_INDEX,
    FeatureScaler,
    FeatureWindowDataModule,
    WindowDataset,
    check_frame_order,
    classes_from_labels,
    inverse_frequency_weights,
    labels_from_classes,
    window_dataset_from_frame,
    window_end_indices,
    window_loader,
)
from tradingrl.splits.purged import purged_chronological_split, purged_split

FEATURES = ("f0", "f1", "f2", "f3")
HORIZON = 3
DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2024-01-01", tz="UTC")


def toy_table(lengths: dict[str, int] | None = None, seed: int = 0) -> pd.DataFrame:
    """Feature table layout: symbols start on different days; the last
    HORIZON rows of each symbol are unlabelled; t1 = timestamp HORIZON rows on."""
    lengths = lengths or {"AAA": 40, "BBB": 25, "CCC": 55}
    rng = np.random.default_rng(seed)
    parts = []
    for offset, (symbol, n) in enumerate(sorted(lengths.items())):
        stamps = pd.date_range(START + offset * DAY, periods=n, freq="D")
        part = pd.DataFrame({"timestamp": stamps, "symbol": symbol})
        for j, name in enumerate(FEATURES):
            part[name] = (rng.normal(10.0 * j, 1.0 + j, n)).astype(np.float32)
        labelled = np.arange(n) < n - HORIZON
        part["fwd_return"] = np.where(labelled, rng.normal(0, 0.02, n), np.nan)
        label = pd.array(rng.integers(-1, 2, n), dtype="Int8")
        label[~labelled] = pd.NA
        part["label"] = label
        t1 = pd.Series(stamps).shift(-HORIZON)
        part["t1"] = t1.to_numpy()
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def module(frame: pd.DataFrame, **kwargs) -> FeatureWindowDataModule:
    options = {"window": 5, "val_fraction": 0.25, "batch_size": 8, "seed": 0} | kwargs
    dm = FeatureWindowDataModule(frame, FEATURES, **options)
    dm.setup("fit")
    return dm


# ------------------------------------------------------------------ labels
def test_label_class_mapping_round_trip_and_na():
    labels = pd.array([-1, 0, 1, pd.NA, 1], dtype="Int8")
    classes = classes_from_labels(labels)
    assert classes.tolist() == [0, 1, 2, IGNORE_INDEX, 2]
    assert labels_from_classes(classes[[0, 1, 2, 4]]).tolist() == [-1, 0, 1, 1]
    with pytest.raises(ValueError):
        classes_from_labels([2, 0])
    with pytest.raises(ValueError):
        labels_from_classes([IGNORE_INDEX])


# ------------------------------------------------------------------ splits
def test_purge_drops_label_reaching_validation_and_keeps_one_just_before():
    stamps = pd.date_range(START, periods=10, freq="D")
    cut = stamps[8]  # val_fraction 0.2 of 10 timestamps -> last 2
    t1 = pd.Series(stamps + 2 * DAY)
    t1[5] = cut  # ends exactly at the first validation bar: purged
    t1[6] = cut - pd.Timedelta(nanoseconds=1)  # ends just before it: kept
    t1[7] = cut - pd.Timedelta(nanoseconds=1)
    t1[8:] = pd.NaT
    train, val, info = purged_chronological_split(stamps, t1, val_fraction=0.2)
    assert info["cut"] == cut.isoformat()
    assert val.tolist() == [False] * 8 + [True] * 2
    assert not train[5] and train[6] and train[7]
    # rows 0..4 end at most at stamps[6] < cut
    assert train[:5].all()
    assert info["rows_purged"] == 1 and info["rows_train"] == 7


def test_embargo_excludes_distinct_timestamps_after_test_span():
    stamps = pd.date_range(START, periods=20, freq="D")
    # two symbols; B misses day 12, so distinct timestamps count over all rows
    a = pd.DataFrame({"timestamp": stamps, "t1": stamps + DAY})
    b = a.drop(index=12)
    table = pd.concat([a, b], ignore_index=True)
    test_start, test_end = stamps[8], stamps[10]
    train, test, info = purged_split(table["timestamp"], table["t1"], test_start, test_end, 3)
    ts = table["timestamp"]
    assert (test == ((ts >= test_start) & (ts <= test_end)).to_numpy()).all()
    embargoed = ts.isin(stamps[11:14]).to_numpy()
    assert not train[embargoed].any()
    assert train[ts.isin(stamps[14:]).to_numpy()].all()
    assert info["rows_embargoed"] == 2 + 1 + 2  # day 12 only for A
    assert info["embargo_end"] == stamps[13].isoformat()
    # day 7 ends on day 8 (in the test span): purged in both symbols
    assert not train[ts.eq(stamps[7]).to_numpy()].any() and info["rows_purged"] == 2
    no_embargo, _, _ = purged_split(table["timestamp"], table["t1"], test_start, test_end, 0)
    assert no_embargo[embargoed].all()


def test_split_rejects_impossible_fraction():
    stamps = pd.date_range(START, periods=3, freq="D")
    with pytest.raises(ValueError):
        purged_chronological_split(stamps, stamps + DAY, val_fraction=0.1)
    with pytest.raises(ValueError):
        purged_chronological_split(stamps, stamps + DAY, val_fraction=1.0)


# ------------------------------------------------------------------ scaler
def training_rows(frame: pd.DataFrame, cut: pd.Timestamp) -> np.ndarray:
    return ((frame["timestamp"] < cut) & frame["t1"].notna() & (frame["t1"] < cut)).to_numpy()


def test_scaler_uses_training_rows_only():
    frame = toy_table()
    dm = module(frame)
    cut = pd.Timestamp(dm.split_info["cut"])
    rows = training_rows(frame, cut)
    expected = frame.loc[rows, list(FEATURES)].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(dm.scaler.mean, expected.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dm.scaler.std, expected.std(axis=0), rtol=1e-12)
    assert dm.scaler.n_rows == rows.sum() == dm.split_info["rows_train"]

    shifted = frame.copy()
    later = ~rows  # validation rows and purged rows
    shifted.loc[later, list(FEATURES)] = shifted.loc[later, list(FEATURES)] * 1000 + 7
    other = module(shifted)
    np.testing.assert_array_equal(other.scaler.mean, dm.scaler.mean)
    np.testing.assert_array_equal(other.scaler.std, dm.scaler.std)


def test_chunked_fit_matches_one_pass_and_json_round_trip(tmp_path):
    frame = toy_table()
    rows = np.arange(0, len(frame), 3)
    small = FeatureScaler.fit(frame, FEATURES, rows=rows, chunk_rows=7)
    whole = FeatureScaler.fit(frame, FEATURES, rows=rows, chunk_rows=10_000)
    np.testing.assert_allclose(small.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(small.std, whole.std, rtol=1e-12)
    path = tmp_path / "scaler.json"
    small.save(path)
    loaded = FeatureScaler.load(path)
    assert loaded.feature_names == FEATURES and loaded.n_rows == rows.size
    np.testing.assert_array_equal(loaded.mean, small.mean)
    np.testing.assert_array_equal(loaded.std, small.std)
    scaled = loaded.transform(frame, chunk_rows=11)
    assert scaled.dtype == np.float32 and scaled.flags.c_contiguous
    np.testing.assert_array_equal(scaled, small.transform(frame))
    expected = (frame[list(FEATURES)].to_numpy(np.float64) - small.mean) / small.std
    np.testing.assert_allclose(scaled, expected, rtol=1e-6, atol=1e-6)


def test_constant_feature_scales_to_finite_zero():
    frame = toy_table()
    frame["f2"] = np.float32(0.1)
    scaler = FeatureScaler.fit(frame, FEATURES, rows=np.arange(50))
    scaled = scaler.transform(frame)
    assert np.isfinite(scaled).all()
    assert scaler.std[2] == 1.0 and (scaled[:, 2] == 0.0).all()


def test_scaler_refuses_nonfinite_fit_rows():
    frame = toy_table()
    frame.loc[3, "f1"] = np.nan
    with pytest.raises(ValueError, match="f1"):
        FeatureScaler.fit(frame, FEATURES)


# ----------------------------------------------------------------- windows
def test_windows_never_span_two_symbols():
    symbols = np.array(["A"] * 7 + ["B"] * 3 + ["C"] * 12)
    usable = np.ones(symbols.size, dtype=bool)
    usable[20] = False
    window = 4
    ends = window_end_indices(symbols, usable, window)
    brute = [
        i for i in range(symbols.size)
        if usable[i] and i >= window - 1 and len(set(symbols[i - window + 1 : i + 1])) == 1
    ]
    assert ends.tolist() == brute
    assert ends.tolist() == [3, 4, 5, 6, 13, 14, 15, 16, 17, 18, 19, 21]  # none in B (3 rows)
    for e in ends:
        rows = np.arange(e - window + 1, e + 1)
        assert (symbols[rows] == symbols[e]).all()
    assert window_end_indices(symbols, usable, 1).tolist() == np.flatnonzero(usable).tolist()


def test_window_is_exact_slice_of_scaled_array_ending_at_its_row():
    frame = toy_table()
    dm = module(frame)
    scaled = dm.scaler.transform(frame)
    targets = classes_from_labels(frame["label"])
    for dataset in (dm.train_dataset, dm.val_dataset):
        for k in (0, len(dataset) // 2, len(dataset) - 1):
            x, y, r = dataset[k]
            e = int(dataset.ends[k])
            assert x.shape == (5, len(FEATURES)) and x.dtype == torch.float32
            np.testing.assert_array_equal(x.numpy(), scaled[e - 4 : e + 1])
            np.testing.assert_array_equal(x[-1].numpy(), scaled[e])
            assert frame["symbol"].iloc[e - 4 : e + 1].nunique() == 1
            assert y.dtype == torch.int64 and int(y) == targets[e]
            assert float(r) == np.float32(frame["fwd_return"].iloc[e])
    xb, yb, rb = dm.train_dataset.batch([0, 3])
    np.testing.assert_array_equal(xb[1].numpy(), dm.train_dataset[3][0].numpy())
    assert yb.tolist() == [int(dm.train_dataset[0][1]), int(dm.train_dataset[3][1])]
    assert rb.tolist() == [float(dm.train_dataset[0][2]), float(dm.train_dataset[3][2])]


def test_dataset_item_is_a_view_of_the_shared_array():
    dm = module(toy_table())
    train, val = dm.train_dataset, dm.val_dataset
    assert train.features is val.features
    x, _, _ = train[2]
    e = int(train.ends[2])
    assert np.shares_memory(x.numpy(), train.features)
    assert x.data_ptr() == train.features.ctypes.data + (e - 4) * train.features.strides[0]
    with pytest.raises(ValueError):
        as_float64 = train.features.astype(np.float64)
        WindowDataset(as_float64, train.targets, train.returns, train.ends, 5)


def test_unlabelled_rows_are_never_training_or_validation_ends():
    frame = toy_table()
    dm = module(frame)
    unlabelled = np.flatnonzero(frame["label"].isna().to_numpy())
    for dataset in (dm.train_dataset, dm.val_dataset):
        assert (dataset.targets[dataset.ends] != IGNORE_INDEX).all()
        assert not np.isin(dataset.ends, unlabelled).any()
        assert np.isfinite(dataset.returns[dataset.ends]).all()
    cut = pd.Timestamp(dm.split_info["cut"])
    assert (frame["timestamp"].iloc[dm.train_dataset.ends] < cut).all()
    assert (frame["t1"].iloc[dm.train_dataset.ends] < cut).all()
    assert (frame["timestamp"].iloc[dm.val_dataset.ends] >= cut).all()
    everything = dm.all_windows_dataset()
    assert np.isin(unlabelled, everything.ends).all()
    assert len(everything) == sum(n - 4 for n in (40, 25, 55))
    same = window_dataset_from_frame(frame, dm.scaler, 5)
    np.testing.assert_array_equal(same.ends, everything.ends)
    np.testing.assert_array_equal(same.features, everything.features)


def test_frame_order_is_checked():
    frame = toy_table()
    with pytest.raises(ValueError, match="contiguous"):
        check_frame_order(frame.sample(frac=1.0, random_state=0))
    swapped = frame.copy()
    swapped.loc[[1, 2], "timestamp"] = swapped.loc[[2, 1], "timestamp"].to_numpy()
    with pytest.raises(ValueError, match="increasing"):
        check_frame_order(swapped)


# ----------------------------------------------------------- loaders, weights
def batches(loader, n: int) -> list[tuple[torch.Tensor, ...]]:
    out = []
    for i, batch in enumerate(loader):
        if i == n:
            break
        out.append(batch)
    return out


def test_train_loader_is_deterministic_for_a_seed():
    frame = toy_table()
    first = batches(module(frame, seed=3).train_dataloader(), 3)
    again = batches(module(frame, seed=3).train_dataloader(), 3)
    other = batches(module(frame, seed=4).train_dataloader(), 3)
    for (xa, ya, ra), (xb, yb, rb) in zip(first, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ra, rb)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    x, y, r = first[0]
    assert x.shape == (8, 5, len(FEATURES)) and y.shape == (8,) and r.shape == (8,)


def test_val_loader_keeps_time_order_and_covers_every_window():
    dm = module(toy_table())
    ys = torch.cat([y for _, y, _ in dm.val_dataloader()])
    expected = dm.val_dataset.targets[dm.val_dataset.ends]
    assert ys.tolist() == expected.tolist()


def test_class_weights_inverse_frequency():
    weights = inverse_frequency_weights([0] + [1] * 2 + [2] * 4 + [IGNORE_INDEX] * 5)
    np.testing.assert_allclose(weights, [7 / 3, 7 / 6, 7 / 12])
    assert weights[0] / weights[2] == pytest.approx(4.0)
    assert 1 * weights[0] + 2 * weights[1] + 4 * weights[2] == pytest.approx(7.0)
    with pytest.raises(ValueError, match="up"):
        inverse_frequency_weights([0, 1, 1])
    dm = module(toy_table())
    train = dm.train_dataset
    assert dm.class_weights() == inverse_frequency_weights(train.targets[train.ends])


def test_lightning_fit_and_predict_read_the_loaders():
    import lightning as L

    class Mean(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(len(FEATURES), 3)
            self.seen = 0

        def training_step(self, batch, batch_idx):
            x, y, _ = batch
            self.seen += x.shape[0]
            return torch.nn.functional.cross_entropy(self.head(x[:, -1]), y)

        def validation_step(self, batch, batch_idx):
            pass

        def predict_step(self, batch, batch_idx):
            return batch[0].shape[0]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = FeatureWindowDataModule(toy_table(), FEATURES, window=5, val_fraction=0.25, batch_size=8)
    model = Mean()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert model.seen == len(dm.train_dataset)
    everything = dm.all_windows_dataset()
    sizes = trainer.predict(model, dataloaders=window_loader(everything, 16))
    assert sum(sizes) == len(everything)
