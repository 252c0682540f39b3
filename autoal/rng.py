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


def _dropout_with(layer: nn.Dropout, gen: torch.Generator, x: Tensor) -> Tensor:
    if not layer.training or layer.p == 0.0:
        return x
    if layer.p == 1.0:
        return torch.zeros_like(x)
    keep = torch.empty_like(x).bernoulli_(1.0 - layer.p, generator=gen)
    return x * keep / (1.0 - layer.p)


@contextlib.contextmanager
def dropout_generator(model: nn.Module, gen: torch.Generator) -> Iterator[None]:
    """Inside the block, every ``nn.Dropout`` of ``model`` draws its masks from ``gen``.

    nn.Dropout takes no Generator and would draw from torch's global RNG; this swaps in the same
    computation (Bernoulli mask / (1 - p)) for the block and restores the layers afterwards.
    Other dropout kinds (Dropout2d, AlphaDropout, ...) of third-party models keep the global RNG.
    """
    layers = [m for m in model.modules() if type(m) is nn.Dropout]
    for layer in layers:
        layer.forward = functools.partial(_dropout_with, layer, gen)  # instance attribute shadows the method
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
