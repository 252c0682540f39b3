"""AutoAL: relaxation pieces on known values, gradients (incl. an unrolled hypergradient against finite
differences on a float64 toy), the selector contract, records, TensorBoard and resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autoal import runlog
from autoal.learner import Learner
from autoal.loop import make_learner, run
from autoal.methods.search import (
    SearchNet,
    aligned_batches,
    count_penalty,
    fit_gmm_1d,
    gmm_threshold,
    rank_normalise,
    ranking_loss,
    soft_selection,
    split_labeled,
    unrolled_heldout_loss,
)
from autoal.selectors import RoundContext, make_selector
from conftest import make_dataset, tiny_config

SEVEN = ["entropy", "margin", "least_confidence", "bald", "kmeans", "var_ratio", "mean_std"]


# --- pieces -----------------------------------------------------------------------------------

def test_rank_normalise_known_values():
    got = rank_normalise(torch.tensor([3.0, 1.0, 2.0, 2.0]))
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, 0.5, 0.5]))


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
    """Only the relative scores matter: moving every score together has zero gradient."""
    gen = torch.Generator().manual_seed(0)
    s = torch.rand(64, generator=gen, dtype=torch.float64).requires_grad_(True)
    loss = torch.rand(64, generator=gen, dtype=torch.float64)
    theta = gmm_threshold(s, 3, 0.1)
    objective = -(soft_selection(s, theta, tau_scale=0.5) * loss).mean() + count_penalty(
        soft_selection(s, theta, tau_scale=0.5), 0.1)
    objective.backward()
    assert s.grad.abs().max() > 1e-3  # relative changes do matter
    assert abs(float(s.grad.sum())) < 1e-12  # d/d(shift)
    assert abs(float(s.grad @ s.detach())) < 1e-12  # d/d(scale)


def test_ranking_loss_is_zero_for_a_correct_ordering_with_margin():
    target = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert float(ranking_loss(torch.tensor([30.0, 20.0, 10.0, 0.0]), target)) == 0.0
    assert float(ranking_loss(torch.tensor([0.0, 10.0, 20.0, 30.0]), target)) > 0.0


def test_aligned_batches_cover_every_sample_once_per_pass_and_never_hold_one():
    batches = aligned_batches(11, 4, steps=4, gen=torch.Generator().manual_seed(0))
    assert len(batches) == 4 and min(len(b) for b in batches) >= 2
    assert sorted(torch.cat(batches[:2]).tolist()) == list(range(11))  # 11 // 4 = 2 pieces per pass


def test_split_is_nested_across_rounds():
    bits = torch.randint(2, (100,), generator=torch.Generator().manual_seed(0))
    small = torch.arange(0, 40)
    big = torch.arange(0, 80)
    tr_small, val_small = split_labeled(small, bits)
    tr_big, val_big = split_labeled(big, bits)
    assert set(tr_small.tolist()) <= set(tr_big.tolist())
    assert not set(tr_big.tolist()) & set(val_big.tolist())
    assert len(tr_big) + len(val_big) == 80


# --- gradients --------------------------------------------------------------------------------

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


def test_unrolled_hypergradient_matches_finite_differences():
    fitnet, searcher, selectable, train, heldout = _toy()
    inner = torch.optim.SGD(fitnet.parameters(), lr=0.5)

    def objective() -> torch.Tensor:
        sel = torch.sigmoid(searcher(selectable[0])).squeeze(1)
        return unrolled_heldout_loss(fitnet, inner, sel, selectable, train, heldout, steps=3)

    grad = torch.autograd.grad(objective(), searcher.weight)[0]
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in fitnet.parameters())  # FitNet's own weights get nothing
    eps = 1e-6
    numeric = torch.zeros_like(grad)
    flat = searcher.weight.data.view(-1)  # perturbed in place; the inner SGD steps still need autograd
    for j in range(grad.numel()):
        flat[j] += eps
        up = float(objective().detach())
        flat[j] -= 2 * eps
        down = float(objective().detach())
        flat[j] += eps
        numeric.view(-1)[j] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-8)


def test_searchnet_outputs_and_positive_scales():
    net = SearchNet(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)), 8, 3)
    w, feats = net(torch.randn(5, 1, 4, 4))
    assert w.shape == (5, 3) and feats.shape == (5, 8) and ((w > 0) & (w < 1)).all()
    torch.testing.assert_close(net.scales, torch.ones(3))
    assert net.scores(w, torch.rand(5, 3)).shape == (5,)


def _context(cfg, data, round_: int = 0) -> tuple[RoundContext, Learner]:
    learner = make_learner(cfg, data, torch.device("cpu"))
    labeled = torch.arange(0, 16)
    unlabeled = torch.arange(16, len(data.train))
    selector = make_selector(cfg.strategy, cfg)
    model = learner.fit(labeled, seed=0)
    outputs = learner.infer(model, unlabeled, selector.needs, seed=0)
    ctx = RoundContext(round=round_, budget=cfg.budget, outputs=outputs, unlabeled=unlabeled, labeled=labeled,
                       model=model, learner=learner, seed=123, generator=torch.Generator().manual_seed(123))
    return ctx, selector


@pytest.mark.parametrize("mode", ["first-order", "unrolled"])
def test_gradient_reaches_searchnet_and_budget_distinct_indices(mode):
    data = make_dataset()
    cfg = tiny_config(strategy="autoal", search_mode=mode, search_steps=3, budget=5)
    ctx, selector = _context(cfg, data)
    selection = selector.select(ctx)
    info = selection.info
    assert info["grad_norm"] > 0
    assert all(math.isfinite(info[k]) for k in ("loss_search", "loss_fit", "loss_rank", "threshold"))
    picks = selection.indices
    assert len(picks) == 5 and len(picks.unique()) == 5
    assert set(picks.tolist()) <= set(ctx.unlabeled.tolist())
    assert sorted(info["weights"]) == sorted(SEVEN) and sorted(info["selected_share"]) == sorted(SEVEN)
    assert abs(sum(info["selected_share"].values()) - 1.0) < 1e-6


def test_searchnet_parameters_move_only_by_gradient_and_published_mode_has_none():
    data = make_dataset()
    ctx, selector = _context(tiny_config(strategy="autoal", search_steps=2), data)
    selector._ensure_nets(ctx.learner)
    start = {k: v.clone() for k, v in selector.searchnet.state_dict().items()}
    selector.select(ctx)
    moved = any(not torch.equal(start[k], v) for k, v in selector.searchnet.state_dict().items() if "rho" in k)
    assert moved
    ctx, published = _context(tiny_config(strategy="autoal", search_mode="published", search_steps=2), data)
    assert published.select(ctx).info["grad_norm"] == 0.0


# --- through the loop -------------------------------------------------------------------------

def test_autoal_run_writes_weight_records_and_tensorboard(tmp_path):
    cfg = tiny_config(strategy="autoal", search_steps=2, rounds=2)
    run(cfg, tmp_path, data=make_dataset())
    records = runlog.read_rounds(tmp_path)
    selectors = [r["selector"] for r in records if "selector" in r]
    assert len(selectors) == 2
    for info in selectors:
        assert sorted(info["weights"]) == sorted(SEVEN)
        assert info["grad_norm"] > 0 and info["search_seconds"] >= 0
    assert selectors[0]["weights"] != selectors[1]["weights"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / runlog.TENSORBOARD), size_guidance={"histograms": 0}).Reload()
    tags = events.Tags()
    assert {f"autoal/weight/{n}" for n in SEVEN} <= set(tags["scalars"])
    assert {f"autoal/sample_weight/{n}" for n in SEVEN} <= set(tags["histograms"])
    assert "selector/grad_norm" in tags["scalars"]
    assert len(events.Scalars("autoal/weight/entropy")) == 2


def test_resume_mid_run_gives_the_same_selections(tmp_path):
    data = make_dataset()
    cfg = tiny_config(strategy="autoal", search_steps=2, rounds=3)
    run(cfg, tmp_path / "whole", data=data)
    run(cfg, tmp_path / "split", data=data, stop_after=1)
    run(cfg, tmp_path / "split", data=data)
    whole, split = runlog.read_rounds(tmp_path / "whole"), runlog.read_rounds(tmp_path / "split")
    assert [r["queried"] for r in whole] == [r["queried"] for r in split]
    assert [r["selector"]["weights"] for r in whole[:-1]] == [r["selector"]["weights"] for r in split[:-1]]
