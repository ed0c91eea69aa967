"""CNN+LSTM and its uncertainty layer: shapes, behaviour, reproducibility,
checkpoints, MC dropout, ensembles and temperature scaling."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from tradingrl.models.cnn_lstm import CNNLSTM
from tradingrl.models.data import inverse_frequency_weights
from tradingrl.models.uncertainty import (
    Prediction,
    collect_logits,
    ensemble_predict,
    fit_temperature,
    mc_dropout_predict,
    predict_dataset,
    temperature_nll,
)

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:.*does not have many workers.*",
        "ignore:.*number of training batches.*",
        "ignore:.*GPU available but not used.*",
        "ignore:.*no `val_dataloader`.*",
        "ignore:.*LeafSpec.*",
    ),
    pytest.mark.usefixtures("one_torch_thread"),  # tests/conftest.py
]

T, F_ = 12, 6


def tiny_model(**overrides: object) -> CNNLSTM:
    kwargs: dict[str, object] = {
        "conv_channels": 8, "conv_kernel_size": 3, "conv_blocks": 2, "lstm_hidden": 8,
        "attention_size": 4, "head_hidden": 8, "dropout": 0.0,
    }
    kwargs.update(overrides)
    return CNNLSTM(F_, **kwargs)


def windows(n: int, seed: int = 0, t: int = T, f: int = F_) -> torch.Tensor:
    return torch.randn(n, t, f, generator=torch.Generator().manual_seed(seed))


def tiny_batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    y = torch.randint(0, 3, (n,), generator=g)
    r = 0.02 * torch.randn(n, generator=g)
    return windows(n, seed), y, r


def quiet_trainer(**kwargs: object) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **kwargs,
    )


# ---------------------------------------------------------------- the model
def test_default_model_shapes_and_normalisation():
    torch.manual_seed(0)
    model = CNNLSTM(85).eval()
    x = torch.randn(5, 60, 85)
    out = model(x)
    assert out.logits.shape == (5, 3)
    assert out.expected_return.shape == (5,)
    assert out.attention.shape == (5, 60)
    probs = torch.softmax(out.logits, dim=1)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(out.attention.sum(dim=1), torch.ones(5))
    assert (out.attention >= 0).all()
    pred = model.predict_step((x, torch.zeros(5), torch.zeros(5)), 0)
    torch.testing.assert_close(pred["logits"], out.logits)
    torch.testing.assert_close(pred["expected_return"], out.expected_return)


def test_wrong_feature_count_is_rejected():
    with pytest.raises(ValueError, match="expected x of shape"):
        tiny_model()(torch.randn(2, T, F_ + 1))


def test_sequence_features_are_causal_within_the_window():
    model = tiny_model().eval()
    x = windows(3)
    s = 5
    later_changed = x.clone()
    later_changed[:, s + 1 :] += torch.randn_like(later_changed[:, s + 1 :])
    with torch.no_grad():
        h, h2 = model.sequence_features(x), model.sequence_features(later_changed)
    torch.testing.assert_close(h[:, : s + 1], h2[:, : s + 1])
    assert not torch.allclose(h[:, s + 1], h2[:, s + 1])


def test_output_depends_on_every_row_of_the_window():
    model = tiny_model().eval()
    x = windows(2).requires_grad_(True)
    out = model(x)
    (out.logits.sum() + out.expected_return.sum()).backward()
    per_row = x.grad.abs().sum(dim=(0, 2))
    assert per_row.shape == (T,)
    assert (per_row > 0).all()


def test_changing_the_last_bar_changes_the_prediction():
    model = tiny_model().eval()
    x = windows(4)
    changed = x.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert (a.logits - b.logits).abs().amax(dim=1).min() > 1e-6
    assert (a.expected_return - b.expected_return).abs().min() > 1e-9


def test_windows_in_a_batch_do_not_see_each_other():
    model = tiny_model().eval()
    x = windows(6)
    with torch.no_grad():
        alone = model(x[:1]).logits
        together = model(x).logits[:1]
        other = x.clone()
        other[1:] = torch.randn_like(other[1:])
        with_others_changed = model(other).logits[:1]
    torch.testing.assert_close(alone, together)
    torch.testing.assert_close(alone, with_others_changed)


def test_loss_uses_only_labelled_rows_and_scales_returns():
    model = tiny_model(return_loss_weight=0.7, class_weights=[1.0, 2.0, 0.5]).eval()
    x, y, r = tiny_batch(8)
    y_masked, r_masked = y.clone(), r.clone()
    y_masked[[1, 4]] = -100
    r_masked[[1, 4]] = float("nan")  # never read where the label is ignored
    with torch.no_grad():
        out = model.compute_loss((x, y_masked, r_masked))
        keep = y_masked != -100
        logits, scaled, _ = model._forward_scaled(x)
    ce = F.cross_entropy(logits[keep], y[keep], weight=torch.tensor([1.0, 2.0, 0.5]))
    huber = F.huber_loss(scaled[keep], 100.0 * r[keep], delta=1.0)
    torch.testing.assert_close(out["loss"], ce + 0.7 * huber)
    assert torch.isfinite(out["loss"])
    torch.testing.assert_close(model(x).expected_return, scaled / 100.0)


def test_all_ignored_batch_gives_zero_loss_and_finite_gradients():
    model = tiny_model()
    x, _, _ = tiny_batch(4)
    y = torch.full((4,), -100)
    r = torch.full((4,), float("nan"))
    loss = model.compute_loss((x, y, r))["loss"]
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_tiny_model_overfits_a_tiny_batch():
    L.seed_everything(0, workers=True)
    model = tiny_model(conv_channels=16, lstm_hidden=16, head_hidden=16, lr=1e-2, weight_decay=0.0)
    x, y, r = tiny_batch(16)
    with torch.no_grad():
        before = model.compute_loss((x, y, r))["loss"].item()
    loader = DataLoader(TensorDataset(x, y, r), batch_size=16)
    quiet_trainer(max_epochs=150).fit(model, loader)
    model.eval()
    with torch.no_grad():
        after = model.compute_loss((x, y, r))
    assert after["loss"].item() < 0.2 * before, (before, after["loss"].item())
    assert (after["logits"].argmax(dim=1) == y).float().mean() == 1.0


def train_a_few_steps(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    L.seed_everything(seed, workers=True)
    model = tiny_model(dropout=0.3)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    x, y, r = tiny_batch(32)
    loader = DataLoader(TensorDataset(x, y, r), batch_size=8, shuffle=True)
    quiet_trainer(max_steps=6, deterministic=True).fit(model, loader)
    return initial, model.state_dict()


def test_same_seed_gives_identical_weights_before_and_after_training():
    init_a, trained_a = train_a_few_steps(3)
    init_b, trained_b = train_a_few_steps(3)
    init_c, _ = train_a_few_steps(4)
    for key in init_a:
        torch.testing.assert_close(init_a[key], init_b[key], rtol=0, atol=0)
        torch.testing.assert_close(trained_a[key], trained_b[key], rtol=0, atol=0)
    assert any(not torch.equal(init_a[k], init_c[k]) for k in init_a)
    assert any(not torch.equal(init_a[k], trained_a[k]) for k in init_a)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    L.seed_everything(1, workers=True)
    model = tiny_model(dropout=0.2, class_weights=[1.0, 1.5, 1.0], plateau_patience=2)
    x, y, r = tiny_batch(16)
    loader = DataLoader(TensorDataset(x, y, r), batch_size=8)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model, loader, val_dataloaders=loader)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = CNNLSTM.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams.conv_channels == 8
    assert loaded.hparams.class_weights == [1.0, 1.5, 1.0]
    model.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for left, right in zip(a, b, strict=True):
        torch.testing.assert_close(left, right, rtol=0, atol=0)
    metrics = trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_acc"} <= set(metrics)


def test_plateau_scheduler_monitors_val_loss():
    assert isinstance(tiny_model().configure_optimizers(), torch.optim.AdamW)
    config = tiny_model(plateau_patience=3).configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val_loss"
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_balanced_class_weights():
    y = np.array([0, 0, 0, 1, 2, 2, -100])
    weights = inverse_frequency_weights(y)
    np.testing.assert_allclose(weights, [6 / 9, 6 / 3, 6 / 6])
    with pytest.raises(ValueError, match="every class"):
        inverse_frequency_weights(np.array([0, 1, 1]))


# ---------------------------------------------------------------- MC dropout
def test_without_dropout_all_passes_agree_and_equal_plain_softmax():
    model = tiny_model(dropout=0.0)
    x = windows(5)
    pred = mc_dropout_predict(model, x, samples=8, temperature=1.7, seed=0)
    assert pred.n_passes == 8
    np.testing.assert_allclose(pred.direction_std, 0.0, atol=1e-12)
    np.testing.assert_allclose(pred.return_std, 0.0, atol=1e-12)
    np.testing.assert_allclose(pred.mutual_information, 0.0, atol=1e-9)
    single = mc_dropout_predict(model, x, samples=1, temperature=1.7)
    model.eval()
    with torch.no_grad():
        out = model(x)
    np.testing.assert_allclose(single.probs, torch.softmax(out.logits / 1.7, dim=1).numpy(), atol=1e-6)
    np.testing.assert_allclose(single.expected_return, out.expected_return.numpy(), atol=1e-7)
    np.testing.assert_allclose(pred.probs, single.probs, atol=1e-12)


def test_mc_dropout_passes_differ_and_confidence_is_bounded():
    torch.manual_seed(0)
    model = tiny_model(dropout=0.5)
    x = windows(7)
    pred = mc_dropout_predict(model, x, samples=16, seed=0)
    assert pred.probs.shape == (7, 3)
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0)
    assert (pred.direction_std > 0).all()
    assert (pred.return_std > 0).all()
    assert (pred.mutual_information > 0).all()
    assert ((pred.confidence >= 0) & (pred.confidence <= 1)).all()
    np.testing.assert_allclose(pred.confidence, 1 - pred.entropy / np.log(3))


def test_mc_dropout_is_deterministic_given_a_seed_and_leaves_global_rng_alone():
    model = tiny_model(dropout=0.5)
    x = windows(4)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = mc_dropout_predict(model, x, samples=10, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    b = mc_dropout_predict(model, x, samples=10, seed=7)
    c = mc_dropout_predict(model, x, samples=10, seed=8)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.expected_return, b.expected_return)
    assert not np.allclose(a.probs, c.probs)


@pytest.mark.parametrize("training", [True, False])
def test_mc_dropout_restores_the_model_mode(training):
    model = tiny_model(dropout=0.3).train(training)
    mc_dropout_predict(model, windows(2), samples=3, seed=0)
    assert all(m.training == training for m in model.modules())
    ensemble_predict([model], windows(2), seed=0)
    assert all(m.training == training for m in model.modules())


def test_chunked_passes_match_one_big_call():
    model = tiny_model(dropout=0.0)
    x = windows(10)
    big = mc_dropout_predict(model, x, samples=4, seed=0)
    small = mc_dropout_predict(model, x, samples=4, seed=0, max_rows=3)
    np.testing.assert_allclose(small.probs, big.probs, atol=1e-12)


def test_ensemble_averages_member_probabilities():
    torch.manual_seed(0)
    a, b = tiny_model(), tiny_model()
    x = windows(5)
    pa = mc_dropout_predict(a, x, samples=1, temperature=1.0)
    pb = mc_dropout_predict(b, x, samples=1, temperature=2.0)
    both = ensemble_predict([a, b], x, temperature=[1.0, 2.0])
    np.testing.assert_allclose(both.probs, (pa.probs + pb.probs) / 2, atol=1e-12)
    np.testing.assert_allclose(both.expected_return, (pa.expected_return + pb.expected_return) / 2)
    assert both.n_passes == 2
    assert (both.direction_std > 0).all()  # two different models disagree
    with pytest.raises(ValueError, match="samples=1"):
        ensemble_predict([a, b], x, samples=5)
    mc = ensemble_predict([tiny_model(dropout=0.4), b], x, samples=5, mc_dropout=True, seed=0)
    assert mc.n_passes == 10


def test_predict_dataset_streams_batches_in_order():
    model = tiny_model(dropout=0.0)
    x, y, r = tiny_batch(23)
    whole = mc_dropout_predict(model, x, samples=1)
    result = predict_dataset(model, TensorDataset(x, y, r), batch_size=5)
    assert isinstance(result.prediction, Prediction)
    np.testing.assert_allclose(result.prediction.probs, whole.probs, atol=1e-12)
    np.testing.assert_array_equal(result.y, y.numpy())
    np.testing.assert_allclose(result.realised_return, r.numpy().astype(np.float64))
    bare = predict_dataset(model, DataLoader(TensorDataset(x), batch_size=7))
    assert bare.y is None and bare.realised_return is None
    np.testing.assert_allclose(bare.prediction.expected_return, whole.expected_return, atol=1e-12)


def test_collect_logits_matches_the_model_in_eval_mode():
    model = tiny_model(dropout=0.5).train()
    x, y, r = tiny_batch(9)
    logits, labels = collect_logits(model, TensorDataset(x, y, r), batch_size=4)
    assert model.training
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x).logits.numpy(), atol=1e-6)
    np.testing.assert_array_equal(labels, y.numpy())


# ------------------------------------------------------------ temperature
def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=1.5, size=(20_000, 3))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.random(len(z))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    overconfident = 2.0 * z
    fitted = fit_temperature(overconfident, y)
    assert fitted == pytest.approx(2.0, rel=0.1)
    assert temperature_nll(overconfident, y, fitted) < temperature_nll(overconfident, y, 1.0)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.1)


def test_fit_temperature_skips_ignored_rows_and_rejects_nothing_to_fit():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    y = np.array([0, 1, -100])
    assert fit_temperature(logits, y) == fit_temperature(logits[:2], y[:2])
    with pytest.raises(ValueError, match="no labelled rows"):
        fit_temperature(logits, np.full(3, -100))


def test_fit_temperature_on_mc_passes_uses_pass_averaged_probabilities():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=1.5, size=(5_000, 3))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.random(len(z))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    identical_passes = np.stack([2.0 * z] * 4)
    assert fit_temperature(identical_passes, y) == pytest.approx(fit_temperature(2.0 * z, y))
    # noisy passes average to softer probabilities, so less temperature is needed
    noisy = 2.0 * z + rng.normal(scale=2.0, size=(8, *z.shape))
    assert fit_temperature(noisy, y) < fit_temperature(noisy.mean(axis=0), y)


def test_collect_mc_logits_are_repeatable_and_stacked():
    model = tiny_model(dropout=0.5)
    x, y, r = tiny_batch(9)
    data = TensorDataset(x, y, r)
    a, labels = collect_logits(model, data, batch_size=4, mc_samples=3, seed=0)
    b, _ = collect_logits(model, data, batch_size=4, mc_samples=3, seed=0)
    assert a.shape == (3, 9, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])
    np.testing.assert_array_equal(labels, y.numpy())
