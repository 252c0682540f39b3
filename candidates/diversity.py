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
        # |c|^2 - 2 x.c in one fused matmul; |x|^2 is the same for every centre, added after the min
        d = torch.addmm(c_sq, xb, centres.T, alpha=-2.0)  # (chunk, K)
        best = d.min(dim=1)
        dists.append((best.values + (xb * xb).sum(dim=1)).clamp_min_(0.0))
        idx.append(best.indices)
    return torch.cat(dists), torch.cat(idx)


def nearest_row(x: Tensor, centres: Tensor, chunk: int = CHUNK_ROWS) -> Tensor:
    """For each centre (K, D): the index of its nearest row of x (N, D). A running minimum over
    chunks of rows, so memory stays O(chunk*K) however large N is."""
    c_sq = (centres * centres).sum(dim=1)  # (K,)
    best_d = torch.full_like(c_sq, float("inf"))
    best_i = torch.zeros(centres.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], chunk):
        xb = x[start:start + chunk]
        d = torch.addmm(c_sq, xb, centres.T, alpha=-2.0) + (xb * xb).sum(dim=1, keepdim=True)  # (chunk, K)
        chunk_best = d.min(dim=0)
        closer = chunk_best.values < best_d  # strict: a tie keeps the lower row, as one argmin would
        best_d = torch.where(closer, chunk_best.values, best_d)
        best_i = torch.where(closer, chunk_best.indices + start, best_i)
    return best_i


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii): row indices of k distinct initial centres.

    Each centre is drawn with probability proportional to the squared distance to the nearest
    centre chosen so far (D^2 sampling). The k draws are sequential, so each step is kept cheap:
    the distance update is one matrix-vector product |x|^2 - 2 x.c + |c|^2 (one read of x, no
    (N, D) temporaries), and a draw is a cumulative sum and a binary search on the device.
    """
    n = x.shape[0]
    x_sq = (x * x).sum(dim=1)  # (N,)
    chosen = torch.empty(k, dtype=torch.long)
    min_d = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)  # (N,) to the nearest centre
    for j in range(k):
        row = int(torch.randint(n, (1,), generator=generator)) if j == 0 else _d2_sample(min_d, generator)
        if row is None:  # every remaining point coincides with a centre: pick uniformly among the rest
            free = torch.ones(n, dtype=torch.float64)
            free[chosen[:j]] = 0.0
            row = int(torch.multinomial(free, 1, generator=generator))
        chosen[j] = row
        c = x[row]
        d = torch.addmv(x_sq, x, c, alpha=-2.0).add_(x_sq[row]).clamp_min_(0.0)  # (N,) squared distances to c
        torch.minimum(min_d, d, out=min_d)
        min_d[row] = 0.0  # exactly: a chosen row is never drawn again
    return chosen


def _d2_sample(weights: Tensor, generator: torch.Generator) -> int | None:
    """One row drawn with probability proportional to ``weights`` (N,), or None when they sum to 0."""
    cumulative = weights.double().cumsum(dim=0)  # float64, so the running sum of N terms stays accurate
    total = float(cumulative[-1])
    if total <= 0:
        return None
    u = torch.rand((), dtype=torch.float64, generator=generator).item() * total  # in [0, total)
    # the first row whose cumulative weight exceeds u: a row of weight 0 owns an empty interval
    at = torch.tensor([u], dtype=torch.float64, device=weights.device)
    return min(int(torch.searchsorted(cumulative, at, right=True)), weights.shape[0] - 1)


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
    nearest = nearest_row(x, centres).tolist()  # (K,): nearest row of x for each centre
    chosen, taken = [], set()
    for j, row in enumerate(nearest):
        if row in taken:
            d = ((x - centres[j]) ** 2).sum(dim=1)
            d[torch.tensor(sorted(taken), device=x.device)] = float("inf")
            row = int(d.argmin())
        chosen.append(row)
        taken.add(row)
    return torch.tensor(chosen, dtype=torch.long)


@register_candidate("kmeans", needs={"embeddings"}, kind="set")
def kmeans(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Cluster the embeddings into ``budget`` clusters; query the point nearest each centre."""
    x = out.require("embeddings").float()  # (N, D)
    seeds = kmeans_plus_plus(x, budget, generator)
    centres = lloyd(x, x[seeds].clone())
    return nearest_distinct(x, centres)
