"""Uniform random sampling."""

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import register_candidate


@register_candidate("random")
def random(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """I.i.d. uniform scores, shape (N,): the top-b of them is a uniform random b-subset."""
    return torch.rand(out.n, generator=generator)
