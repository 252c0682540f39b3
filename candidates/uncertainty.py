"""Uncertainty from one deterministic pass: entropy, margin, least confidence."""

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import register_candidate


@register_candidate("entropy", needs={"probs"})
def entropy(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Predictive entropy -sum_c p log p, shape (N,); xlogy keeps p=0 finite."""
    p = out.require("probs")  # (N, C)
    return -torch.xlogy(p, p).sum(dim=1)


@register_candidate("margin", needs={"probs"})
def margin(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Negative gap between the two most probable classes, shape (N,)."""
    top2 = out.require("probs").topk(2, dim=1).values  # (N, 2)
    return -(top2[:, 0] - top2[:, 1])


@register_candidate("least_confidence", needs={"probs"})
def least_confidence(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """1 - max_c p, shape (N,)."""
    return 1.0 - out.require("probs").max(dim=1).values
