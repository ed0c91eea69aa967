"""CNN+LSTM with additive attention: windows of bars in, class logits and an
expected forward return out.

Input is one symbol's window of the last T bars of F standardised features,
``x`` of shape (B, T, F), row T-1 being the most recent bar t. Outputs are the
logits of the forward-return class of bar t (0 = down, 1 = flat, 2 = up) and
the expected forward log return of bar t (same units as the labels'
``fwd_return``, e.g. 0.01 = +1%).

Architecture (shapes for batch B, window T):

    x (B, T, F)
    -> conv_blocks x [causal Conv1d(kernel k) -> GELU -> Dropout]   (B, T, C)
    -> lstm_layers x [LSTM(hidden H) -> Dropout]                     (B, T, H)
    -> additive attention over the T steps: w = softmax_t(v . tanh(W h_t))
       context = sum_t w_t h_t                                       (B, H)
    -> concat(context, h_{T-1}) -> Linear -> GELU -> Dropout         (B, D)
    -> class head Linear(D, 3) and return head Linear(D, 1)

The convolutions are *causal* (padded on the left only), so the sequence
feature at step s depends on window rows <= s; the LSTM is forward-only. The
whole window holds bars <= t anyway, so this is about clean semantics (a
step's feature never peeks at later rows of the window), not about leakage.
Attention then looks at all T steps, and the last step's hidden state is fed to
the heads directly, so the most recent bar always reaches the output.

Dropout lives only in ``nn.Dropout`` modules (the stacked LSTM is built from
single-layer LSTMs with explicit dropout between them), and there is no batch
norm: MC dropout (``tradingrl.models.uncertainty``) switches exactly those
modules on and nothing else changes between training and eval.

Loss on rows with ``y != -100``:

    cross_entropy(logits, y; class_weights)
      + return_loss_weight * huber(return_scale * r_hat, return_scale * r; delta)

Returns are log returns of order 0.01, so the Huber term is computed on
``return_scale`` x returns (default 100: percent). With ``huber_delta`` 1.0 the
loss is quadratic for errors below 1% and linear beyond, so a few fat-tailed
bars do not dominate; a 5-bar daily return (sd ~2-3%) gives a Huber value of
order 1, comparable to the cross-entropy (log 3 = 1.10 at chance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from tradingrl.models.classes import IGNORE_INDEX, N_CLASSES


class CNNLSTMOutput(NamedTuple):
    """logits (B, 3) unnormalised class scores; expected_return (B,) forward
    log return; attention (B, T) softmax weights over the window's steps."""

    logits: Tensor
    expected_return: Tensor
    attention: Tensor


class CausalConvBlock(nn.Module):
    """Conv1d over time padded on the left only: output step s sees input
    steps s-k+1 .. s. (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.left_pad = kernel_size - 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (self.left_pad, 0))
        return self.dropout(F.gelu(self.conv(x)))


class AdditiveAttention(nn.Module):
    """Bahdanau-style attention pooling over time.

    score_s = v . tanh(W h_s + b); weights = softmax over the T steps.
    (B, T, H) -> context (B, H), weights (B, T)."""

    def __init__(self, hidden_size: int, attention_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        weights = torch.softmax(scores, dim=1)
        context = torch.bmm(weights.unsqueeze(1), h).squeeze(1)  # (B, H)
        return context, weights


class CNNLSTM(L.LightningModule):
    """CNN+LSTM+attention classifier of the forward-return class with an
    expected-return head. See the module docstring for the layout and loss.

    Args:
        n_features: F, features per bar.
        conv_channels: C, channels of every conv block.
        conv_kernel_size: k, bars per causal convolution.
        conv_blocks: number of conv blocks (>= 1).
        lstm_hidden: H, LSTM hidden size.
        lstm_layers: stacked LSTM layers (dropout between and after them).
        attention_size: width of the additive-attention projection.
        head_hidden: D, width of the shared layer before the two heads.
        dropout: probability for every ``nn.Dropout`` (also the MC dropout rate).
        class_weights: cross-entropy weight per class (down, flat, up), or None.
        return_loss_weight: weight of the Huber return loss (0 disables it).
        return_scale: factor applied to returns inside the Huber loss
            (100: errors in percent).
        huber_delta: Huber threshold in scaled units (1.0 = 1% with scale 100).
        lr: AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        plateau_patience: epochs without val_loss improvement before the
            learning rate is multiplied by ``plateau_factor``; None disables
            ReduceLROnPlateau (when enabled, a validation loop is required).
        plateau_factor: learning-rate factor of ReduceLROnPlateau.
    """

    def __init__(
        self,
        n_features: int,
        *,
        conv_channels: int = 64,
        conv_kernel_size: int = 5,
        conv_blocks: int = 2,
        lstm_hidden: int = 64,
        lstm_layers: int = 1,
        attention_size: int = 32,
        head_hidden: int = 64,
        dropout: float = 0.2,
        class_weights: Sequence[float] | None = None,
        return_loss_weight: float = 0.5,
        return_scale: float = 100.0,
        huber_delta: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        plateau_patience: int | None = None,
        plateau_factor: float = 0.5,
    ) -> None:
        super().__init__()
        if n_features < 1 or conv_channels < 1 or conv_kernel_size < 1 or conv_blocks < 1:
            raise ValueError("n_features, conv_channels, conv_kernel_size, conv_blocks must be >= 1")
        if lstm_hidden < 1 or lstm_layers < 1 or attention_size < 1 or head_hidden < 1:
            raise ValueError("lstm_hidden, lstm_layers, attention_size, head_hidden must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
            if len(class_weights) != N_CLASSES or min(class_weights) <= 0:
                raise ValueError(f"class_weights must be {N_CLASSES} positive numbers, got {class_weights}")
        if return_loss_weight < 0 or return_scale <= 0 or huber_delta <= 0:
            raise ValueError("return_loss_weight must be >= 0; return_scale, huber_delta > 0")
        self.save_hyperparameters()

        self.conv = nn.Sequential(
            *(
                CausalConvBlock(n_features if i == 0 else conv_channels, conv_channels,
                                conv_kernel_size, dropout)
                for i in range(conv_blocks)
            )
        )
        self.lstms = nn.ModuleList(
            nn.LSTM(conv_channels if i == 0 else lstm_hidden, lstm_hidden, batch_first=True)
            for i in range(lstm_layers)
        )
        self.lstm_dropout = nn.Dropout(dropout)
        self.attention = AdditiveAttention(lstm_hidden, attention_size)
        self.trunk = nn.Sequential(
            nn.Linear(2 * lstm_hidden, head_hidden), nn.GELU(), nn.Dropout(dropout)
        )
        self.class_head = nn.Linear(head_hidden, N_CLASSES)
        self.return_head = nn.Linear(head_hidden, 1)

        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        # Not persistent: rebuilt from hparams, so checkpoints stay loadable
        # whether or not weights were given.
        self.register_buffer("class_weights", weights, persistent=False)
        self.val_accuracy = MulticlassAccuracy(
            num_classes=N_CLASSES, average="micro", ignore_index=IGNORE_INDEX
        )

    # ------------------------------------------------------------------ forward
    def sequence_features(self, x: Tensor) -> Tensor:
        """Per-step features after conv and LSTM: (B, T, F) -> (B, T, H).
        Step s depends on window rows <= s only."""
        if x.ndim != 3 or x.shape[-1] != self.hparams.n_features:
            raise ValueError(
                f"expected x of shape (B, T, {self.hparams.n_features}), got {tuple(x.shape)}"
            )
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        for lstm in self.lstms:
            h, _ = lstm(h)
            h = self.lstm_dropout(h)
        return h

    def _forward_scaled(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """logits (B, 3), return in scaled units (B,), attention (B, T)."""
        h = self.sequence_features(x)
        context, weights = self.attention(h)
        z = self.trunk(torch.cat([context, h[:, -1]], dim=1))
        return self.class_head(z), self.return_head(z).squeeze(-1), weights

    def forward(self, x: Tensor) -> CNNLSTMOutput:
        """x (B, T, F) float32 -> CNNLSTMOutput(logits (B, 3),
        expected_return (B,) log return, attention (B, T))."""
        logits, scaled_return, weights = self._forward_scaled(x)
        return CNNLSTMOutput(logits, scaled_return / self.hparams.return_scale, weights)

    # --------------------------------------------------------------------- loss
    def compute_loss(self, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        """batch = (x (B, T, F), y (B,) int64 with -100 = ignore, r (B,) float
        forward log return). Returns loss, ce, huber (scalars), logits."""
        x, y, r = batch[0], batch[1], batch[2]
        logits, scaled_return, _ = self._forward_scaled(x)
        mask = y != IGNORE_INDEX
        if not bool(mask.any()):
            # An all-ignored batch contributes nothing (mean over zero rows
            # would be NaN); keep the graph so the optimiser step is a no-op.
            zero = logits.sum() * 0.0
            return {"loss": zero, "ce": zero, "huber": zero, "logits": logits}
        ce = F.cross_entropy(logits[mask], y[mask], weight=self.class_weights)
        scale = self.hparams.return_scale
        huber = F.huber_loss(
            scaled_return[mask], r[mask].to(scaled_return.dtype) * scale,
            delta=self.hparams.huber_delta,
        )
        loss = ce + self.hparams.return_loss_weight * huber
        return {"loss": loss, "ce": ce, "huber": huber, "logits": logits}

    # ----------------------------------------------------------------- lightning
    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        out = self.compute_loss(batch)
        n = batch[0].shape[0]
        self.log("train_loss", out["loss"], on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("train_ce", out["ce"], on_step=False, on_epoch=True, batch_size=n)
        self.log("train_huber", out["huber"], on_step=False, on_epoch=True, batch_size=n)
        return out["loss"]

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        out = self.compute_loss(batch)
        n = batch[0].shape[0]
        self.val_accuracy.update(out["logits"].argmax(dim=1), batch[1])
        self.log("val_loss", out["loss"], on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("val_ce", out["ce"], on_step=False, on_epoch=True, batch_size=n)
        self.log("val_huber", out["huber"], on_step=False, on_epoch=True, batch_size=n)
        # The metric object accumulates counts, so the epoch value is exact
        # even with ignored rows spread unevenly across batches.
        self.log("val_acc", self.val_accuracy, on_step=False, on_epoch=True, prog_bar=True)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """batch: x or (x, ...) -> {"logits": (B, 3), "expected_return": (B,)}."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        out = self(x)
        return {"logits": out.logits, "expected_return": out.expected_return}

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.plateau_patience is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.hparams.plateau_factor,
            patience=self.hparams.plateau_patience,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"},
        }
