"""Pool inference: MC dropout without touching BatchNorm, head-only sampling, batched full passes,
only the needed outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoal import rng
from autoal.learner import Learner, TrainSettings, dropout_modules, infer_pool, mc_dropout, mc_full_passes
from autoal.models import Classifier, build_classifier
from autoal.rng import dropout_generator
from conftest import make_dataset

ALL = frozenset({"probs", "mc_probs", "embeddings"})
N_CLASSES = 4


@pytest.fixture
def data():
    return make_dataset(n_train=40)


def _model(seed: int = 0, backbone_dropout: bool = False) -> Classifier:
    model = build_classifier("cnn", 1, 8, N_CLASSES, dropout=0.5, generator=torch.Generator().manual_seed(seed))
    if backbone_dropout:  # dropout inside the backbone: MC samples need full passes
        model.backbone = nn.Sequential(*model.backbone[:3], nn.Dropout(0.3), *model.backbone[3:])
    _give_bn_statistics(model)
    return model.eval()


def _give_bn_statistics(model: nn.Module) -> None:
    """A few train-mode passes so the running statistics are not their initial 0/1."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8) * 3 + 1)


def _infer(model, data, needs=ALL, *, seed=0, batch_size=16, mc_samples=5, rows=None):
    rows = torch.arange(len(data.train)) if rows is None else rows
    return infer_pool(model, lambda r: data.normalise(data.train.images[r]), rows, frozenset(needs),
                      mc_samples=mc_samples, batch_size=batch_size, seed=seed, device=torch.device("cpu"))


def _flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


@pytest.mark.parametrize("backbone_dropout", [False, True])
@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
def test_mc_inference_leaves_bn_statistics_and_training_flags_untouched(data, backbone_dropout, mode):
    model = _model(backbone_dropout=backbone_dropout)
    if mode == "train":
        model.train()
    elif mode == "mixed":  # e.g. a caller that froze BatchNorm while training the rest
        model.train()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    flags, buffers = _flags(model), _buffers(model)
    _infer(model, data)
    assert _flags(model) == flags
    for name, value in _buffers(model).items():
        assert torch.equal(value, buffers[name]), f"buffer {name} changed"


def test_mc_dropout_context_restores_per_module_flags():
    model = _model()
    model.train()
    model.backbone[1].eval()  # one frozen BatchNorm
    flags = _flags(model)
    with mc_dropout(model):
        assert all(m.training == isinstance(m, nn.Dropout) for m in model.modules())
    assert _flags(model) == flags


def test_bn_is_in_eval_mode_during_mc_passes(data):
    """Full-pass path with a p=0 dropout: with eval-mode BN every MC sample equals the deterministic pass;
    train-mode BN (batch statistics) would make them differ."""
    model = _model(backbone_dropout=True)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    seen = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda mod, args: seen.append(mod.training))
    out = _infer(model, data)
    assert seen and not any(seen)
    for t in range(out.mc_probs.shape[0]):
        torch.testing.assert_close(out.mc_probs[t], out.probs)


def test_mc_samples_differ_and_probs_are_deterministic(data):
    model = _model()
    a = _infer(model, data, seed=0)
    b = _infer(model, data, seed=1)
    n = len(data.train)
    assert a.mc_probs.shape == (5, n, N_CLASSES) and a.probs.shape == (n, N_CLASSES)
    torch.testing.assert_close(a.mc_probs.sum(dim=2), torch.ones(5, n))
    assert not torch.allclose(a.mc_probs[0], a.mc_probs[1])  # dropout masks differ between samples
    assert not torch.allclose(a.mc_probs, b.mc_probs)  # and between seeds
    torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=0)  # the deterministic pass ignores the seed
    assert not torch.allclose(a.mc_probs.mean(dim=0), a.probs)  # MC samples are not the eval pass


def test_same_seed_gives_same_mc_probs(data):
    model = _model()
    a, b = _infer(model, data, seed=7), _infer(model, data, seed=7)
    torch.testing.assert_close(a.mc_probs, b.mc_probs, rtol=0, atol=0)


def test_inference_does_not_touch_the_global_rng(data):
    model = _model()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _infer(model, data)
    assert torch.equal(torch.rand(3), expected)


def _count_backbone_calls(model: Classifier) -> list[int]:
    calls = [0]
    model.backbone.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("mc_samples", [1, 5, 20])
def test_head_only_path_runs_the_backbone_once_per_batch(data, mc_samples):
    model = _model()
    calls = _count_backbone_calls(model)
    _infer(model, data, batch_size=16, mc_samples=mc_samples)  # 40 rows -> 3 batches
    assert calls[0] == 3


def _count_backbone_rows(model: Classifier) -> list[int]:
    rows: list[int] = []
    model.backbone.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    return rows


def test_backbone_dropout_takes_the_batched_full_pass_path(data):
    model = _model(backbone_dropout=True)
    rows = _count_backbone_rows(model)
    out = _infer(model, data, batch_size=16, mc_samples=5)
    assert sum(rows) == 40 * (1 + 5)  # every image: one deterministic pass and T stochastic ones
    assert max(rows) <= 16  # memory stays bounded by the batch size: T copies of 16 // T images
    assert rows[:7] == [16, 15, 15, 15, 15, 15, 5]  # the plain pass, then 3 images x T per forward
    assert not torch.allclose(out.mc_probs[0], out.mc_probs[1])


def test_default_model_keeps_gal_et_al_dropouts_in_the_head():
    """Dropout after the convolutions and before the last layer (0.25 / 0.5), none in the backbone,
    so T samples cost one backbone pass."""
    model = build_classifier("cnn", 1, 8, N_CLASSES, dropout=0.5)
    assert not dropout_modules(model.backbone)
    assert [m.p for m in dropout_modules(model.head)] == [0.25, 0.5]
    assert any(isinstance(m, nn.ReLU) for m in model.head)  # a hidden layer between the two dropouts


def _record_masks(monkeypatch) -> list[torch.Tensor]:
    masks: list[torch.Tensor] = []
    draw = rng._dropout_with

    def recording(layer, gen, x):
        out = draw(layer, gen, x)
        masks.append((out != 0).to(x.dtype))  # inputs here are never exactly zero
        return out

    monkeypatch.setattr(rng, "_dropout_with", recording)
    return masks


@pytest.mark.parametrize("max_batch", [64, 8])
def test_batched_full_passes_equal_a_loop_with_the_same_masks(data, monkeypatch, max_batch):
    """Copy t of the batched forward is exactly a pass with copy t's masks: no mixing between copies
    (BatchNorm in eval) and the (T, B) layout is right, also when the batch is cut into chunks."""
    model = _model(backbone_dropout=True)
    model.backbone[3].p = 0.3
    x = data.normalise(data.train.images[:6]) + 1e-3  # no exact zeros, so a mask is readable from the output
    T, b = 4, 6
    masks = _record_masks(monkeypatch)
    with torch.no_grad(), mc_dropout(model), dropout_generator(model, torch.Generator().manual_seed(0)):
        batched = mc_full_passes(model, x, T, max_batch)  # (T, B, C)
    assert batched.shape == (T, b, N_CLASSES)
    per_chunk = max(1, max_batch // T)
    layers = len(dropout_modules(model))
    assert len(masks) == layers * -(-b // per_chunk)
    for t in range(T):
        for c, start in enumerate(range(0, b, per_chunk)):
            n = min(per_chunk, b - start)
            replay = iter(masks[c * layers:(c + 1) * layers])

            def replayed(layer, gen, inp):
                keep = next(replay)[t * n:(t + 1) * n]
                return inp * keep / (1 - layer.p)

            monkeypatch.setattr(rng, "_dropout_with", replayed)
            with torch.no_grad(), mc_dropout(model), dropout_generator(model, torch.Generator()):
                looped = model(x[start:start + n])
            torch.testing.assert_close(batched[t, start:start + n], looped)


def test_batched_full_passes_differ_between_samples_and_leave_bn_alone(data):
    model = _model(backbone_dropout=True)
    buffers = _buffers(model)
    x = data.normalise(data.train.images[:8])
    with torch.no_grad(), mc_dropout(model), dropout_generator(model, torch.Generator().manual_seed(1)):
        logits = mc_full_passes(model, x, 5, 512)
    for t in range(1, 5):
        assert not torch.allclose(logits[0], logits[t])
    for name, value in _buffers(model).items():
        assert torch.equal(value, buffers[name]), f"buffer {name} changed"


def test_channel_dropout_draws_whole_maps_from_the_generator():
    layer = nn.Sequential(nn.Dropout2d(0.5)).train()
    x = torch.ones(6, 40, 3, 3)
    torch.manual_seed(2)
    expected = torch.rand(3)
    torch.manual_seed(2)
    with dropout_generator(layer, torch.Generator().manual_seed(0)):
        first = layer(x)
    assert torch.equal(torch.rand(3), expected)  # the global RNG did not move
    with dropout_generator(layer, torch.Generator().manual_seed(0)):
        again = layer(x)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    maps = first.flatten(2)  # (N, C, H*W): every map all 0 or all 2
    assert ((maps == 0).all(dim=2) | (maps == 2).all(dim=2)).all()
    assert 60 < int((maps[:, :, 0] == 0).sum()) < 180
    assert "forward" not in vars(layer[0])


@pytest.mark.parametrize("needs", [{"probs"}, {"mc_probs"}, {"embeddings"}, {"probs", "embeddings"}, ALL])
def test_only_requested_outputs_are_computed(data, needs):
    out = _infer(_model(), data, needs)
    assert out.n == len(data.train)
    assert out.probs is not None  # always: it is one cheap head pass
    assert (out.mc_probs is not None) == ("mc_probs" in needs)
    assert (out.embeddings is not None) == ("embeddings" in needs)
    if out.embeddings is not None:
        assert out.embeddings.shape == (len(data.train), 128 * 9)  # 128 channels on a 3x3 grid


def test_no_mc_pass_when_not_needed(data):
    model = _model()
    heads = [0]
    model.head.register_forward_hook(lambda *args: heads.__setitem__(0, heads[0] + 1))
    _infer(model, data, {"probs", "embeddings"}, batch_size=16)
    assert heads[0] == 3


def test_probs_and_embeddings_do_not_depend_on_batch_size(data):
    model = _model()
    small = _infer(model, data, batch_size=7)
    large = _infer(model, data, batch_size=64)
    torch.testing.assert_close(small.probs, large.probs)
    torch.testing.assert_close(small.embeddings, large.embeddings)


def test_rows_are_aligned_with_the_requested_pool_indices(data):
    model = _model()
    rows = torch.tensor([5, 31, 2, 17])
    part = _infer(model, data, rows=rows)
    whole = _infer(model, data)
    torch.testing.assert_close(part.probs, whole.probs[rows])
    torch.testing.assert_close(part.embeddings, whole.embeddings[rows])


def test_learner_infer_and_evaluate(data):
    learner = Learner(data, TrainSettings(epochs=1, min_steps=5, mc_samples=3, eval_batch_size=16),
                      torch.device("cpu"))
    model = learner.fit(torch.arange(16), seed=0)
    out = learner.infer(model, torch.arange(16, 40), ALL, seed=0)
    assert out.n == 24 and out.mc_probs.shape == (3, 24, N_CLASSES)
    acc, auc = learner.evaluate(model)
    assert 0.0 <= acc <= 1.0 and 0.0 <= auc <= 1.0


def test_training_and_model_building_do_not_touch_the_global_rng(data):
    learner = Learner(data, TrainSettings(epochs=1, min_steps=5), torch.device("cpu"))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = learner.fit(torch.arange(16), seed=3)
    assert torch.equal(torch.rand(3), expected)
    b = learner.fit(torch.arange(16), seed=3)  # same seed, same weights, whatever the global state
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_dropout_generator_draws_masks_from_the_generator_and_restores_the_layer():
    from autoal.rng import dropout_generator

    layer = nn.Sequential(nn.Dropout(0.5)).train()
    x = torch.ones(1000)
    with dropout_generator(layer, torch.Generator().manual_seed(0)):
        first = layer(x)
    with dropout_generator(layer, torch.Generator().manual_seed(0)):
        again = layer(x)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert set(first.unique().tolist()) == {0.0, 2.0} and 400 < int((first == 0).sum()) < 600
    assert "forward" not in vars(layer[0])  # the layer is its plain self again
