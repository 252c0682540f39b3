"""BADGE (Ash et al. 2020, "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds").

The gradient embedding of row i is the gradient of the cross-entropy at the predicted label yhat_i
with respect to the last linear layer's weights: g_i = (p_i - onehot(yhat_i)) (x) f_i, with f_i the
input of that layer (``head_features``). It has C*H entries per row, so it is never built: the
squared distance between two of them factorises,

    ||g_i - g_j||^2 = |a_i|^2 |f_i|^2 + |a_j|^2 |f_j|^2 - 2 (a_i . a_j)(f_i . f_j),   a = p - onehot(yhat),

and the distances of every row to one row are two matrix-vector products: O(N*(C+H)) memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import register_candidate
from candidates.diversity import SqDistToRow, _d2_sample, diversity_sample


def gradient_factors(probs: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
    """a = p - onehot(argmax p) (N, C) and f (N, H): g_i = a_i (x) f_i. (A tie between the top two
    classes takes the lower class as yhat; |a| is the same either way.)"""
    a = probs.float().clone()
    a[torch.arange(len(a), device=a.device), a.argmax(dim=1)] -= 1.0
    return a, features.float()


def gradient_sq_dist(a: Tensor, f: Tensor) -> tuple[Tensor, SqDistToRow]:
    """|g_i|^2 (N,) and the squared gradient-embedding distances of every row to one row."""
    a_sq, f_sq = (a * a).sum(dim=1), (f * f).sum(dim=1)
    g_sq = a_sq * f_sq  # (N,)

    def to_row(row: int) -> Tensor:
        return (g_sq + g_sq[row] - 2.0 * (a @ a[row]) * (f @ f[row])).clamp_min_(0.0)

    return g_sq, to_row


@register_candidate("badge", needs={"probs", "head_features"}, kind="set")
def badge(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """BADGE, Ash et al. 2020: k-means++ seeding (D^2 sampling) on last-layer gradient embeddings at
    the predicted label. As in the authors' code the first centre is the row of largest gradient
    norm (ties drawn at random), not a uniform one."""
    a, f = gradient_factors(out.require("probs"), out.require("head_features"))
    g_sq, to_row = gradient_sq_dist(a, f)
    first = _d2_sample((g_sq == g_sq.max()).double(), generator)
    return diversity_sample(to_row, out.n, budget, 0.5, generator, first=first)
