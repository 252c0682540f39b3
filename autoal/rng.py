"""Reproducible randomness: every random choice in a run derives from (seed, purpose, round).

Deriving per-round seeds (instead of carrying one generator through the run) is what makes a
resumed run give exactly the results of an uninterrupted one. All randomness goes through
explicit ``torch.Generator`` objects; torch's global RNG is never seeded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from typing import Iterator

import torch
from torch import Tensor, nn


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed determined by the run seed and the purpose keys, e.g. ("train", 3)."""
    text = "/".join(map(str, (seed, *keys))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *keys: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded by ``derive_seed(seed, *keys)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


#: Dropout kinds whose masks ``dropout_generator`` draws: element-wise, and whole channels.
CHANNEL_DROPOUT = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _dropout_with(layer: nn.Module, gen: torch.Generator, x: Tensor) -> Tensor:
    if not layer.training or layer.p == 0.0:
        return x
    if layer.p == 1.0:
        return torch.zeros_like(x)
    # channel dropout zeroes whole feature maps of (N, C, ...): one draw per (sample, channel)
    shape = (*x.shape[:2], *(1,) * (x.dim() - 2)) if isinstance(layer, CHANNEL_DROPOUT) else x.shape
    keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - layer.p, generator=gen)
    return x * keep / (1.0 - layer.p)


@contextlib.contextmanager
def dropout_generator(model: nn.Module, gen: torch.Generator) -> Iterator[None]:
    """Inside the block, every ``nn.Dropout`` (and Dropout1d/2d/3d) of ``model`` draws its masks from ``gen``.

    torch's dropout layers take no Generator and would draw from the global RNG; this swaps in the
    same computation (Bernoulli mask / (1 - p), per element or per channel) for the block and
    restores the layers afterwards. AlphaDropout and other kinds of third-party models keep the
    global RNG. One mask is drawn per call over the whole input, so a batch that holds T copies of
    the same images gets T independent masks in one forward.
    """
    layers = [m for m in model.modules() if type(m) in (nn.Dropout, *CHANNEL_DROPOUT)]
    for layer in layers:
        layer.forward = functools.partial(_dropout_with, layer, gen)  # instance attribute shadows the method
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
