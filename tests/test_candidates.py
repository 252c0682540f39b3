"""Candidate strategies: a contract every registered candidate meets, and known values on tiny arrays."""

from __future__ import annotations

import math

import pytest
import torch

from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, get_candidate, list_candidates, run_candidate

N, C, T, D = 40, 4, 5, 6
L, H = 5, 8  # labeled rows, last-layer input width
A = 3  # augmented views
BUDGET = 7


@pytest.fixture
def pool_outputs() -> PoolOutputs:
    """Every field filled from a seeded generator, so any candidate finds what it needs."""
    g = torch.Generator().manual_seed(1234)
    return PoolOutputs(
        n=N,
        probs=torch.randn(N, C, generator=g).mul(2).softmax(dim=1),  # (N, C)
        mc_probs=torch.randn(T, N, C, generator=g).mul(2).softmax(dim=2),  # (T, N, C)
        embeddings=torch.randn(N, D, generator=g),  # (N, D)
        labeled_embeddings=torch.randn(L, D, generator=g),  # (L, D): core-set's labeled centres
        head_features=torch.randn(N, H, generator=g).relu(),  # (N, H): BADGE's last-layer input
        aug_probs=torch.randn(N, A, C, generator=g).mul(2).softmax(dim=2),  # (N, N_a, C): consistency's views
        predicted_loss=torch.randn(N, generator=g),  # (N,): the loss-prediction module's output
    )


def _only(outputs: PoolOutputs, needs: frozenset[str]) -> PoolOutputs:
    """The outputs with only ``needs`` filled, as the loop's inference would give them."""
    return PoolOutputs(n=outputs.n, **{k: getattr(outputs, k) for k in needs})


def _clone(outputs: PoolOutputs) -> dict[str, torch.Tensor]:
    return {k: getattr(outputs, k).clone() for k in ("probs", "mc_probs", "embeddings", "labeled_embeddings",
                                                     "head_features", "aug_probs", "predicted_loss")}


# -- contract, over the registry itself: a plug-in or a newly added candidate is tested too ----------
@pytest.mark.parametrize("name", list_candidates())
def test_candidate_contract(name, pool_outputs):
    before = _clone(pool_outputs)
    a = run_candidate(name, pool_outputs, budget=BUDGET, generator=0)
    b = run_candidate(name, pool_outputs, budget=BUDGET, generator=0)
    assert a.shape == (N,)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for key, value in before.items():  # the shared outputs are not modified
        assert torch.equal(getattr(pool_outputs, key), value), f"{name} modified PoolOutputs.{key}"


@pytest.mark.parametrize("name", list_candidates())
def test_candidate_same_seed_same_choice_budget_distinct_rows(name, pool_outputs):
    rows = candidate_choice(name, pool_outputs, budget=BUDGET, generator=3)
    again = candidate_choice(name, pool_outputs, budget=BUDGET, generator=torch.Generator().manual_seed(3))
    assert rows.shape == (BUDGET,) and rows.dtype == torch.long
    assert len(rows.unique()) == BUDGET
    assert 0 <= int(rows.min()) and int(rows.max()) < N
    assert torch.equal(rows, again)


@pytest.mark.parametrize("name", list_candidates())
def test_candidate_works_with_only_its_declared_needs(name, pool_outputs):
    """The loop computes only what a candidate declares; reading anything else would crash there."""
    cand = get_candidate(name)
    full = run_candidate(name, pool_outputs, budget=BUDGET, generator=0)
    only = run_candidate(name, _only(pool_outputs, cand.needs), budget=BUDGET, generator=0)
    torch.testing.assert_close(only, full, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in list_candidates() if get_candidate(n).kind == "set"])
def test_set_candidate_gives_exactly_budget_ones(name, pool_outputs):
    column = run_candidate(name, pool_outputs, budget=BUDGET, generator=0)
    assert set(column.unique().tolist()) <= {0.0, 1.0}
    assert int(column.sum()) == BUDGET
    rows = candidate_choice(name, pool_outputs, budget=BUDGET, generator=0)
    assert torch.equal(column.nonzero().squeeze(1).sort().values, rows.sort().values)


def test_budget_larger_than_pool_is_clipped(pool_outputs):
    for name in list_candidates():
        assert len(candidate_choice(name, pool_outputs, budget=N + 5, generator=0).unique()) == N


def test_random_depends_on_seed(pool_outputs):
    a = run_candidate("random", pool_outputs, budget=BUDGET, generator=0)
    b = run_candidate("random", pool_outputs, budget=BUDGET, generator=1)
    assert not torch.equal(a, b)


# -- known values on hand-computed arrays ------------------------------------------------------------
PROBS = torch.tensor([[0.5, 0.5, 0.0],
                      [1.0, 0.0, 0.0],
                      [0.7, 0.2, 0.1]])


def _probs(p: torch.Tensor) -> PoolOutputs:
    return PoolOutputs(n=p.shape[0], probs=p)


def _mc(mc: torch.Tensor) -> PoolOutputs:
    return PoolOutputs(n=mc.shape[1], mc_probs=mc)


def test_entropy_known_values_and_finite_at_zero():
    got = run_candidate("entropy", _probs(PROBS), budget=1)
    expected = torch.tensor([math.log(2), 0.0, -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))])
    torch.testing.assert_close(got, expected)


def test_margin_known_values():
    got = run_candidate("margin", _probs(PROBS), budget=1)
    torch.testing.assert_close(got, torch.tensor([0.0, -1.0, -0.5]))
    assert candidate_choice("margin", _probs(PROBS), budget=1).tolist() == [0]  # the tie is queried first


def test_least_confidence_known_values():
    got = run_candidate("least_confidence", _probs(PROBS), budget=1)
    torch.testing.assert_close(got, torch.tensor([0.5, 0.0, 0.3]))


def test_bald_known_values_and_finite_at_zero():
    # row 0: two confident samples that disagree -> H(mean) = ln 2, mean H = 0 -> ln 2 (epistemic)
    # row 1: two samples that agree on 50/50      -> H(mean) = ln 2, mean H = ln 2 -> 0 (aleatoric)
    mc = torch.tensor([[[1.0, 0.0], [0.5, 0.5]],
                       [[0.0, 1.0], [0.5, 0.5]]])  # (T=2, N=2, C=2)
    got = run_candidate("bald", _mc(mc), budget=1)
    torch.testing.assert_close(got, torch.tensor([math.log(2), 0.0]))


def test_var_ratio_known_values():
    # row 0: votes class 0, 0, 1 -> 1 - 2/3; row 1: three votes for class 2 -> 0
    mc = torch.tensor([[[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]],
                       [[0.5, 0.4, 0.1], [0.2, 0.2, 0.6]],
                       [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]])  # (T=3, N=2, C=3)
    got = run_candidate("var_ratio", _mc(mc), budget=1)
    torch.testing.assert_close(got, torch.tensor([1 / 3, 0.0]))


def test_var_ratio_is_the_mc_form_not_least_confidence():
    """Row 0: every MC sample says class 0 with p=0.4 (var_ratio 0, least confidence 0.6);
    row 1: samples split 0.9/0.1 between classes 0 and 1 (var_ratio 0.5, least confidence of the mean 0.5,
    of each sample 0.1). The MC form ranks row 1 first, least confidence of the mean ranks row 0 first."""
    mc = torch.tensor([[[0.4, 0.3, 0.3], [0.9, 0.1, 0.0]],
                       [[0.4, 0.3, 0.3], [0.1, 0.9, 0.0]]])  # (T=2, N=2, C=3)
    vr = run_candidate("var_ratio", _mc(mc), budget=1)
    lc = run_candidate("least_confidence", _probs(mc.mean(dim=0)), budget=1)
    torch.testing.assert_close(vr, torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(lc, torch.tensor([0.6, 0.5]))
    assert candidate_choice("var_ratio", _mc(mc), budget=1).tolist() == [1]
    assert candidate_choice("least_confidence", _probs(mc.mean(dim=0)), budget=1).tolist() == [0]


def test_mean_std_known_values():
    # row 0: class probabilities 1,0 then 0,1 -> std 0.5 per class -> 0.5; row 1: constant -> 0
    mc = torch.tensor([[[1.0, 0.0], [0.3, 0.7]],
                       [[0.0, 1.0], [0.3, 0.7]]])  # (T=2, N=2, C=2)
    got = run_candidate("mean_std", _mc(mc), budget=1)
    torch.testing.assert_close(got, torch.tensor([0.5, 0.0]))


@pytest.mark.parametrize("name", ["entropy", "bald"])
def test_zero_probabilities_give_finite_values(name):
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.5, 0.5]])
    outputs = PoolOutputs(n=3, probs=p, mc_probs=torch.stack([p, p.flip(0)]))
    assert torch.isfinite(run_candidate(name, outputs, budget=1)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_picks_one_point_per_separated_blob(seed):
    g = torch.Generator().manual_seed(seed)
    blobs, per_blob = 5, 12
    centres = torch.arange(blobs, dtype=torch.float32).unsqueeze(1) * 100.0 * torch.ones(1, 3)  # far apart
    x = (centres.repeat_interleave(per_blob, dim=0) + torch.randn(blobs * per_blob, 3, generator=g))
    perm = torch.randperm(len(x), generator=g)
    x, blob_of = x[perm], torch.arange(blobs).repeat_interleave(per_blob)[perm]
    rows = candidate_choice("kmeans", PoolOutputs(n=len(x), embeddings=x), budget=blobs, generator=seed)
    assert sorted(blob_of[rows].tolist()) == list(range(blobs))


def test_kmeans_with_duplicate_points_still_gives_distinct_rows():
    x = torch.zeros(10, 2)
    x[5:] = 1.0  # two distinct locations, five copies each, budget 4
    rows = candidate_choice("kmeans", PoolOutputs(n=10, embeddings=x), budget=4, generator=0)
    assert len(rows.unique()) == 4


def test_d2_sampling_draws_in_proportion_to_the_weights():
    from candidates.diversity import _d2_sample

    weights = torch.tensor([0.0, 1.0, 3.0, 0.0, 4.0])
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([_d2_sample(weights, g) for _ in range(4000)]), minlength=5)
    assert counts[0] == 0 and counts[3] == 0
    torch.testing.assert_close(counts.double() / 4000, torch.tensor([0.0, 0.125, 0.375, 0.0, 0.5], dtype=torch.float64),
                               atol=0.03, rtol=0)
    assert _d2_sample(torch.zeros(4), g) is None


@pytest.mark.parametrize("duplicates", [False, True])
def test_kmeans_plus_plus_gives_distinct_rows_even_when_k_is_n(duplicates):
    from candidates.diversity import kmeans_plus_plus

    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    if duplicates:
        x[6:] = x[:6]  # every point twice: after six draws all remaining weights are 0
    rows = kmeans_plus_plus(x, 12, torch.Generator().manual_seed(1))
    assert sorted(rows.tolist()) == list(range(12))


def test_kmeans_plus_plus_prefers_far_points():
    """D^2 sampling: after a centre in a tight blob of 50 points, the one far point (1 of 51) is drawn next."""
    from candidates.diversity import kmeans_plus_plus

    x = torch.cat([torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) * 0.01, torch.tensor([[100.0, 0]])])
    hits = sum(50 in kmeans_plus_plus(x, 2, torch.Generator().manual_seed(s)).tolist() for s in range(20))
    assert hits == 20
