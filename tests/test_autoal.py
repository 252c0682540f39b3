"""AutoAL: relaxation pieces on known values, the column form, SearchNet's modes, gradients (unrolled
hypergradients against finite differences on a float64 toy), the search on constructed evidence, the
planted pool through the whole loop, FitNet's competence, records, TensorBoard and resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoal import runlog
from autoal.loop import make_learner, run
from autoal.methods.relaxation import count_penalty, fit_gmm_1d, gmm_threshold, ranking_loss, soft_selection
from autoal.methods.search import (
    SearchNet,
    aligned_batches,
    descriptors,
    fold_ids,
    hardness,
    heldout_value,
    labeled_folds,
    per_pick_contribution,
    selected_column,
    selected_columns,
    split_labeled,
    unrolled_heldout_loss,
    unrolled_selected_loss,
)
from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice
from autoal.selectors import RoundContext, make_selector
from conftest import make_dataset, tiny_config

SEVEN = ["entropy", "margin", "least_confidence", "bald", "kmeans", "var_ratio", "mean_std"]
PLANTED = ["margin", "anti_margin", "noise_a", "noise_b"]


# --- relaxation -------------------------------------------------------------------------------

def test_gmm_threshold_selects_about_r_of_a_known_mixture():
    gen = torch.Generator().manual_seed(0)
    n = 6000
    low = torch.randn(int(0.8 * n), generator=gen)
    high = 6.0 + 0.5 * torch.randn(n - len(low), generator=gen)
    s = torch.cat([low, high])
    for r in (0.05, 0.1):
        for k in (2, 7):
            theta = gmm_threshold(s, k, r)
            assert abs(float((s > theta).float().mean()) - r) < 0.01, (r, k)
    weights, means, _ = fit_gmm_1d(s, 2)
    torch.testing.assert_close(weights.sort().values, torch.tensor([0.2, 0.8], dtype=torch.float64), atol=0.01,
                               rtol=0)
    torch.testing.assert_close(means.sort().values, torch.tensor([0.0, 6.0], dtype=torch.float64), atol=0.1, rtol=0)


def test_gmm_threshold_is_deterministic_and_handles_constant_scores():
    s = torch.rand(50, generator=torch.Generator().manual_seed(1))
    assert gmm_threshold(s, 7, 0.1) == gmm_threshold(s.clone(), 7, 0.1)
    assert float(gmm_threshold(torch.full((5,), 2.0), 3, 0.1)) == 2.0


def test_soft_selection_has_a_gradient_and_the_published_slope_has_none():
    s = torch.linspace(0, 1, 40, dtype=torch.float64, requires_grad=True)
    theta = gmm_threshold(s, 2, 0.1)
    sel = soft_selection(s, theta, tau_scale=0.5)
    (sel.sum() + count_penalty(sel, 0.1)).backward()
    assert s.grad.abs().sum() > 0
    s.grad = None
    soft_selection(s, theta, 0.5, slope=1e11).sum().backward()
    assert s.grad.abs().sum() == 0  # saturated: exactly 0/1, no gradient anywhere


def test_soft_selection_ignores_a_common_scale_or_shift_of_the_scores():
    gen = torch.Generator().manual_seed(0)
    s = torch.rand(64, generator=gen, dtype=torch.float64).requires_grad_(True)
    loss = torch.rand(64, generator=gen, dtype=torch.float64)
    theta = gmm_threshold(s, 3, 0.1)
    sel = soft_selection(s, theta, tau_scale=0.5)
    (-(sel * loss).mean() + count_penalty(sel, 0.1)).backward()
    assert s.grad.abs().max() > 1e-3  # relative changes do matter
    assert abs(float(s.grad.sum())) < 1e-12  # d/d(shift)
    assert abs(float(s.grad @ s.detach())) < 1e-12  # d/d(scale)


def test_ranking_loss_is_zero_for_a_correct_ordering_with_margin():
    target = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert float(ranking_loss(torch.tensor([30.0, 20.0, 10.0, 0.0]), target)) == 0.0
    assert float(ranking_loss(torch.tensor([0.0, 10.0, 20.0, 30.0]), target)) > 0.0


# --- columns, descriptors, records ------------------------------------------------------------

def test_selected_column_puts_the_mass_on_the_best_rows_with_a_fractional_last():
    rows = torch.tensor([4, 0, 2, 1])
    torch.testing.assert_close(selected_column(rows, 5, 2.5), torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0]))
    torch.testing.assert_close(selected_column(rows, 5, 0.09), torch.tensor([0.0, 0.0, 0.0, 0.0, 0.09]))
    torch.testing.assert_close(selected_column(rows, 5, 2.0), torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0]))


def _outputs(n: int = 40, classes: int = 4, seed: int = 0) -> PoolOutputs:
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, classes, generator=gen)
    return PoolOutputs(n=n, probs=logits.softmax(1), embeddings=torch.randn(n, 6, generator=gen))


@pytest.mark.parametrize("mass", [0.3, 1.0, 2.7, 5.0])
def test_every_column_has_the_same_form_whatever_its_kind(mass):
    """Score and set candidates alike: total mass r * N, values in [0, 1], at most ceil(mass) marked."""
    out = _outputs()
    a = selected_columns(["margin", "kmeans", "noise_a", "entropy"], out, mass, seed=0)
    assert a.shape == (40, 4)
    torch.testing.assert_close(a.sum(dim=0), torch.full((4,), mass))
    assert ((a >= 0) & (a <= 1)).all() and ((a > 0).sum(dim=0) <= math.ceil(mass)).all()


def test_pool_columns_mark_each_candidates_own_picks():
    out = _outputs()
    a = selected_columns(["margin", "entropy"], out, 5.0, seed=3)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    margin_picks = candidate_choice("margin", out, budget=5, generator=torch.Generator().manual_seed(1))
    assert set(a[:, 0].nonzero().squeeze(1).tolist()) == set(margin_picks.tolist())  # no ties in these scores


def test_descriptors_are_sorted_probabilities_and_hardness_is_the_error_probability():
    probs = torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    torch.testing.assert_close(descriptors(probs), torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]]))
    torch.testing.assert_close(hardness(probs, torch.tensor([1, 2])), torch.tensor([0.3, 0.75]))


def test_heldout_value_ranks_samples_by_how_much_one_step_on_them_lowers_the_others_loss():
    """The closed form against autograd: one SGD step on sample i through a real linear layer, and the
    change it makes to the other samples' mean cross-entropy."""
    gen = torch.Generator().manual_seed(0)
    h, y = torch.randn(12, 5, generator=gen), torch.randint(3, (12,), generator=gen)
    layer = nn.Linear(5, 3)
    with torch.no_grad():
        probs = torch.softmax(layer(h), dim=1)
    drops = []
    for i in range(12):
        others = torch.arange(12) != i
        stepped = nn.Linear(5, 3)
        stepped.load_state_dict(layer.state_dict())
        grads = torch.autograd.grad(F.cross_entropy(stepped(h[i:i + 1]), y[i:i + 1]), list(stepped.parameters()))
        with torch.no_grad():
            before = F.cross_entropy(stepped(h[others]), y[others])
            for param, grad in zip(stepped.parameters(), grads):
                param -= 1e-3 * grad
            drops.append(float(before - F.cross_entropy(stepped(h[others]), y[others])))
    expected = torch.tensor(drops).argsort().argsort().float() / 11  # distinct values: plain ranks
    torch.testing.assert_close(heldout_value(probs, y, h), expected)
    # a sample the model already fits (p = onehot(y)) has no gradient, so no value beyond the tie rank
    sure = torch.eye(3)[y]
    assert heldout_value(sure, y, h).unique().tolist() == [0.5]


def test_per_pick_contribution_splits_a_shared_pick():
    scales = torch.tensor([1.0, 1.0, 2.0])
    w = torch.full((2, 3), 0.5)
    a = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # pick 0 wanted by two strategies, pick 1 by one
    torch.testing.assert_close(per_pick_contribution(scales, w, a), torch.tensor([0.25, 0.25, 0.5]))


def test_searchnet_gives_the_same_weights_in_train_and_eval_mode():
    net = SearchNet(10, 4)
    d = descriptors(torch.rand(32, 10).softmax(1))
    net.train()
    w_train = net(d)[0]
    net.eval()
    torch.testing.assert_close(w_train, net(d)[0], rtol=0, atol=0)
    assert not any(isinstance(m, (nn.modules.batchnorm._NormBase, nn.Dropout)) for m in net.modules())
    torch.testing.assert_close(net.scales, torch.ones(4))


def test_aligned_batches_cover_every_sample_once_per_pass_and_never_hold_one():
    batches = aligned_batches(11, 4, steps=4, gen=torch.Generator().manual_seed(0))
    assert len(batches) == 4 and min(len(b) for b in batches) >= 2
    assert sorted(torch.cat(batches[:2]).tolist()) == list(range(11))


def test_split_is_nested_across_rounds():
    bits = torch.randint(2, (100,), generator=torch.Generator().manual_seed(0))
    tr_small, val_small = split_labeled(torch.arange(0, 40), bits)
    tr_big, val_big = split_labeled(torch.arange(0, 80), bits)
    assert set(tr_small.tolist()) <= set(tr_big.tolist()) and set(val_small.tolist()) <= set(val_big.tolist())
    assert not set(tr_big.tolist()) & set(val_big.tolist()) and len(tr_big) + len(val_big) == 80


@pytest.mark.parametrize("k_folds", [2, 3])
def test_cross_fitting_folds_put_every_labeled_sample_in_one_l_val_and_stay_nested(k_folds):
    ids = fold_ids(200, k_folds, seed=0)
    small, big = labeled_folds(torch.arange(0, 60), ids, k_folds), labeled_folds(torch.arange(0, 120), ids, k_folds)
    assert len(big) == k_folds
    vals = torch.cat([v for _, v in big])
    assert sorted(vals.tolist()) == list(range(120))  # every labeled sample is evidence exactly once
    for (tr, val), (tr_small, val_small) in zip(big, small):
        assert not set(tr.tolist()) & set(val.tolist()) and len(tr) + len(val) == 120
        # a fold's FitNet, trained on earlier L_tr, has never seen this round's L_val
        assert set(tr_small.tolist()) <= set(tr.tolist()) and not set(tr_small.tolist()) & set(val.tolist())
    first_tr, first_val = labeled_folds(torch.arange(0, 120), ids, 1)[0]
    if k_folds == 2:  # fold 0 is the paper's single split, so search_folds=1 runs are unchanged
        assert torch.equal(big[0][1], first_val) and torch.equal(big[1][1], first_tr)


def test_cross_fitting_adds_one_simulation_per_fold_each_round(tmp_path):
    cfg = tiny_config(strategy="autoal", rounds=2, search_folds=2, search_epochs=2)
    run(cfg, tmp_path / "run", data=make_dataset())
    state = runlog.load_checkpoint(tmp_path / "run")
    memory = state["selector"]["memory"]
    assert [m["fold"] for m in memory] == [0, 1, 0, 1]
    assert set(state["selector"]["fitnets"]) == {0, 1}
    for first, second in zip(memory[::2], memory[1::2]):  # the two folds of a round are disjoint
        assert not set(first["rows"].tolist()) & set(second["rows"].tolist())


# --- unrolled objectives: hypergradients ------------------------------------------------------

def _toy(seed: int = 0):
    """A float64 linear FitNet (4 -> 3) and a linear 'SearchNet' producing sel for 6 samples."""
    gen = torch.Generator().manual_seed(seed)
    x = lambda n: torch.randn(n, 4, generator=gen, dtype=torch.float64)  # noqa: E731
    y = lambda n: torch.randint(3, (n,), generator=gen)  # noqa: E731
    fitnet = nn.Linear(4, 3).double()
    searcher = nn.Linear(4, 1).double()
    with torch.no_grad():
        for p in (*fitnet.parameters(), *searcher.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return fitnet, searcher, (x(6), y(6)), (x(5), y(5)), (x(7), y(7))


@pytest.mark.parametrize("objective_name", ["heldout", "unrolled"])
def test_unrolled_hypergradients_match_finite_differences(objective_name):
    """Catches a detached sel inside the unrolled steps: the analytic gradient would miss the update's route."""
    fitnet, searcher, selectable, train, heldout = _toy()
    inner = torch.optim.SGD(fitnet.parameters(), lr=0.5)

    def objective() -> torch.Tensor:
        sel = torch.sigmoid(searcher(selectable[0])).squeeze(1)
        if objective_name == "heldout":
            return unrolled_heldout_loss(fitnet, inner, sel, selectable, train, heldout, steps=3)
        return unrolled_selected_loss(fitnet, inner, sel, selectable, train, steps=3)

    grad = torch.autograd.grad(objective(), searcher.weight)[0]
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in fitnet.parameters())  # FitNet's own weights get nothing
    eps = 1e-6
    numeric = torch.zeros_like(grad)
    flat = searcher.weight.data.view(-1)
    for j in range(grad.numel()):
        flat[j] += eps
        up = float(objective().detach())
        flat[j] -= 2 * eps
        down = float(objective().detach())
        flat[j] += eps
        numeric.view(-1)[j] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-8)


# --- the search on constructed evidence -------------------------------------------------------

def _evidence(rounds: int = 6, n: int = 30, seed: int = 0) -> list[dict]:
    """Simulations where column 0 marks hard samples (hardness 0.9), column 1 easy ones (0.0) and
    columns 2, 3 random ones (the L_val average, 0.4): the planted pool's evidence, made exact."""
    gen = torch.Generator().manual_seed(seed)
    memory = []
    for _ in range(rounds):
        loss = torch.full((n,), 0.4)
        a = torch.zeros(n, 4)
        rows = torch.randperm(n, generator=gen)
        for k, value in enumerate((0.9, 0.0, None, None)):
            a[rows[2 * k:2 * k + 2], k] = 1.0
            if value is not None:
                loss[rows[2 * k:2 * k + 2]] = value
        memory.append({"rows": torch.arange(n), "a": a, "d": descriptors(torch.rand(n, 4, generator=gen).softmax(1)),
                       "loss": loss, "r": 2 / n})
    return memory


def _fitted_selector(**overrides):
    data = make_dataset()
    cfg = tiny_config(strategy="autoal", candidates="margin,anti_margin,noise_a,noise_b", **overrides)
    selector = make_selector("autoal", cfg)
    learner = make_learner(cfg, data, torch.device("cpu"))
    selector.memory = _evidence()
    selector.searchnet, selector.optimizer = selector._new_searchnet(learner, 0)
    stats = selector._fit(None, None, torch.Generator().manual_seed(0), selector.memory)
    with torch.no_grad():
        weights = selector.searchnet.scales * torch.cat([selector.searchnet(m["d"])[0] for m in selector.memory]).mean(0)
    return selector, weights, stats


def test_the_search_weights_the_column_of_hard_samples_highest_and_the_easy_one_lowest():
    """The search objective and the count penalty must drive this; the ranking loss alone cannot."""
    _, weights, stats = _fitted_selector()
    assert stats["grad_norm"] > 0
    assert weights[0] > weights[2] and weights[0] > weights[3], weights
    assert weights[1] < weights[2] and weights[1] < weights[3], weights


def _noisy_evidence(rounds: int = 6, n: int = 30, seed: int = 1) -> list[dict]:
    """Columns 0 and 1 equally good in expectation (each marked sample hard with probability 0.7),
    columns 2, 3 poor (0.1), one marked sample per column and round: the MNIST regime, r * n_val ~ 1."""
    gen = torch.Generator().manual_seed(seed)
    memory = []
    for _ in range(rounds):
        loss, a = torch.full((n,), 0.3), torch.zeros(n, 4)
        rows = torch.randperm(n, generator=gen)
        for k, p in enumerate((0.7, 0.7, 0.1, 0.1)):
            a[rows[k], k] = 1.0
            loss[rows[k]] = float(torch.rand(1, generator=gen) < p)
        memory.append({"rows": torch.arange(n), "a": a, "d": descriptors(torch.rand(n, 4, generator=gen).softmax(1)),
                       "loss": loss, "r": 1 / n})
    return memory


def _weights_after_search(memory: list[dict], **overrides) -> Tensor:
    cfg = tiny_config(strategy="autoal", candidates="margin,anti_margin,noise_a,noise_b", **overrides)
    selector = make_selector("autoal", cfg)
    selector.memory = memory
    selector._fit_searchnets(make_learner(cfg, make_dataset(), torch.device("cpu")), None, seed=3, round_=0)
    with torch.no_grad():
        return selector.searchnet.scales * torch.cat([selector.searchnet(m["d"])[0] for m in memory]).mean(0)


def test_bagged_search_hedges_between_equally_good_columns_and_keeps_clear_evidence():
    one = _weights_after_search(_noisy_evidence(), search_epochs=20)
    bags = _weights_after_search(_noisy_evidence(), search_epochs=20, search_bags=5)
    # one fit goes to a corner on a few samples' luck; the bags' mean keeps both good columns in play
    assert bags[:2].min() / bags[:2].max() > 2 * (one[:2].min() / one[:2].max()), (one, bags)
    assert bags[:2].min() > bags[2:].max(), bags
    clear = _weights_after_search(_evidence(), search_epochs=20, search_bags=3)
    assert clear[0] > clear[2:].max() and clear[1] < clear[2:].min(), clear


def test_published_mode_has_no_gradient_at_all():
    _, weights, stats = _fitted_selector(search_mode="published")
    assert stats["grad_norm"] == 0.0
    torch.testing.assert_close(weights, torch.full((4,), 0.5))  # still the equal-weight start


def test_the_query_follows_the_fitted_weights_on_the_pool_columns():
    """Pool columns in the same order and form as L_val's: the weighted column's picks are the query."""
    selector, _, _ = _fitted_selector()
    out = _outputs(n=60, classes=4)
    a = selected_columns(selector.candidates, out, 6.0, seed=1)
    with torch.no_grad():
        w = selector.searchnet(descriptors(out.probs))[0]
        s = selector.searchnet.scores(w, a)
    picks = set(torch.topk(s, 6).indices.tolist())
    assert picks == set(a[:, 0].nonzero().squeeze(1).tolist())


def test_the_selectors_query_is_what_the_weighted_candidate_would_pick_from_the_same_model():
    """The real pool path: columns built in the same order and form as L_val's, so evidence for the
    first candidate makes the query that candidate's own picks (reordered columns would not)."""
    cfg = tiny_config(strategy="autoal", candidates=",".join(PLANTED), budget=6, search_epochs=20)
    ctx, selector = _context(cfg, make_dataset(n_classes=4))
    selector.memory = _evidence(rounds=8)
    picks = set(selector.select(ctx).indices.tolist())
    margin = set(ctx.unlabeled[candidate_choice("margin", ctx.outputs, budget=6, generator=0)].tolist())
    assert len(picks & margin) >= 5, (picks, margin)


# --- through the loop -------------------------------------------------------------------------

def _context(cfg, data, n_labeled: int = 16) -> tuple[RoundContext, object]:
    learner = make_learner(cfg, data, torch.device("cpu"))
    labeled = torch.arange(0, n_labeled)
    unlabeled = torch.arange(n_labeled, len(data.train))
    selector = make_selector(cfg.strategy, cfg)
    model = learner.fit(labeled, seed=0)
    outputs = learner.infer(model, unlabeled, selector.needs, seed=0)
    ctx = RoundContext(round=0, budget=cfg.budget, outputs=outputs, unlabeled=unlabeled, labeled=labeled,
                       model=model, learner=learner, seed=123, generator=torch.Generator().manual_seed(123))
    return ctx, selector


@pytest.mark.parametrize("mode", ["first-order", "unrolled", "heldout", "influence"])
def test_every_objective_reaches_searchnet_and_returns_budget_distinct_indices(mode):
    cfg = tiny_config(strategy="autoal", search_mode=mode, search_epochs=2, budget=5)
    ctx, selector = _context(cfg, make_dataset())
    selection = selector.select(ctx)
    info = selection.info
    # one step per epoch and simulation (each is one batch here), one simulation per fold
    assert info["grad_norm"] > 0 and info["search_steps"] == 2 * cfg.search_folds
    picks = selection.indices
    assert len(picks) == 5 and len(picks.unique()) == 5 and set(picks.tolist()) <= set(ctx.unlabeled.tolist())
    for key in ("weights", "scales", "mean_w", "w_spread", "contribution", "agreement", "column_target"):
        assert sorted(info[key]) == sorted(SEVEN), key
    assert abs(sum(info["contribution"].values()) - 1.0) < 1e-6
    assert 0.0 <= info["fitnet_val_acc"] <= 1.0


def test_fitnet_is_trained_to_the_task_models_competence_on_digits():
    from autoal.config import read_config_file
    from autoal.config import RunConfig
    from autoal.data import load_dataset

    data = load_dataset("digits")
    cfg = RunConfig(**{**read_config_file("experiments/configs/digits.toml"), "strategy": "autoal"})
    learner = make_learner(cfg, data, torch.device("cpu"))
    labeled = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:60]
    selector = make_selector("autoal", cfg)
    bits = torch.randint(2, (len(data.train),), generator=torch.Generator().manual_seed(1))
    l_tr, _ = split_labeled(labeled, bits)
    ctx = RoundContext(round=0, budget=10, outputs=None, unlabeled=None, labeled=labeled, model=None,
                       learner=learner, seed=5, generator=torch.Generator().manual_seed(5))
    fitnet_acc = learner.evaluate(selector._fitnet(ctx, l_tr))[0]
    task_acc = learner.evaluate(learner.fit(l_tr, seed=7))[0]
    assert fitnet_acc > task_acc - 0.05, (fitnet_acc, task_acc)


def test_planted_pool_the_search_finds_margin_through_the_whole_loop(tmp_path):
    """The planted test, small: margin highest, anti_margin lowest, and the query is mostly margin's."""
    data = make_dataset(n_train=240, n_test=64, n_classes=8, seed=3)  # 8 classes: not learnt perfectly
    cfg = tiny_config(strategy="autoal", candidates=",".join(PLANTED), init_size=40, budget=20, rounds=3,
                      epochs=20, min_steps=60, search_epochs=30)
    run(cfg, tmp_path, data=data)
    infos = [r["selector"] for r in runlog.read_rounds(tmp_path) if "selector" in r]
    last = infos[-1]
    assert max(last["weights"], key=last["weights"].get) == "margin", last["weights"]
    assert min(last["weights"], key=last["weights"].get) == "anti_margin", last["weights"]
    assert last["agreement"]["margin"] >= 0.7, last["agreement"]


def test_autoal_run_writes_weight_records_and_tensorboard(tmp_path):
    cfg = tiny_config(strategy="autoal", search_epochs=2, rounds=2)
    run(cfg, tmp_path, data=make_dataset())
    selectors = [r["selector"] for r in runlog.read_rounds(tmp_path) if "selector" in r]
    assert len(selectors) == 2
    for info in selectors:
        assert info["grad_norm"] > 0 and info["search_seconds"] >= 0 and info["fitnet_val_acc"] is not None

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / runlog.TENSORBOARD), size_guidance={"histograms": 0}).Reload()
    tags = events.Tags()
    assert {f"autoal/weight/{n}" for n in SEVEN} <= set(tags["scalars"])
    assert {f"autoal/contribution/{n}" for n in SEVEN} <= set(tags["scalars"])
    assert {f"autoal/sample_weight/{n}" for n in SEVEN} <= set(tags["histograms"])
    assert "autoal/fitnet_val_acc" in tags["scalars"] and len(events.Scalars("autoal/weight/entropy")) == 2


def test_resume_mid_run_gives_the_same_selections(tmp_path):
    data = make_dataset()
    cfg = tiny_config(strategy="autoal", search_epochs=2, rounds=3)
    run(cfg, tmp_path / "whole", data=data)
    run(cfg, tmp_path / "split", data=data, stop_after=1)
    run(cfg, tmp_path / "split", data=data)
    whole, split = runlog.read_rounds(tmp_path / "whole"), runlog.read_rounds(tmp_path / "split")
    assert [r["queried"] for r in whole] == [r["queried"] for r in split]
    assert [r["selector"]["weights"] for r in whole[:-1]] == [r["selector"]["weights"] for r in split[:-1]]
