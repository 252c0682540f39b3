"""Known values for consistency, learning_loss and cluster_margin (issue 9, items 3, 7, 8), their
outputs in the inference pass, and short AutoAL / ALBL runs with them among the candidates."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import fcluster, linkage

from autoal.errors import UserError
from autoal.learner import Learner, TrainSettings, infer_pool, view_augment
from autoal.loop import make_learner, run
from autoal.models import add_loss_module, build_classifier, loss_ranking_loss
from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, get_candidate
from candidates.cluster_margin import average_linkage, cluster_margin, micro_cluster_count, round_robin
from candidates.consistency import consistency_embeddings, prediction_variance
from conftest import make_dataset, tiny_config

NEW = ("consistency", "learning_loss", "cluster_margin")


def test_registered_with_their_needs():
    assert get_candidate("consistency").needs == {"probs", "aug_probs", "embeddings"}
    assert get_candidate("learning_loss").needs == {"predicted_loss"}
    assert get_candidate("cluster_margin").needs == {"probs", "embeddings"}
    assert get_candidate("consistency").kind == get_candidate("cluster_margin").kind == "set"


# -- consistency ---------------------------------------------------------------------------------------
def _two_class(a: float, b: float) -> tuple[list[float], list[list[float]]]:
    """An image predicted [a, 1-a] and one view predicted [b, 1-b]: sum_c var = (a - b)^2 / 2."""
    return [a, 1 - a], [[b, 1 - b]]


def test_prediction_variance_known_values():
    probs = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]])
    aug = torch.tensor([[[0.0, 1.0], [1.0, 0.0]],  # views 0/1 and 1/0 around an image at 1/0
                        [[0.3, 0.7], [0.3, 0.7]],  # every view agrees: no variance
                        [[0.7, 0.3], [0.3, 0.7]]])  # (N=3, N_a=2, C=2)
    # row 0: class 0 takes 1, 0, 1 -> variance 2/9, class 1 the same; row 2: 0.5, 0.7, 0.3 -> 0.08/3 each
    expected = torch.tensor([4 / 9, 0.0, 2 * 0.08 / 3])
    torch.testing.assert_close(prediction_variance(probs, aug), expected)
    torch.testing.assert_close(prediction_variance(probs, aug, chunk=2), expected)  # chunking changes nothing


def test_consistency_embedding_scales_features_by_the_variance():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    aug = torch.tensor([[[0.0, 1.0]], [[0.5, 0.5]]])
    f = torch.tensor([[2.0, -4.0], [3.0, 3.0]])
    torch.testing.assert_close(consistency_embeddings(probs, aug, f), torch.tensor([[1.0, -2.0], [0.0, 0.0]]))


def test_consistency_is_k_center_greedy_on_g_from_the_origin():
    """g = [0.5, 0], [0.45, 0], [0, 0.25], [0, 0.025]. From the origin the largest |g| comes first (row 0);
    then row 2, far from both centres, before row 1, which is more inconsistent but next to row 0;
    then row 1 (0.05 from row 0) before row 3 (0.025 from the origin)."""
    rows = [_two_class(1.0, 0.0), _two_class(1.0, 1.0 - math.sqrt(0.9)),
            _two_class(1.0, 1.0 - math.sqrt(0.5)), _two_class(1.0, 1.0 - math.sqrt(0.5))]
    out = PoolOutputs(n=4, probs=torch.tensor([p for p, _ in rows]), aug_probs=torch.tensor([v for _, v in rows]),
                      embeddings=torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.1]]))
    for seed in range(3):  # no ties: the same order whatever the generator
        assert candidate_choice("consistency", out, budget=4, generator=seed).tolist() == [0, 2, 1, 3]


def test_consistency_on_a_fully_consistent_pool_still_picks_budget_distinct_rows():
    probs = torch.full((6, 3), 1 / 3)
    out = PoolOutputs(n=6, probs=probs, aug_probs=probs[:, None].repeat(1, 4, 1), embeddings=torch.randn(6, 2))
    picks = candidate_choice("consistency", out, budget=4, generator=0)
    assert len(picks.unique()) == 4


def _model_and_loader(n_classes: int = 4, size: int = 8):
    data = make_dataset(n_train=40, n_classes=n_classes, size=size)
    model = build_classifier("cnn", 1, size, n_classes, generator=torch.Generator().manual_seed(0)).eval()

    def load(rows: torch.Tensor) -> torch.Tensor:
        return data.normalise(data.train.images[rows])

    return data, model, load


def test_aug_probs_layout_one_row_per_image_and_view():
    """With identity views every view of an image must give exactly the image's own prediction: a
    layout that mixed images and views (B x N_a against N_a x B) would not."""
    _, model, load = _model_and_loader()
    out = infer_pool(model, load, torch.arange(40), frozenset({"probs", "aug_probs"}), mc_samples=0,
                     batch_size=16, seed=0, device=torch.device("cpu"), aug_views=5, augment="none")
    assert out.aug_probs.shape == (40, 5, 4)
    torch.testing.assert_close(out.aug_probs, out.probs[:, None].expand(40, 5, 4))


def test_aug_probs_are_seeded_and_vary_with_shifts():
    _, model, load = _model_and_loader(size=16)

    def views(seed: int) -> torch.Tensor:
        return infer_pool(model, load, torch.arange(40), frozenset({"probs", "aug_probs"}), mc_samples=0,
                          batch_size=16, seed=seed, device=torch.device("cpu"), aug_views=6,
                          augment="shift").aug_probs

    a, b = views(0), views(0)
    assert torch.equal(a, b)
    assert not torch.equal(a, views(1))
    assert (a.var(dim=1).sum(dim=(1)) > 0).all()  # shifted views change the prediction of every image


def test_views_of_digits_are_shifted_although_digits_train_without_augmentation():
    assert view_augment("auto", "digits") == "shift"
    assert view_augment("auto", "pathmnist") == "shift-flip"
    assert view_augment("none", "cifar10") == "shift"


# -- learning loss -------------------------------------------------------------------------------------
def test_ranking_loss_known_values():
    # pairs (0, 3) and (1, 2): l_0 > l_3 and lhat_0 - lhat_3 = 0.5 -> 1 - 0.5; l_1 < l_2, lhat equal -> 1
    predicted = torch.tensor([0.5, 0.0, 0.0, 0.0])
    target = torch.tensor([5.0, 1.0, 2.0, 0.0])
    torch.testing.assert_close(loss_ranking_loss(predicted, target), torch.tensor(0.75))
    # the right order by more than the margin costs nothing; a single sample has no pair
    torch.testing.assert_close(loss_ranking_loss(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0])), torch.tensor(0.0))
    assert float(loss_ranking_loss(torch.tensor([1.0]), torch.tensor([2.0]))) == 0.0


def test_loss_module_leaves_the_classifier_weights_as_they_were():
    data = make_dataset()
    plain = Learner(data, TrainSettings(), torch.device("cpu")).new_model(7)
    with_module = Learner(data, TrainSettings(loss_prediction=True), torch.device("cpu")).new_model(7)
    assert plain.loss_module is None and with_module.loss_module is not None
    classifier = {k: v for k, v in with_module.state_dict().items() if not k.startswith("loss_module.")}
    assert classifier.keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, classifier[key]), key


def test_loss_module_levels_follow_the_paper():
    """Small CNN: the first two conv stages (pooled), the embedding and the head's hidden layer."""
    model = add_loss_module(build_classifier("cnn", 1, 28, 10), 1, 28, torch.Generator().manual_seed(0))
    assert [fc.in_features for fc in model.loss_module.levels] == [32, 64, model.embedding_dim, 128]
    logits, levels = model.eval().forward_with_levels(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3, 10) and [tuple(v.shape[:2]) for v in levels] == [(3, 32), (3, 64), (3, 1152), (3, 128)]
    assert model.loss_module(levels).shape == (3,)


def test_forward_with_levels_gives_the_forward_logits():
    model = build_classifier("cnn", 1, 8, 4, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    logits, levels = model.forward_with_levels(x)
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(levels[-2], model.embed(x))


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_trained_loss_module_ranks_the_pool_by_its_loss():
    """Trained with the task model on 48 labels, the module's predicted loss on 80 unseen samples ranks
    them like their actual cross-entropy (Spearman 0.50; an untrained module gives about 0)."""
    data = make_dataset(n_train=128)
    learner = Learner(data, TrainSettings(epochs=20, min_steps=100, batch_size=16, loss_prediction=True,
                                          augment="none"), torch.device("cpu"))
    model = learner.fit(torch.arange(48), seed=0)
    pool = torch.arange(48, 128)
    out = learner.infer(model, pool, frozenset({"probs", "predicted_loss"}), seed=1)
    loss = F.cross_entropy(out.probs.log(), data.train.labels[pool], reduction="none")
    assert _spearman(out.predicted_loss, loss) > 0.3
    scores = candidate_choice("learning_loss", out, budget=5, generator=0)
    assert set(scores.tolist()) == set(out.predicted_loss.topk(5).indices.tolist())


def test_predicted_loss_needs_the_module():
    _, model, load = _model_and_loader()
    with pytest.raises(ValueError, match="loss-prediction module"):
        infer_pool(model, load, torch.arange(4), frozenset({"probs", "predicted_loss"}), mc_samples=0,
                   batch_size=4, seed=0, device=torch.device("cpu"))


@pytest.mark.parametrize(("overrides", "expected"), [
    (dict(strategy="learning_loss"), True),
    (dict(strategy="entropy"), False),
    (dict(strategy="autoal", candidates="entropy,learning_loss"), True),
    (dict(strategy="autoal", candidates="entropy,margin"), False),
    (dict(strategy="albl", candidates="margin,learning_loss"), True),
])
def test_only_a_run_that_reads_predicted_loss_gets_the_module(overrides, expected):
    learner = make_learner(tiny_config(**overrides), make_dataset(), torch.device("cpu"))
    assert learner.settings.loss_prediction is expected
    assert (learner.new_model(0).loss_module is not None) is expected


# -- cluster margin ------------------------------------------------------------------------------------
def _partition(labels) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, c in enumerate(list(labels)):
        groups.setdefault(int(c), set()).add(i)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_average_linkage_matches_scipy(k):
    """30 random points (seed 2: single, average and weighted linkage all cut them differently at 2-8)."""
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = average_linkage(x, torch.ones(30), k)
    theirs = fcluster(linkage(x.numpy(), method="average"), k, criterion="maxclust")
    assert _partition(ours) == _partition(theirs)
    assert sorted(set(ours.tolist())) == list(range(k))


def test_average_linkage_weights_a_centre_by_its_samples():
    """A centre standing for 3 samples merges as 3 copies of the point would in scipy's average linkage."""
    x = torch.tensor([[0.0], [1.0], [2.2], [5.0], [6.5]], dtype=torch.float64)
    counts = torch.tensor([1, 3, 1, 2, 1])
    expanded = x.repeat_interleave(counts, dim=0)
    owner = torch.arange(5).repeat_interleave(counts)
    for k in (2, 3):
        theirs = fcluster(linkage(expanded.numpy(), method="average"), k, criterion="maxclust")
        ours = average_linkage(x, counts, k)
        assert _partition(ours[owner]) == _partition(theirs)
    assert _partition(average_linkage(x, counts, 2)) == {frozenset({0, 1, 2}), frozenset({3, 4})}


def test_round_robin_smallest_cluster_first_one_per_pass():
    rows = torch.tensor([10, 11, 12, 13, 14, 15])
    clusters = torch.tensor([0, 0, 0, 1, 2, 2])  # sizes 3, 1, 2
    for seed in range(5):
        picks = round_robin(rows, clusters, 4, torch.Generator().manual_seed(seed)).tolist()
        assert picks[0] == 13  # the singleton first
        assert picks[1] in (14, 15) and picks[2] in (10, 11, 12)
        assert picks[3] == ({14, 15} - {picks[1]}).pop()  # second pass: the two-cluster's other row
    assert len(round_robin(rows, clusters, 10, torch.Generator().manual_seed(0))) == 6


def test_cluster_margin_spreads_the_low_margin_picks_over_clusters():
    """Three blobs of 30, 20 and 10 samples. The 30 lowest margins: 25 in blob A (its 3 lowest are the
    pool's lowest, margin's picks) and 5 in blob B, none in C. Round-robin from the smaller cluster first
    takes B, A, B."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    blob = torch.tensor([0] * 30 + [1] * 20 + [2] * 10)
    x = centres[blob] + 0.5 * torch.randn(60, 2, generator=g)
    margin = torch.empty(60)
    margin[:25] = torch.linspace(0.01, 0.25, 25)  # A's 25 lowest
    margin[25:30] = 0.9  # the rest of A: confident
    margin[30:35] = torch.linspace(0.26, 0.30, 5)  # B's 5 low ones
    margin[35:] = torch.linspace(0.5, 0.8, 25)  # everything else higher than the 30 lowest
    top = (1 + margin) / 2
    probs = torch.stack([top, 1 - top], dim=1)
    out = PoolOutputs(n=60, probs=probs, embeddings=x)
    assert set(candidate_choice("margin", out, budget=3, generator=0).tolist()) == {0, 1, 2}
    for seed in range(3):
        picks = cluster_margin(out, budget=3, generator=torch.Generator().manual_seed(seed))
        assert blob[picks].tolist() == [1, 0, 1]
        assert (margin[picks] <= 0.30).all()  # only among the k_m * budget lowest margins
    # k_m = 1: the candidates are margin's own three picks, all in A
    assert set(candidate_choice("cluster_margin:k_m=1", out, budget=3, generator=0).tolist()) == {0, 1, 2}


def test_parameters_of_the_new_candidates():
    assert get_candidate("consistency").values == {"T": 0.0}
    assert get_candidate("cluster_margin").values == {"k_m": 10}
    assert get_candidate("consistency:T=0.5").name == "consistency:T=0.5"
    rows = [_two_class(1.0, 0.0), _two_class(1.0, 0.5), _two_class(1.0, 0.2)]
    out = PoolOutputs(n=3, probs=torch.tensor([p for p, _ in rows]), aug_probs=torch.tensor([v for _, v in rows]),
                      embeddings=torch.eye(3))
    assert len(candidate_choice("consistency:T=0.5", out, budget=3, generator=0).unique()) == 3


def test_cluster_margin_memory_bound_centres():
    assert micro_cluster_count(165_000) == 512
    assert micro_cluster_count(100) == 20
    assert micro_cluster_count(3) == 3


# -- in the loop and in AutoAL's / ALBL's column form ----------------------------------------------------
@pytest.mark.parametrize("strategy", ["autoal", "albl"])
def test_autoal_and_albl_run_with_the_new_candidates(tmp_path, strategy):
    cfg = tiny_config(strategy=strategy, candidates="entropy," + ",".join(NEW), rounds=2, search_epochs=2)
    summary = run(cfg, tmp_path, data=make_dataset())
    assert summary["query_rounds"] == 2
    records = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    key = "weights" if strategy == "autoal" else "expert_probs"
    assert set(NEW) <= set(records[0]["selector"][key])


@pytest.mark.parametrize("strategy", NEW)
def test_each_new_candidate_runs_alone_in_the_loop(tmp_path, strategy):
    summary = run(tiny_config(strategy=strategy, rounds=1), tmp_path, data=make_dataset())
    assert summary["query_rounds"] == 1


def test_killed_learning_loss_run_resumes_exactly(tmp_path):
    """The loss module is part of the kept model (warm start) and of its seeded initialisation."""
    cfg = tiny_config(strategy="learning_loss", rounds=3, warm_start=True)
    whole = run(cfg, tmp_path / "whole", data=make_dataset())
    run(cfg, tmp_path / "killed", data=make_dataset(), stop_after=2)
    resumed = run(cfg, tmp_path / "killed", data=make_dataset())
    assert resumed["acc"] == whole["acc"]
    queried = [[json.loads(line)["queried"] for line in (tmp_path / d / "rounds.jsonl").read_text().splitlines()]
               for d in ("whole", "killed")]
    assert queried[0] == queried[1]


def test_aug_views_setting_reaches_the_inference_and_zero_is_refused(tmp_path):
    learner = make_learner(tiny_config(strategy="consistency", aug_views=3), make_dataset(), torch.device("cpu"))
    model = learner.fit(torch.arange(8), seed=0)
    out = learner.infer(model, torch.arange(8, 20), get_candidate("consistency").needs, seed=0)
    assert out.aug_probs.shape == (12, 3, 4)
    with pytest.raises(UserError, match="--aug-views 0"):
        run(tiny_config(strategy="consistency", aug_views=0), tmp_path, data=make_dataset())
    run(tiny_config(strategy="entropy", aug_views=0, rounds=1), tmp_path / "entropy", data=make_dataset())  # unused
