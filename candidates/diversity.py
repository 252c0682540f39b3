"""Diversity: k-means on the pool embeddings, in torch on the embeddings' device.

Distances are computed in chunks of rows, so memory stays O(N*D + chunk*K), never N x N.
"""

from __future__ import annotations

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import register_candidate

CHUNK_ROWS = 4096


def nearest_centre(x: Tensor, centres: Tensor, chunk: int = CHUNK_ROWS) -> tuple[Tensor, Tensor]:
    """For each row of x (N, D): squared distance to and index of its nearest centre (K, D)."""
    c_sq = (centres * centres).sum(dim=1)  # (K,)
    dists, idx = [], []
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk]
        d = (xb * xb).sum(dim=1, keepdim=True) - 2.0 * xb @ centres.T + c_sq  # (chunk, K)
        best = d.min(dim=1)
        dists.append(best.values.clamp_min_(0.0))
        idx.append(best.indices)
    return torch.cat(dists), torch.cat(idx)


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii): row indices of k distinct initial centres."""
    n = x.shape[0]
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = torch.randint(n, (1,), generator=generator).item()
    min_d = ((x - x[chosen[0]]) ** 2).sum(dim=1)  # (N,)
    for j in range(1, k):
        weights = min_d.double().cpu()
        total = weights.sum()
        if total <= 0:  # every remaining point coincides with a centre: pick uniformly among the rest
            weights = torch.ones(n, dtype=torch.float64)
            weights[chosen[:j]] = 0.0
        chosen[j] = torch.multinomial(weights, 1, generator=generator).item()
        min_d = torch.minimum(min_d, ((x - x[chosen[j]]) ** 2).sum(dim=1))
    return chosen


def lloyd(x: Tensor, centres: Tensor, iterations: int = 20, tol: float = 1e-4) -> Tensor:
    """Lloyd iterations from the given centres (K, D); an emptied cluster keeps its centre."""
    k = centres.shape[0]
    for _ in range(iterations):
        _, assign = nearest_centre(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype).unsqueeze(1)
        updated = torch.where(counts > 0, sums / counts.clamp_min(1.0), centres)
        shift = (updated - centres).pow(2).sum() / centres.pow(2).sum().clamp_min(1e-12)
        centres = updated
        if shift < tol:
            break
    return centres


def nearest_distinct(x: Tensor, centres: Tensor) -> Tensor:
    """One distinct row per centre: its nearest row, or, where an earlier centre already took
    that row, the nearest row not yet taken (rare, so handled one at a time)."""
    _, nearest = nearest_centre(centres, x)  # (K,): nearest row of x for each centre
    chosen = nearest.clone()
    taken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for j, row in enumerate(nearest.tolist()):
        if taken[row]:
            d = ((x - centres[j]) ** 2).sum(dim=1).masked_fill_(taken, float("inf"))
            row = int(d.argmin())
            chosen[j] = row
        taken[row] = True
    return chosen.cpu()


@register_candidate("kmeans", needs={"embeddings"}, kind="set")
def kmeans(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Cluster the embeddings into ``budget`` clusters; query the point nearest each centre."""
    x = out.require("embeddings").float()  # (N, D)
    seeds = kmeans_plus_plus(x, budget, generator)
    centres = lloyd(x, x[seeds].clone())
    return nearest_distinct(x, centres)
