"""Training augmentation: shapes, determinism, true translations, flips only where the domain allows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autoal.augment import (DATASET_DEFAULTS, MODES, augment_batch, max_shift, random_shift,
                            resolve_augment)
from autoal.errors import UserError


def _images(b: int = 16, c: int = 1, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    """Asymmetric random images: no flip or shift of one equals another by accident."""
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _crops(image: torch.Tensor, shift: int) -> list[tuple[int, int, torch.Tensor]]:
    """Every (dy, dx, translated image) of one (C, H, W) image with a replicated border."""
    _, h, w = image.shape
    padded = F.pad(image[None], (shift,) * 4, mode="replicate")[0]
    return [(dy - shift, dx - shift, padded[:, dy:dy + h, dx:dx + w])
            for dy in range(2 * shift + 1) for dx in range(2 * shift + 1)]


def _matches(out: torch.Tensor, image: torch.Tensor, shift: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy, dx, crop in _crops(image, shift) if torch.equal(out, crop)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(5, 1, 8, 8), (4, 3, 28, 28), (3, 3, 10, 14)])
def test_shape_dtype_and_finite(mode, shape):
    x = torch.randn(*shape, generator=_gen())
    out = augment_batch(x, mode, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("mode", ["shift", "shift-hflip", "shift-flip"])
def test_same_generator_same_batch_other_seed_other_batch(mode):
    x = _images()
    a, b = augment_batch(x, mode, _gen(3)), augment_batch(x, mode, _gen(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, augment_batch(x, mode, _gen(4)))


def test_none_is_the_identity():
    x = _images()
    assert augment_batch(x, "none", _gen()) is x


def test_shift_translates_each_image_within_the_limit_with_per_image_offsets():
    x = _images(b=32)
    shift = max_shift(12)
    out = random_shift(x, shift, _gen(1))
    offsets = set()
    for i in range(len(x)):
        found = _matches(out[i], x[i], shift)
        assert found, f"image {i} is not a translation of its input by at most {shift} pixels"
        offsets.update(found)
    assert len(offsets) > 3  # each image draws its own offset, not one for the batch


def test_max_shift_is_a_tenth_of_the_side_and_at_least_one():
    assert [max_shift(s) for s in (8, 28, 32, 64, 224)] == [1, 2, 3, 6, 22]


def test_auto_leaves_8x8_digits_alone():
    assert resolve_augment("auto", "digits") == "none"


@pytest.mark.parametrize("dataset", ["mnist", "mnist10k", "svhn", "organcmnist", "organamnist_64"])
def test_auto_never_flips_digits_or_anatomy(dataset):
    assert resolve_augment("auto", dataset) == "shift"
    x = _images(b=32)
    out = augment_batch(x, resolve_augment("auto", dataset), _gen(2))
    shift = max_shift(12)
    for i in range(len(x)):  # every output is a pure translation of its own, unflipped image
        assert _matches(out[i], x[i], shift)


def test_shift_flip_flips_both_axes_and_shift_hflip_only_left_right():
    x = _images(b=64)
    shift = max_shift(12)

    def kinds(mode: str) -> set[str]:
        out = augment_batch(x, mode, _gen(5))
        seen = set()
        for i in range(len(x)):
            for name, image in (("none", x[i]), ("lr", x[i].flip(2)), ("ud", x[i].flip(1)),
                                ("both", x[i].flip(1).flip(2))):
                if _matches(out[i], image, shift):
                    seen.add(name)
        return seen

    assert kinds("shift-flip") == {"none", "lr", "ud", "both"}
    assert kinds("shift-hflip") == {"none", "lr"}


def test_auto_table_and_fallback():
    assert resolve_augment("auto", "pathmnist") == "shift-flip"
    assert resolve_augment("auto", "PathMNIST_64") == "shift-flip"
    assert resolve_augment("auto", "dermamnist") == "shift-flip"
    assert resolve_augment("auto", "cifar10") == "shift-hflip"
    assert resolve_augment("auto", "my_unknown_npz") == "shift"  # translations are safe nearly everywhere
    assert resolve_augment("none", "pathmnist") == "none"  # an explicit mode wins over the table
    assert set(DATASET_DEFAULTS.values()) <= set(MODES)


def test_bad_mode_is_a_user_error_naming_the_choices():
    with pytest.raises(UserError, match="shift-flip"):
        resolve_augment("rotate", "digits")
    with pytest.raises(ValueError, match="resolve"):
        augment_batch(_images(), "auto", _gen())


def test_augmentation_does_not_touch_the_global_rng():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    augment_batch(_images(), "shift-flip", _gen())
    assert torch.equal(torch.rand(3), expected)
