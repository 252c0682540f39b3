"""Diversity: k-means on the pool embeddings, in torch on the embeddings' device.

Distances are computed in chunks of rows, so memory stays O(N*D + chunk*K), never N x N.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import Param, register_candidate

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
    centre chosen so far (D^2 sampling): ``diversity_sample`` at T = 0.5, from a uniform first row.
    """
    return diversity_sample(euclidean_to_row(x), x.shape[0], k, 0.5, generator)


#: sq_dist(row) -> (N,) squared distances of every row to ``row``: the only way the sampler sees
#: the points, so Euclidean embeddings and BADGE's factorised gradient embeddings share it.
SqDistToRow = Callable[[int], Tensor]


def euclidean_to_row(x: Tensor) -> SqDistToRow:
    """Squared Euclidean distances of the rows of x (N, D) to one of them: one matrix-vector
    product |x|^2 - 2 x.c + |c|^2 (one read of x, no (N, D) temporaries)."""
    x_sq = (x * x).sum(dim=1)  # (N,)
    return lambda row: torch.addmv(x_sq, x, x[row], alpha=-2.0).add_(x_sq[row]).clamp_min_(0.0)


def diversity_sample(sq_dist: SqDistToRow, n: int, k: int, temperature: float, generator: torch.Generator,
                     initial: Tensor | None = None, first: int | None = None) -> Tensor:
    """Diversity-based sampling (Buchert et al., seed 001, eq. 1-2): k distinct rows, one at a time.

    d_i is the distance of row i to the nearest centre (``initial``: (N,) squared distances to
    fixed centres such as the labeled set, then every row picked so far), and the next row is drawn
    with p_i proportional to d_i^(1/T) = (d_i^2)^(1/(2T)). T = 0.5 is k-means++'s D^2 sampling;
    T = 0 is k-center greedy (the farthest row, ties drawn at random); a small T approaches it.
    Without ``initial`` the first row is uniform, unless ``first`` names it. Rows whose d_i is 0 (duplicates of a centre)
    are drawn only once every other row is taken, uniformly among the rest.
    """
    if temperature < 0:
        raise ValueError(f"diversity sampling needs a temperature T >= 0, got {temperature}")
    chosen = torch.empty(k, dtype=torch.long)
    min_d = None if initial is None else initial.clone()  # (N,) squared distance to the nearest centre
    for j in range(k):
        if j == 0 and first is not None:
            row = first
        else:
            row = int(torch.randint(n, (1,), generator=generator)) if min_d is None else _draw(min_d, temperature, generator)
        if row is None:  # every remaining point coincides with a centre: pick uniformly among the rest
            free = torch.ones(n, dtype=torch.float64)
            free[chosen[:j]] = 0.0
            row = int(torch.multinomial(free, 1, generator=generator))
        chosen[j] = row
        d = sq_dist(row)  # (N,)
        min_d = d if min_d is None else torch.minimum(min_d, d, out=min_d)
        min_d[row] = 0.0  # exactly: a chosen row is never drawn again
    return chosen


def _draw(sq_d: Tensor, temperature: float, generator: torch.Generator) -> int | None:
    """One row with p proportional to sq_d^(1/(2T)); None when every weight is 0."""
    if temperature == 0.5:  # D^2 itself: no power, so k-means++ draws exactly as it always has
        return _d2_sample(sq_d, generator)
    top = sq_d.max()
    if top <= 0:
        return None
    if temperature == 0:  # k-center greedy: the farthest row, ties drawn uniformly
        return _d2_sample((sq_d == top).double(), generator)
    # (d^2 / max d^2)^(1/(2T)) in float64: the largest weight is 1, so small T underflows towards
    # the greedy choice instead of overflowing
    return _d2_sample((sq_d.double() / top).pow(0.5 / temperature), generator)


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
    x_sq: Tensor | None = None
    for j, row in enumerate(nearest):
        if row in taken:
            # |x - c|^2 up to the constant |c|^2, as a matrix-vector product: N floats, not an (N, D) temporary
            x_sq = torch.linalg.vector_norm(x, dim=1).square() if x_sq is None else x_sq
            d = torch.addmv(x_sq, x, centres[j], alpha=-2.0)
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


#: T of the registered ``diversity`` candidate: seed 001's k-means++ setting.
DIVERSITY_TEMPERATURE = 0.5


def diversity_from_labeled(out: PoolOutputs, budget: int, temperature: float, generator: torch.Generator) -> Tensor:
    """``budget`` pool rows by diversity sampling at ``temperature``, the labeled set's embeddings
    (when computed) being the initial centres. Without them (PoolOutputs.labeled_embeddings None,
    e.g. a caller that passed no labeled rows) the first pick is uniform, as in k-means++."""
    x = out.require("embeddings").float()  # (N, D)
    centres = out.labeled_embeddings
    initial = None
    if centres is not None and len(centres) > 0:
        # chunk rows so a chunk x L block stays near 16M floats however large L grows
        chunk = max(256, min(CHUNK_ROWS, (1 << 24) // len(centres)))
        initial = nearest_centre(x, centres.to(x.device, torch.float32), chunk=chunk)[0]  # (N,) squared
    return diversity_sample(euclidean_to_row(x), out.n, budget, temperature, generator, initial)


@register_candidate("diversity", needs={"embeddings", "labeled_embeddings"}, kind="set",
                    params={"T": Param(DIVERSITY_TEMPERATURE, "temperature: p_i proportional to d_i^(1/T); "
                                                              "0 = k-center greedy, 0.5 = k-means++", minimum=0.0)})
def diversity(out: PoolOutputs, *, budget: int, generator: torch.Generator,
              T: float = DIVERSITY_TEMPERATURE) -> Tensor:  # noqa: N803 (the paper's symbol)
    """Diversity-based sampling, Buchert et al. (seed 001, eq. 1-2) at temperature T (default
    DIVERSITY_TEMPERATURE, 0.5): rows drawn one at a time with p_i proportional to d_i^(1/T), d_i
    the embedding distance to the nearest labeled or already picked row. At T = 0.5 this is
    k-means++ seeding from the labeled set. Other temperatures: ``diversity:T=0.1`` (or
    ``--diversity-temperature 0.1``)."""
    return diversity_from_labeled(out, budget, T, generator)


@register_candidate("coreset", needs={"embeddings", "labeled_embeddings"}, kind="set")
def coreset(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Core-set, Sener & Savarese 2018: k-center greedy on the embeddings with the labeled set as
    the initial centres (each pick is the row farthest from every centre so far; ties at random).
    Diversity sampling at T -> 0. The paper's robust (outlier-budget MIP) variant is not built."""
    return diversity_from_labeled(out, budget, 0.0, generator)
