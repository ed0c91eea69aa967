"""The trained trend model as the later stages use it: load models/cnn_lstm
and turn a feature table into per-bar probabilities, expected return and
confidence, each from its own window of past bars only.

The scaler and temperatures are the ones saved at training time (fit on the
training span / calibration half); nothing is refit on the data predicted.
Rows with fewer than ``window - 1`` earlier rows of their symbol get no
prediction (they are absent from the result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PREDICTION_COLUMNS: tuple[str, ...] = (
    "p_down", "p_flat", "p_up", "expected_return", "confidence", "entropy", "direction_std",
)


@dataclass
class TrendModel:
    """Trained CNN+LSTM member(s) with their scaler, window and calibration."""

    models: list
    scaler: object
    feature_names: list[str]
    window: int
    temperatures: list[float]
    mc_samples: int
    seed: int = 0

    @classmethod
    def load(cls, model_dir: Path | str, *, seed: int = 0) -> TrendModel:
        import torch

        from tradingrl.models.cnn_lstm import CNNLSTM
        from tradingrl.models.data import FeatureScaler

        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        models = []
        for member in range(config["ensemble_size"]):
            saved = torch.load(model_dir / f"model-{member}.pt", map_location="cpu", weights_only=False)
            model = CNNLSTM(**saved["hparams"])
            model.load_state_dict(saved["state_dict"])
            models.append(model.eval())
        return cls(
            models=models,
            scaler=FeatureScaler.load(model_dir / "scaler.json"),
            feature_names=json.loads((model_dir / "feature_list.json").read_text())["features"],
            window=config["window"],
            temperatures=config["temperatures"],
            mc_samples=config["mc_samples"],
            seed=seed,
        )

    def predict(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Predictions for the rows of ``frame`` (a feature table sorted by
        symbol and time; boolean mask ``rows`` limits which rows, None = all):
        timestamp, symbol and :data:`PREDICTION_COLUMNS`."""
        from tradingrl.models.data import window_dataset_from_frame
        from tradingrl.models.uncertainty import predict_dataset

        if list(self.scaler.feature_names) != list(self.feature_names):
            raise ValueError("scaler and model disagree on the feature list")
        dataset = window_dataset_from_frame(frame, self.scaler, self.window, rows=rows)
        mc = self.mc_samples > 1 and any(m.hparams.dropout > 0 for m in self.models)
        result = predict_dataset(
            self.models, dataset, samples=self.mc_samples if mc else 1, mc_dropout=mc,
            temperature=self.temperatures, seed=self.seed,
        ).prediction
        out = frame.iloc[dataset.ends][["timestamp", "symbol"]].reset_index(drop=True)
        for name, values in prediction_columns(result).items():
            out[name] = values
        return out

    def predict_windows(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        """:data:`PREDICTION_COLUMNS` for B windows given as arrays, (B,
        window, F) unscaled feature rows in ``feature_names`` order (the
        feature table's float32 values), without building a frame: the
        serving path. Scaling, passes and seed are :meth:`predict`'s, so for
        up to 1024 windows (one loader batch there) the result equals
        :meth:`predict` on a table whose predicted rows end these windows,
        bit for bit, MC dropout included."""
        import torch

        from tradingrl.models.uncertainty import Prediction, _ensemble_passes, _seeded

        windows = np.asarray(windows)
        if windows.ndim != 3 or windows.shape[1:] != (self.window, len(self.feature_names)):
            raise ValueError(f"expected windows of shape (B, {self.window}, "
                             f"{len(self.feature_names)}), got {windows.shape}")
        b = windows.shape[0]
        scaled = self.scaler.transform(windows.reshape(b * self.window, -1))
        x = torch.from_numpy(scaled.reshape(b, self.window, -1))
        mc = self.mc_samples > 1 and any(m.hparams.dropout > 0 for m in self.models)
        samples = self.mc_samples if mc else 1
        with _seeded(self.seed, [torch.device("cpu")]):
            probs, rets = _ensemble_passes(self.models, x, samples, self.temperatures, mc, 4096)
        return prediction_columns(Prediction.from_passes(probs, rets))


def prediction_columns(result) -> dict[str, np.ndarray]:
    """A :class:`~tradingrl.models.uncertainty.Prediction` as the arrays of
    :data:`PREDICTION_COLUMNS`."""
    p_down, p_flat, p_up = result.probs.T
    return {"p_down": p_down, "p_flat": p_flat, "p_up": p_up,
            "expected_return": result.expected_return, "confidence": result.confidence,
            "entropy": result.entropy, "direction_std": result.direction_std}
