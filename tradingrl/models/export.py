"""Log the CNN+LSTM to MLflow as one tensor-in, tensor-out model.

A pyfunc model is tensor in, tensor out, so :class:`PackedOutputs` returns
one (B, 4) tensor instead of the model's NamedTuple: columns 0-2 the class logits (down, flat, up), column
3 the expected forward log return. Temperature and MC dropout are applied by
:mod:`tradingrl.models.uncertainty` on top of the logits, not inside.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

OUTPUT_COLUMNS = ("logit_down", "logit_flat", "logit_up", "expected_return")
# What loading the logged model takes besides tradingrl (pinned to the installed versions).
MODEL_DISTRIBUTIONS = ("torch", "numpy", "mlflow", "cloudpickle")


class PackedOutputs(nn.Module):
    """Wrap a CNNLSTM: x (B, T, F) float32 -> (B, 4) as in OUTPUT_COLUMNS."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return torch.cat([out.logits, out.expected_return.unsqueeze(-1)], dim=-1)


def log_and_register(
    model: nn.Module, example: np.ndarray, *, name: str, tags: dict[str, str]
) -> str:
    """Log ``model`` (eval mode) in the active MLflow run with a signature and
    input example, register it as a new version of ``name``, tag the version;
    return the version number."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from tradingrl.tracking import pinned_requirements

    packed = PackedOutputs(model).eval()
    with torch.no_grad():
        output = packed(torch.from_numpy(example)).numpy()
    # "pickle": torch.export ("pt2", MLflow's default) fixes the batch size
    # to the input example's; the pickled module takes any batch.
    info = mlflow.pytorch.log_model(
        packed, name="cnn_lstm_model", input_example=example,
        signature=infer_signature(example, output), registered_model_name=name,
        serialization_format="pickle",
        pip_requirements=pinned_requirements(MODEL_DISTRIBUTIONS),
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version
