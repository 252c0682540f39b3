"""TypiClust (Hacohen, Dekel & Weinshall 2022): the most typical point of each under-labeled cluster.

A low-budget strategy: k-means splits the embeddings into |L| + b clusters; clusters holding the
fewest labeled points (largest first) each give one query, the unlabeled point of highest
typicality = 1 / mean distance to its k nearest neighbours within the cluster (a density estimate).

Everything runs in torch on the embeddings' device. Distances are computed in chunks of rows
against at most ``max_reference`` sampled members of a cluster, so memory stays
O(chunk * max_reference), never N x N.
"""

from __future__ import annotations

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import Param, register_candidate
from candidates.diversity import CHUNK_ROWS, kmeans_plus_plus, lloyd, nearest_centre

K_NEIGHBOURS = 20  # as in the TypiClust paper
MAX_CLUSTERS = 500  # k-means++ seeding costs one pass over the data per cluster; the paper caps it too
MIN_CLUSTER_SIZE = 5  # smaller clusters are outliers, skipped while larger clusters are left
MAX_REFERENCE = 2000  # typicality is measured against at most this many members of a cluster


def knn_typicality(points: Tensor, reference: Tensor, k: int, self_index: Tensor | None = None,
                   chunk: int = CHUNK_ROWS) -> Tensor:
    """Typicality (M,) of ``points`` (M, D) against ``reference`` (R, D): 1 / mean Euclidean distance
    to the k nearest reference rows. ``self_index`` (M,) gives each point's own row in ``reference``
    (or -1), which is then not counted as its own neighbour. Memory O(chunk * R).
    """
    n_ref = reference.shape[0]
    k = max(1, min(k, n_ref - 1 if self_index is not None else n_ref))
    ref_sq = (reference * reference).sum(dim=1)  # (R,)
    out = []
    for start in range(0, points.shape[0], chunk):
        pb = points[start:start + chunk]
        d = ((pb * pb).sum(dim=1, keepdim=True) - 2.0 * pb @ reference.T + ref_sq).clamp_min_(0.0).sqrt_()  # (chunk, R)
        if self_index is not None:
            own = self_index[start:start + chunk]
            has = (own >= 0).nonzero().squeeze(1)
            d[has, own[has]] = float("inf")
        nearest = d.topk(min(k, n_ref), dim=1, largest=False).values  # (chunk, k)
        # a lone point has only inf neighbours: typicality 0; coinciding points get a large finite value
        out.append(1.0 / (nearest.mean(dim=1) + 1e-8))
    return torch.cat(out) if out else points.new_zeros(0)


def _cluster_typicality(x: Tensor, members: Tensor, candidates: Tensor, k: int, max_reference: int,
                        generator: torch.Generator) -> Tensor:
    """Typicality of x[candidates] among the cluster ``members`` (rows of x, sorted), a sample of
    at most ``max_reference`` of them serving as neighbours."""
    reference = members
    if len(members) > max_reference:
        reference = members[torch.randperm(len(members), generator=generator)[:max_reference]].sort().values
    position = torch.full((x.shape[0],), -1, dtype=torch.long)
    position[reference] = torch.arange(len(reference))
    own = position[candidates].to(x.device)
    k = min(k, max(1, len(members) // 2))  # the paper's choice for small clusters
    return knn_typicality(x[candidates.to(x.device)], x[reference.to(x.device)], k, own).cpu()


def _next_cluster(labeled_count: Tensor, sizes: Tensor, open_: Tensor) -> int:
    """The open cluster with the fewest labeled points, then the largest, then the lowest id."""
    big = 1 + int(sizes.max())
    key = labeled_count.long() * big - sizes.long()  # lexicographic (fewest labeled, largest)
    key = key.masked_fill(~open_, torch.iinfo(torch.long).max)
    return int(key.argmin())  # argmin returns the first minimum: the lowest id on ties


def typiclust_select(embeddings_pool: Tensor, embeddings_labeled: Tensor, budget: int,
                     generator: torch.Generator, k: int = K_NEIGHBOURS, *, max_clusters: int = MAX_CLUSTERS,
                     min_cluster_size: int = MIN_CLUSTER_SIZE, max_reference: int = MAX_REFERENCE) -> Tensor:
    """TypiClust's ``budget`` distinct rows of ``embeddings_pool`` (N_u, D), in the order chosen.

    ``embeddings_labeled`` (N_l, D) are the labeled points (may have 0 rows): they shape the
    clusters and count against them but are never returned. k-means runs on pool + labeled with
    min(N_l + budget, max_clusters) clusters; randomness only from ``generator``.
    """
    n_pool = embeddings_pool.shape[0]
    if not 0 <= budget <= n_pool:
        raise ValueError(f"typiclust: budget {budget} must be in [0, {n_pool}] (the pool size)")
    if budget == 0:
        return torch.zeros(0, dtype=torch.long)
    x = torch.cat([embeddings_pool, embeddings_labeled.to(embeddings_pool.device)]).float()  # (N_u + N_l, D)
    n_clusters = min(embeddings_labeled.shape[0] + budget, max_clusters, x.shape[0])
    centres = lloyd(x, x[kmeans_plus_plus(x, n_clusters, generator)].clone())
    _, assign = nearest_centre(x, centres)
    assign = assign.cpu()  # (N_u + N_l,)
    sizes = torch.bincount(assign, minlength=n_clusters)  # (n_clusters,)
    labeled_count = torch.bincount(assign[n_pool:], minlength=n_clusters)
    unlabeled_left = torch.bincount(assign[:n_pool], minlength=n_clusters)
    large = sizes >= min_cluster_size

    cache: dict[int, tuple[Tensor, Tensor]] = {}  # cluster -> (its pool rows, their typicality)
    chosen: list[int] = []
    for _ in range(budget):
        open_ = unlabeled_left > 0
        if (open_ & large).any():  # small clusters only once the large ones are used up
            open_ &= large
        c = _next_cluster(labeled_count, sizes, open_)
        if c not in cache:
            members = (assign == c).nonzero().squeeze(1)  # rows of x, sorted
            rows = members[members < n_pool]
            cache[c] = (rows, _cluster_typicality(x, members, rows, k, max_reference, generator))
        rows, typ = cache[c]
        j = int(typ.argmax())
        chosen.append(int(rows[j]))
        typ[j] = -float("inf")  # taken: never chosen again
        unlabeled_left[c] -= 1
        labeled_count[c] += 1  # the query counts as labeled: the next query goes elsewhere
    return torch.tensor(chosen, dtype=torch.long)


@register_candidate("typiclust", needs={"embeddings"}, kind="set",
                    params={"k": Param(K_NEIGHBOURS, "neighbours of the typicality estimate", minimum=1),
                            "max_clusters": Param(MAX_CLUSTERS, "cap on the number of k-means clusters", minimum=1)})
def typiclust(out: PoolOutputs, *, budget: int, generator: torch.Generator, k: int = K_NEIGHBOURS,
              max_clusters: int = MAX_CLUSTERS) -> Tensor:
    """TypiClust on the pool alone: a candidate sees no labeled set, so b clusters over the pool.
    ``typiclust:k=10,max_clusters=200`` sets the paper's neighbours and cluster cap.

    The SelectAL selector, which knows L, calls ``typiclust_select`` with the labeled embeddings.
    """
    emb = out.require("embeddings")  # (N, D)
    return typiclust_select(emb, emb.new_zeros(0, emb.shape[1]), budget, generator, k, max_clusters=max_clusters)
