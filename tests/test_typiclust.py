"""TypiClust: typicality known values, dense points chosen, labeled clusters avoided, contract."""

from __future__ import annotations

import torch

from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, get_candidate, run_candidate
from candidates.typiclust import knn_typicality, typiclust_select


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three tight blobs of 30 points far apart, plus 6 scattered outliers; returns (x, blob id)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    blobs = torch.cat([c + 0.5 * torch.randn(30, 2, generator=g) for c in centres])  # (90, 2)
    outliers = torch.tensor([[10.0, 10.0], [-10.0, 5.0], [30.0, 30.0], [-8.0, -8.0], [25.0, -9.0], [8.0, 28.0]])
    ids = torch.cat([torch.arange(3).repeat_interleave(30), torch.full((6,), -1)])
    return torch.cat([blobs, outliers]), ids


def test_knn_typicality_known_values():
    # points on a line at 0, 1, 3: with k=1 the nearest other point is 1, 1, 2 away
    x = torch.tensor([[0.0], [1.0], [3.0]])
    typ = knn_typicality(x, x, k=1, self_index=torch.arange(3))
    torch.testing.assert_close(typ, torch.tensor([1.0, 1.0, 0.5]), atol=1e-6, rtol=1e-6)
    # k=2: mean distances (1+3)/2, (1+2)/2, (2+3)/2
    typ2 = knn_typicality(x, x, k=2, self_index=torch.arange(3))
    torch.testing.assert_close(typ2, 1.0 / torch.tensor([2.0, 1.5, 2.5]), atol=1e-6, rtol=1e-6)


def test_knn_typicality_chunked_equals_unchunked():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    full = knn_typicality(x, x, k=5, self_index=torch.arange(50))
    chunked = knn_typicality(x, x, k=5, self_index=torch.arange(50), chunk=7)
    torch.testing.assert_close(full, chunked)


def test_typiclust_picks_dense_centres_never_outliers():
    x, ids = _blobs()
    rows = typiclust_select(x, x.new_zeros(0, 2), budget=3, generator=torch.Generator().manual_seed(0))
    assert (ids[rows] >= 0).all()  # outliers are the least typical points: never chosen
    for r in rows.tolist():  # each pick is the point nearest its blob's mean, i.e. the most typical one
        centre = x[ids == ids[r]].mean(dim=0)
        assert (x[r] - centre).norm() < 0.6


def test_typiclust_one_query_per_blob():
    x, ids = _blobs()
    x, ids = x[ids >= 0], ids[ids >= 0]  # without outliers k-means with 3 clusters finds the 3 blobs
    for seed in range(5):
        rows = typiclust_select(x, x.new_zeros(0, 2), budget=3, generator=torch.Generator().manual_seed(seed))
        assert sorted(ids[rows].tolist()) == [0, 1, 2]


def test_typiclust_prefers_clusters_without_labels():
    x, ids = _blobs()
    x, ids = x[ids >= 0], ids[ids >= 0]  # three clean blobs: k-means with 3 clusters finds them
    labeled = (ids == 0) & (torch.arange(len(ids)) % 6 == 0)  # 5 labeled points, all in blob 0
    rows = typiclust_select(x[~labeled], x[labeled], budget=2, generator=torch.Generator().manual_seed(1),
                            max_clusters=3)
    assert sorted(ids[~labeled][rows].tolist()) == [1, 2]  # one query in each cluster without labels


def test_typiclust_budget_distinct_and_deterministic():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(3))
    labeled = torch.randn(15, 8, generator=torch.Generator().manual_seed(4))
    a = typiclust_select(x, labeled, budget=25, generator=torch.Generator().manual_seed(5))
    b = typiclust_select(x, labeled, budget=25, generator=torch.Generator().manual_seed(5))
    assert a.shape == (25,) and len(a.unique()) == 25 and a.min() >= 0 and a.max() < 200
    assert torch.equal(a, b)


def test_typiclust_budget_beyond_cluster_cap_and_whole_pool():
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    rows = typiclust_select(x, x.new_zeros(0, 3), budget=30, generator=torch.Generator().manual_seed(0),
                            max_clusters=4, max_reference=5)
    assert sorted(rows.tolist()) == list(range(30))  # clusters are revisited until the pool is used up


def test_typiclust_candidate_meets_the_registry_contract():
    cand = get_candidate("typiclust")
    assert cand.kind == "set" and cand.needs == frozenset({"embeddings"})
    emb = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    out = PoolOutputs(n=40, embeddings=emb)
    before = emb.clone()
    a = run_candidate("typiclust", out, budget=7, generator=0)
    b = run_candidate("typiclust", out, budget=7, generator=0)
    assert a.shape == (40,) and torch.isfinite(a).all() and int(a.sum()) == 7
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(emb, before)
    rows = candidate_choice("typiclust", out, budget=7, generator=0)
    assert torch.equal(a.nonzero().squeeze(1), rows.sort().values)
