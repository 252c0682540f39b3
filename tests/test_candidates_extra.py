"""Known values for issue 9's candidates: diversity sampling with temperature, core-set, BADGE, BatchBALD;
and the labeled embeddings core-set starts from."""

from __future__ import annotations

import pytest
import torch

from autoal.learner import Learner, TrainSettings
from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, get_candidate
from conftest import make_dataset


def _line(points: list[float], labeled: list[float] | None) -> PoolOutputs:
    """Pool points on a line (1-D embeddings), optionally labeled points as centres."""
    x = torch.tensor(points).unsqueeze(1)
    lab = None if labeled is None else torch.tensor(labeled).unsqueeze(1)
    return PoolOutputs(n=len(points), embeddings=x, labeled_embeddings=lab)


def _first_pick_frequencies(name: str, out: PoolOutputs, draws: int = 6000) -> torch.Tensor:
    picks = torch.tensor([int(candidate_choice(name, out, budget=1, generator=s)[0]) for s in range(draws)])
    return torch.bincount(picks, minlength=out.n).double() / draws


# -- 1. diversity sampling with temperature T (Buchert et al., eq. 1-2) -------------------------------
def test_diversity_at_half_draws_in_proportion_to_squared_distance():
    """Labeled point at 0, pool at distances 1, 2, 3: T = 0.5 draws them 1 : 4 : 9 (D^2 sampling)."""
    freq = _first_pick_frequencies("diversity", _line([1.0, 2.0, 3.0], labeled=[0.0]))
    torch.testing.assert_close(freq, torch.tensor([1, 4, 9], dtype=torch.float64) / 14, atol=0.02, rtol=0)


def test_diversity_temperature_sets_the_exponent():
    """T = 1 draws in proportion to d itself (1 : 2 : 3), not d^2."""
    from candidates.diversity import diversity_from_labeled

    out = _line([1.0, 2.0, 3.0], labeled=[0.0])
    picks = torch.tensor([int(diversity_from_labeled(out, 1, 1.0, torch.Generator().manual_seed(s))[0])
                          for s in range(6000)])
    freq = torch.bincount(picks, minlength=3).double() / 6000
    torch.testing.assert_close(freq, torch.tensor([1, 2, 3], dtype=torch.float64) / 6, atol=0.02, rtol=0)


# labeled at 0; pool at 1, 2, 10, 11, 5. k-center greedy: 11 (d 11), then 5 (d 5 to {0, 11}), then 2 (d 2)
GREEDY_POOL, GREEDY_ORDER = [1.0, 2.0, 10.0, 11.0, 5.0], [3, 4, 1]


@pytest.mark.parametrize("seed", range(5))
def test_coreset_is_k_center_greedy_from_the_labeled_set(seed):
    rows = candidate_choice("coreset", _line(GREEDY_POOL, labeled=[0.0]), budget=3, generator=seed)
    assert rows.tolist() == GREEDY_ORDER


@pytest.mark.parametrize("seed", range(5))
def test_small_temperature_is_greedy(seed):
    from candidates.diversity import diversity_from_labeled

    rows = diversity_from_labeled(_line(GREEDY_POOL, labeled=[0.0]), 3, 0.01, torch.Generator().manual_seed(seed))
    assert rows.tolist() == GREEDY_ORDER


def test_coreset_breaks_ties_at_random_not_by_row():
    """Two pool points equally far from the labeled one: each is the first pick about half the time."""
    freq = _first_pick_frequencies("coreset", _line([-4.0, 4.0, 1.0], labeled=[0.0]), draws=400)
    assert freq[2] == 0 and 0.35 < freq[0] < 0.65


def test_coreset_never_picks_a_copy_of_a_labeled_point_while_others_remain():
    out = _line([0.0, 0.0, 3.0, 3.0, 7.0], labeled=[0.0, 3.0])
    rows = candidate_choice("coreset", out, budget=3, generator=0)
    assert rows[0] == 4 and set(rows.tolist()) <= {0, 1, 2, 3, 4} and len(set(rows.tolist())) == 3
    diverse = candidate_choice("diversity", out, budget=1, generator=0)
    assert diverse.tolist() == [4]  # the only row with d > 0


def test_without_labeled_embeddings_the_first_pick_is_uniform():
    """Where no labeled rows were given (labeled_embeddings None) core-set starts from a uniform row."""
    freq = _first_pick_frequencies("coreset", _line([1.0, 2.0, 3.0, 50.0], labeled=None), draws=800)
    assert (freq > 0.15).all()


def test_diversity_with_labeled_embeddings_gives_budget_distinct_rows_reproducibly():
    g = torch.Generator().manual_seed(0)
    out = PoolOutputs(n=30, embeddings=torch.randn(30, 4, generator=g), labeled_embeddings=torch.randn(6, 4, generator=g))
    for name in ("coreset", "diversity"):
        a = candidate_choice(name, out, budget=30, generator=1)
        assert sorted(a.tolist()) == list(range(30))
        assert torch.equal(candidate_choice(name, out, budget=8, generator=2),
                           candidate_choice(name, out, budget=8, generator=2))


# -- labeled embeddings: computed with the pool's, kept by subset --------------------------------------
def test_learner_infer_adds_the_labeled_rows_embeddings():
    data = make_dataset(n_train=40)
    learner = Learner(data, TrainSettings(eval_batch_size=16, mc_samples=3), torch.device("cpu"))
    model = learner.new_model(0).eval()
    pool, labeled = torch.arange(10, 40), torch.tensor([3, 0, 7])
    needs = get_candidate("coreset").needs
    out = learner.infer(model, pool, needs, seed=0, labeled_rows=labeled)
    every = learner.infer(model, torch.arange(40), frozenset({"embeddings"}), seed=0)
    torch.testing.assert_close(out.labeled_embeddings, every.embeddings[labeled])
    torch.testing.assert_close(out.embeddings, every.embeddings[pool])
    assert learner.infer(model, pool, needs, seed=0).labeled_embeddings is None  # no labeled rows given
    assert learner.infer(model, pool, frozenset({"embeddings"}), seed=0, labeled_rows=labeled).labeled_embeddings is None
    assert out.subset(torch.tensor([0, 5])).labeled_embeddings is out.labeled_embeddings


def test_labeled_embeddings_of_another_width_are_refused():
    with pytest.raises(ValueError, match="feature sizes"):
        PoolOutputs(n=2, embeddings=torch.zeros(2, 3), labeled_embeddings=torch.zeros(4, 5))


# -- 3. BADGE (Ash et al. 2020) -----------------------------------------------------------------------
def _badge_outputs(n: int = 14, c: int = 3, h: int = 4, seed: int = 0) -> PoolOutputs:
    g = torch.Generator().manual_seed(seed)
    return PoolOutputs(n=n, probs=torch.randn(n, c, generator=g).mul(2).softmax(dim=1),
                       head_features=torch.randn(n, h, generator=g).relu())


def _brute_gradient_embeddings(out: PoolOutputs) -> torch.Tensor:
    """g_i = (p_i - onehot(yhat_i)) (x) f_i materialised: (N, C*H)."""
    a = out.probs - torch.nn.functional.one_hot(out.probs.argmax(dim=1), out.probs.shape[1]).float()
    return (a.unsqueeze(2) * out.head_features.unsqueeze(1)).flatten(1)


def test_badge_factorised_distances_equal_the_materialised_ones():
    from candidates.badge import gradient_factors, gradient_sq_dist

    out = _badge_outputs()
    g = _brute_gradient_embeddings(out)
    g_sq, to_row = gradient_sq_dist(*gradient_factors(out.probs, out.head_features))
    torch.testing.assert_close(g_sq, (g * g).sum(dim=1))
    for row in (0, 5, 13):
        torch.testing.assert_close(to_row(row), ((g - g[row]) ** 2).sum(dim=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_badge_is_kmeans_plus_plus_on_brute_force_gradient_embeddings(seed):
    """Same generator, same picks as D^2 seeding on the materialised embeddings from the largest-norm row."""
    from candidates.diversity import diversity_sample, euclidean_to_row

    out = _badge_outputs(seed=seed)
    g = _brute_gradient_embeddings(out).double()
    rows = candidate_choice("badge", out, budget=6, generator=seed)
    gen = torch.Generator().manual_seed(seed)
    torch.rand((), dtype=torch.float64, generator=gen)  # the draw badge spends on the (tie-free) largest-norm row
    expected = diversity_sample(euclidean_to_row(g), out.n, 6, 0.5, gen, first=int((g * g).sum(1).argmax()))
    assert rows.tolist() == expected.tolist()
    assert rows[0] == int((g * g).sum(1).argmax())


def test_badge_takes_the_largest_gradient_first_and_one_confident_row():
    """Rows predicted with probability 1 have a zero gradient embedding: they coincide at the origin,
    so D^2 sampling takes one of them and the three uncertain rows before any second confident one.
    |g|^2 = |p - onehot|^2 |f|^2: row 2 0.32 * 2, row 4 0.18 * 4, row 5 0.5 * 2 = 1.0, the first pick."""
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.4], [1.0, 0.0], [0.3, 0.7], [0.5, 0.5]])
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    out = PoolOutputs(n=6, probs=probs, head_features=feats)
    for seed in range(10):
        rows = candidate_choice("badge", out, budget=4, generator=seed).tolist()
        assert rows[0] == 5 and {2, 4, 5} <= set(rows) and len(set(rows)) == 4
    # every row confident: all embeddings zero, still budget distinct rows
    assert len(candidate_choice("badge", PoolOutputs(n=4, probs=torch.eye(2).repeat(2, 1),
                                                     head_features=torch.ones(4, 3)), budget=4).unique()) == 4


def test_head_features_are_the_last_linear_layers_input():
    data = make_dataset(n_train=20)
    learner = Learner(data, TrainSettings(eval_batch_size=8), torch.device("cpu"))
    model = learner.new_model(0).eval()
    out = learner.infer(model, torch.arange(20), frozenset({"probs", "head_features"}), seed=0)
    assert out.head_features.shape == (20, model.head[-1].in_features)
    with torch.no_grad():
        torch.testing.assert_close(model.head[-1](out.head_features).softmax(dim=1), out.probs)


# -- 4. BatchBALD (Kirsch et al. 2019) ----------------------------------------------------------------
def _duplicates_mc() -> torch.Tensor:
    """(T=4, N=4, C=2). Rows 0 and 1 are the same point: one-hot, class 0 under masks 0-1, class 1
    under 2-3 (BALD ln 2). Row 2 splits the masks the other way (0, 2 vs 1, 3) at 0.9 / 0.1 (BALD
    ln 2 - H(0.9) = 0.368). Row 3 is 50/50 under every mask (BALD 0)."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    s0, s1, flat = torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9]), torch.tensor([0.5, 0.5])
    return torch.stack([torch.stack([a, a, s0, flat]), torch.stack([a, a, s1, flat]),
                        torch.stack([b, b, s0, flat]), torch.stack([b, b, s1, flat])])


@pytest.mark.parametrize("seed", range(4))
def test_bald_picks_the_duplicate_batchbald_does_not(seed):
    out = PoolOutputs(n=4, mc_probs=_duplicates_mc())
    assert set(candidate_choice("bald", out, budget=2, generator=seed).tolist()) == {0, 1}
    rows = candidate_choice("batchbald", out, budget=2, generator=seed).tolist()
    assert rows[0] in (0, 1) and rows[1] == 2  # joint MI 2 ln 2 - H(0.9) = 1.06 beats ln 2 + 0


def test_batchbald_joint_entropy_known_values():
    """After row 0: H(y0, y1) = ln 2 (a copy adds nothing), H(y0, y2) = 2 ln 2, H(y0, y3) = 2 ln 2."""
    from candidates.batchbald import joint_entropy_with_each_row

    mc = _duplicates_mc().double()
    joint = mc[:, 0]  # (T, C): P_t(y0 = c), every configuration of one pick
    h = joint_entropy_with_each_row(joint / 4, mc)
    ln2 = torch.log(torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(h[1:], torch.stack([ln2, 2 * ln2, 2 * ln2]))


def test_batchbald_sampled_joint_agrees_with_the_exact_one():
    """With configurations sampled from the second pick on (max_configs 2), the greedy picks on a
    random set are those of the exact computation (many samples: the estimate is close)."""
    from candidates.batchbald import batchbald_select

    g = torch.Generator().manual_seed(0)
    mc = torch.randn(6, 12, 3, generator=g).mul(2).softmax(dim=2)  # (T, N, C)
    exact = batchbald_select(mc, 4, torch.Generator().manual_seed(1))
    sampled = batchbald_select(mc, 4, torch.Generator().manual_seed(1), max_configs=2, samples=20000)
    assert sampled.tolist() == exact.tolist()
    big = batchbald_select(mc, 12, torch.Generator().manual_seed(2), max_configs=8, samples=64)
    assert sorted(big.tolist()) == list(range(12))


def test_nearest_distinct_gives_a_second_centre_on_the_same_row_the_next_nearest_row():
    from candidates.diversity import nearest_distinct

    x = torch.tensor([[0.0, 2.0], [0.0, 3.0], [-1.0, 0.0], [5.0, 5.0]])
    centres = torch.tensor([[0.0, 1.9], [0.0, 1.6], [5.0, 4.0]])  # the first two both sit nearest row 0
    # the second centre's next nearest row is row 1 (distance^2 1.96), not row 2 (3.56), though row 2 is shorter
    assert nearest_distinct(x, centres).tolist() == [0, 1, 3]
