"""Strategies on T MC-dropout samples: BALD, variation ratio, mean standard deviation."""

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import register_candidate


def _entropy(p: Tensor, dim: int) -> Tensor:
    return -torch.xlogy(p, p).sum(dim=dim)


@register_candidate("bald", needs={"mc_probs"})
def bald(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Mutual information H(mean_t p_t) - mean_t H(p_t), shape (N,)."""
    mc = out.require("mc_probs")  # (T, N, C)
    return _entropy(mc.mean(dim=0), dim=1) - _entropy(mc, dim=2).mean(dim=0)


@register_candidate("var_ratio", needs={"mc_probs"})
def var_ratio(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """1 - (votes for the modal class over T MC samples) / T, shape (N,).

    The MC form: computed from one deterministic pass it would equal least_confidence.
    """
    mc = out.require("mc_probs")  # (T, N, C)
    votes = torch.zeros(mc.shape[1:], dtype=mc.dtype, device=mc.device)  # (N, C)
    votes.scatter_add_(1, mc.argmax(dim=2).T, torch.ones(mc.shape[1], mc.shape[0], dtype=mc.dtype, device=mc.device))
    return 1.0 - votes.max(dim=1).values / mc.shape[0]


@register_candidate("mean_std", needs={"mc_probs"})
def mean_std(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Mean over classes of the standard deviation over T MC samples, shape (N,)."""
    return out.require("mc_probs").std(dim=0, unbiased=False).mean(dim=1)
