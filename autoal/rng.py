"""Reproducible randomness: every random choice in a run derives from (seed, purpose, round).

Deriving per-round seeds (instead of carrying one generator through the run) is what makes a
resumed run give exactly the results of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed determined by the run seed and the purpose keys, e.g. ("train", 3)."""
    text = "/".join(map(str, (seed, *keys))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU torch.Generator seeded by ``derive_seed``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


@contextlib.contextmanager
def torch_seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block under a fixed torch RNG state, restoring the caller's state afterwards.

    Weight initialisation and nn.Dropout draw from torch's global RNG and take no Generator, so
    this is the one place the global RNG is seeded; fork_rng keeps the seeding from leaking.
    """
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)  # scoped by fork_rng above
        yield
