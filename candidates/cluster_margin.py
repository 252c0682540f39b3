"""Cluster-Margin (Citovsky et al. 2021, "Batch Active Learning at Scale", NeurIPS).

The algorithm: cluster the pool's embeddings by hierarchical agglomerative clustering (average
linkage); each round take the k_m * budget unlabeled samples of lowest margin p_top1 - p_top2, group
them by cluster, order the clusters by how many of those samples they hold, smallest first, and
draw round-robin: one sample at random from each cluster in turn, skipping emptied clusters, until
``budget`` are drawn. Small clusters of uncertain samples are covered first; a large region of
uncertainty gives one sample per pass, not the whole batch.

Deviations, each deliberate:

- Memory O(N*D), never N x N: full average-linkage HAC needs the N x N distance matrix (165k
  TissueMNIST images: 109 GB). The pool is first summarised by k-means into
  ``micro_cluster_count(N)`` = min(N, 2*ceil(sqrt(N)), 512) centres (k-means++ seeding and Lloyd
  iterations, chunked: the ``kmeans`` candidate's code), and average linkage agglomerates those
  centres, each weighted by its number of samples: the distance between two clusters is the
  count-weighted mean distance between their centres, the Lance-Williams update of average linkage
  on the centres. Memory: the embeddings plus a K x K matrix of K <= 512 centres.
- The clustering is recomputed every round from this round's embeddings (deterministically, from
  the round's generator) instead of once at the start: a candidate is a pure function of the
  round's outputs and keeps no state. The clusters follow the model as it improves.
- The paper cuts the dendrogram at a distance threshold epsilon tuned per dataset; here it is cut
  at ``budget`` clusters (at most the number of centres), so one round-robin pass can give every
  cluster one sample.
- k_m = MARGIN_MULTIPLE = 10 by default (the parameter ``k_m``; the paper tunes it per dataset).
- Ties (equal margins, clusters of equal size) are ordered at random by the generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import Param, register_candidate, top_k_rows
from candidates.diversity import kmeans_plus_plus, lloyd, nearest_centre

#: k_m: the round-robin draws from the k_m * budget lowest-margin samples.
MARGIN_MULTIPLE = 10
#: Most k-means centres the agglomeration starts from (a K x K matrix of float64: 2 MB at 512).
MAX_CENTRES = 512


def micro_cluster_count(n: int) -> int:
    """The k-means centres summarising N samples: 2 * ceil(sqrt(N)), at most MAX_CENTRES and N."""
    return max(1, min(n, 2 * math.ceil(math.sqrt(n)), MAX_CENTRES))


def average_linkage(centres: Tensor, counts: Tensor, k: int) -> Tensor:
    """Agglomerate K weighted centres (K, D) with ``counts`` (K,) samples each into k clusters by
    average linkage; returns each centre's cluster (K,) in 0..k-1.

    Cluster distances start as the Euclidean distances between centres and follow the average-
    linkage (UPGMA) update d(A+B, C) = (n_A d(A, C) + n_B d(B, C)) / (n_A + n_B), n the sample
    counts: the count-weighted mean distance between the clusters' centres. The closest pair merges
    first (ties: the lowest index pair, a deterministic order of a float64 matrix).
    """
    size = centres.shape[0]
    c = centres.double()
    dist = torch.cdist(c, c)  # (K, K)
    dist.fill_diagonal_(float("inf"))
    weight = counts.double().clone()
    label = torch.arange(size)
    for _ in range(size - max(k, 1)):
        flat = int(dist.argmin())
        a, b = divmod(flat, size)
        a, b = min(a, b), max(a, b)
        merged = (weight[a] * dist[a] + weight[b] * dist[b]) / (weight[a] + weight[b])  # (K,)
        dist[a], dist[:, a] = merged, merged
        dist[a, a] = float("inf")
        dist[b], dist[:, b] = float("inf"), float("inf")
        weight[a] += weight[b]
        label[label == b] = a
    _, dense = torch.unique(label, return_inverse=True)  # 0..k-1 in the order of the surviving index
    return dense


def cluster_labels(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """A cluster (N,) in 0..k'-1 (k' <= k) for every row of x (N, D): k-means micro-clusters, then
    average linkage on their weighted centres."""
    n = x.shape[0]
    seeds = kmeans_plus_plus(x, micro_cluster_count(n), generator)
    centres = lloyd(x, x[seeds].clone())
    _, assign = nearest_centre(x, centres)  # (N,)
    counts = torch.bincount(assign, minlength=len(centres)).cpu()
    used = (counts > 0).nonzero().squeeze(1)  # a centre that lost all its rows takes no part
    remap = torch.full((len(centres),), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    of_centre = average_linkage(centres[used].cpu(), counts[used], min(k, len(used)))
    return of_centre[remap[assign.cpu()]]


def round_robin(rows: Tensor, clusters: Tensor, budget: int, generator: torch.Generator) -> Tensor:
    """Up to ``budget`` of ``rows`` (M,), drawn round-robin over their ``clusters`` (M,): clusters in
    ascending order of how many of ``rows`` they hold (equal sizes in random order), each pass
    taking one random remaining row of every non-empty cluster."""
    members: dict[int, list[int]] = {}
    for pos in torch.randperm(len(rows), generator=generator).tolist():  # random order within a cluster
        members.setdefault(int(clusters[pos]), []).append(int(rows[pos]))
    ids = list(members)
    tie = torch.randperm(len(ids), generator=generator).tolist()
    order = sorted(range(len(ids)), key=lambda i: (len(members[ids[i]]), tie[i]))
    queues = [members[ids[i]] for i in order]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < budget and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < budget:
                chosen.append(q[depth])
        depth += 1
    return torch.tensor(chosen, dtype=torch.long)


def margins(probs: Tensor) -> Tensor:
    """p_top1 - p_top2 (N,): small = uncertain."""
    top2 = probs.float().topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


@register_candidate("cluster_margin", needs={"probs", "embeddings"}, kind="set",
                    params={"k_m": Param(MARGIN_MULTIPLE, "the round-robin draws from the k_m * budget "
                                                          "lowest-margin samples", minimum=1)})
def cluster_margin(out: PoolOutputs, *, budget: int, generator: torch.Generator,
                   k_m: int = MARGIN_MULTIPLE) -> Tensor:
    """Cluster-Margin, Citovsky et al. 2021: the k_m * budget lowest-margin samples (default k_m =
    MARGIN_MULTIPLE, 10; ``cluster_margin:k_m=2``), drawn round-robin from average-linkage clusters
    of the embeddings, smallest clusters first (the module docstring lists the deviations)."""
    x = out.require("embeddings").float()  # (N, D)
    probs = out.require("probs")
    clusters = cluster_labels(x, budget, generator)  # (N,)
    pool = min(out.n, k_m * budget)
    lowest = top_k_rows(-margins(probs), pool, generator=generator).cpu()  # (pool,) lowest margins first
    return round_robin(lowest, clusters[lowest], budget, generator)
