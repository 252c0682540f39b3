"""Reproducible randomness: every random choice in a run derives from (seed, purpose, round).

Deriving per-round seeds (instead of carrying one generator through the run) is what makes a
resumed run give exactly the results of an uninterrupted one. All randomness goes through
explicit ``torch.Generator`` objects; torch's global RNG is never seeded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
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


#: cuBLAS's deterministic workspace setting (NVIDIA's documented value); torch refuses cuBLAS
#: calls under deterministic algorithms without it.
CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_mode(on: bool) -> Iterator[None]:
    """Inside the block, torch runs only deterministic algorithms (``on``), or as it was set before.

    On: cuDNN deterministic with autotuning off (the benchmark picks kernels by timing, so two
    runs could differ), ``torch.use_deterministic_algorithms(True)`` without warn_only (an op with
    no deterministic version raises instead of quietly varying), and CUBLAS_WORKSPACE_CONFIG set
    unless the user set it. index_add_, scatter_add_ and cumsum, which this code uses, have
    deterministic CUDA versions that torch selects under this flag; adaptive average pooling has
    none, and ``autoal.accel.deterministic_pooling`` replaces it on CUDA. Off: the block changes
    nothing. The previous settings (and the environment) are restored on exit, so a library
    caller's process is left as it was.
    """
    if not on:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    env_before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        if env_before is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
