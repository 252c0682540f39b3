"""ALBL: EXP4.P stays a distribution above pmin, learns the rewarded expert, checkpoints, runs in the loop."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import Tensor

from autoal import runlog
from autoal.errors import UserError
from autoal.loop import run
from autoal.methods.albl import (ALBL, RANDOM_EXPERT, _TopRanked, _Uniform, _UniformSet, draw_per_batch,
                                 draw_per_example, expert_rewards, exp4p_pmin, exp4p_probs, exp4p_update,
                                 importance_weighted_accuracy)
from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, list_candidates
from autoal.selectors import RoundContext, make_selector
from conftest import make_dataset, tiny_config

K, T = 4, 50


def test_pmin_formula_and_cap():
    assert exp4p_pmin(4, 100) == pytest.approx(math.sqrt(math.log(4) / 400))
    assert exp4p_pmin(8, 10) == pytest.approx(1 / 16)  # the formula (0.16) would exceed 1/K: capped
    assert exp4p_pmin(5, 120) == pytest.approx(math.sqrt(math.log(5) / 600))  # digits: T = 12 rounds x 10 queries
    assert exp4p_pmin(1, 10) == 0.0


def test_probs_stay_a_distribution_above_pmin_over_many_updates():
    g = torch.Generator().manual_seed(0)
    pmin = exp4p_pmin(K, T)
    log_w = torch.zeros(K, dtype=torch.float64)
    for _ in range(500):
        p = exp4p_probs(log_w, pmin)
        assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
        assert (p >= pmin - 1e-12).all()
        rhat = torch.rand(K, generator=g, dtype=torch.float64) * 10 / p  # large, uneven rewards
        log_w = exp4p_update(log_w, p, rhat, pmin=pmin, horizon=T, delta=0.1)
        assert torch.isfinite(log_w).all() and log_w.max() == 0.0  # log space, shifted: never overflows


def test_update_known_value():
    log_w = torch.zeros(2, dtype=torch.float64)
    p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    new = exp4p_update(log_w, p, torch.tensor([1.0, 0.0]), pmin=0.1, horizon=10, delta=0.1)
    # both get the same bonus 0.05 * 2 * sqrt(ln(20) / 20); only expert 0 gets 0.05 * 1 more
    torch.testing.assert_close(new, torch.tensor([0.0, -0.05], dtype=torch.float64))
    # three trials fed back together: rhat is their sum, the variance term counts three times
    three = exp4p_update(log_w, p, torch.tensor([3.0, 0.0]), pmin=0.1, horizon=10, delta=0.1, trials=3)
    torch.testing.assert_close(three, torch.tensor([0.0, -0.15], dtype=torch.float64))


def test_importance_weighted_accuracy():
    correct = torch.tensor([True, False, True])
    weights = torch.tensor([1.0, 2.0, 1.0])
    hajek, ht = importance_weighted_accuracy(correct, weights)
    assert hajek == pytest.approx(2 / 4) and ht == pytest.approx(2 / 3)


class _RiggedALBL(ALBL):
    """ALBL whose candidate experts each rank their own block of the pool first."""

    def _advisors(self, ctx):
        n, block = ctx.outputs.n, ctx.outputs.n // len(self.candidates)
        return [*(_TopRanked(torch.roll(torch.arange(n), -k * block)) for k in range(len(self.candidates))),
                _Uniform()]


@pytest.mark.parametrize("mode,budget", [("per-example", 1), ("per-example", 3), ("per-batch", 3)])
def test_probability_moves_toward_the_rewarded_expert(mode, budget):
    """Rigged: the model gets the new picks right exactly as often as last round's picks came from
    expert ``good`` (its picks make the model better, the others' do not). The reward flows
    through the real select / after_labeling path."""
    albl = _RiggedALBL(["entropy", "margin", "least_confidence"], horizon=50, batch_mode=mode, reward="accuracy")
    good, rounds = 1, 300
    start = albl.probs[good].item()
    coin = torch.Generator().manual_seed(123)
    good_share = 0.0  # share of last round's picks that came from the good expert
    for r in range(rounds):
        ctx = _ctx(n=60, seed=r)
        ctx.budget = budget
        sel = albl.select(ctx)
        predicted = ctx.outputs.probs[sel.indices - 100].argmax(dim=1)
        right = torch.rand(budget, generator=coin) < good_share
        albl.after_labeling(ctx, sel.indices, torch.where(right, predicted, (predicted + 1) % 3))
        good_share = sel.info["expert_counts"]["margin"] / budget
    p = albl.probs
    assert p[good].item() > start + 0.15
    assert p[good] == p.max()
    assert (p >= albl.pmin - 1e-12).all()


def test_draws_are_distinct_with_positive_q():
    n, b = 30, 12
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    for draw_fn in (draw_per_example, draw_per_batch):
        for seed in range(5):
            experts = [_TopRanked(torch.arange(n)), _UniformSet(torch.tensor([3, 4, 5])), _Uniform()]
            d = draw_fn(experts, p, n, b if draw_fn is draw_per_example else 3, torch.Generator().manual_seed(seed))
            assert len(d.rows.unique()) == len(d.rows)
            assert (d.weight > 0).all() and torch.isfinite(d.credit).all()
            # advice_k(i)/q(i) weighted by p sums to 1 at every pick: q is the p-mixture of the advice
            torch.testing.assert_close(d.credit @ p, torch.ones(len(d.rows), dtype=torch.float64))


def test_expert_rewards_credit_the_advisors_of_the_picks():
    # two picks (two EXP4.P trials); expert 0 advised the first alone (q = 0.5), expert 1 both a little
    credit = torch.tensor([[1 / 0.5, 0.1 / 0.5], [0.0, 0.1 / 0.05]], dtype=torch.float64)
    torch.testing.assert_close(expert_rewards(0.8, credit), torch.tensor([1.6, 1.76], dtype=torch.float64))


def _ctx(n: int = 20, seed: int = 0) -> RoundContext:
    g = torch.Generator().manual_seed(seed)
    out = PoolOutputs(n=n, probs=torch.randn(n, 3, generator=g).softmax(dim=1),
                      embeddings=torch.randn(n, 4, generator=g))
    return RoundContext(round=0, budget=5, outputs=out, unlabeled=torch.arange(100, 100 + n),
                        labeled=torch.arange(10), model=None, learner=None, seed=seed,
                        generator=torch.Generator().manual_seed(seed))


def test_a_pending_draw_survives_the_state_dict_and_skipped_picks_leave_the_reward():
    """With --oracle human the labels arrive in another process: the draw travels in the state."""
    a = ALBL(["entropy", "kmeans"], horizon=25)
    ctx = _ctx(seed=0)
    sel = a.select(ctx)
    b = ALBL(["entropy", "kmeans"], horizon=25)
    b.load_state_dict(a.state_dict())  # paused with the draw pending
    labels = torch.arange(5) % 3
    assert b.after_labeling(None, sel.indices, labels) == a.after_labeling(ctx, sel.indices, labels)
    a.select(_ctx(seed=1))
    kept = a._pending["picks"][[0, 2, 3]]  # a person skipped the second and the last image
    info = a.after_labeling(None, kept, torch.zeros(3, dtype=torch.long))
    assert a.last["credit"].shape == (3, 3) and "reward" in info  # three trials, not five
    assert a.state_dict()["pending"] is None  # consumed
    a.select(_ctx(seed=2))
    assert a.after_labeling(None, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)) == \
        {"reward_skipped": "no pick of this round was labeled"}
    assert a.last is None  # nothing labeled: nothing to credit with next round's reward
    a.select(_ctx(seed=3))
    with pytest.raises(RuntimeError, match="other indices"):
        a.after_labeling(None, torch.tensor([0]), torch.tensor([0]))


def test_state_round_trips_through_state_dict():
    a = ALBL(["entropy", "kmeans"], horizon=25)
    for r in range(3):
        ctx = _ctx(seed=r)
        sel = a.select(ctx)
        info = a.after_labeling(ctx, sel.indices, torch.zeros(5, dtype=torch.long))
        assert 0.0 <= info["accuracy"] <= 1.0 and ("gain" in info) == (r > 0)
    state = a.state_dict()
    b = ALBL(["entropy", "kmeans"], horizon=25)
    b.load_state_dict(state)
    torch.testing.assert_close(b.probs, a.probs)
    # both continue identically
    ca, cb = _ctx(seed=9), _ctx(seed=9)
    sa, sb = a.select(ca), b.select(cb)
    assert torch.equal(sa.indices, sb.indices)
    labels = torch.ones(5, dtype=torch.long)
    assert a.after_labeling(ca, sa.indices, labels) == b.after_labeling(cb, sb.indices, labels)
    torch.testing.assert_close(a.log_w, b.log_w)
    with pytest.raises(UserError):
        ALBL(["entropy"], horizon=25).load_state_dict(state)


def test_bad_settings_are_rejected():
    with pytest.raises(UserError):
        ALBL(["entropy"], horizon=25, batch_mode="per-round")
    with pytest.raises(UserError):
        ALBL(["entropy"], horizon=25, delta=1.5)
    with pytest.raises(UserError):
        ALBL(["entropy"], horizon=25, reward="loss")
    with pytest.raises(UserError):
        ALBL(["entropy"], horizon=0)
    with pytest.raises(UserError):
        ALBL(["no_such_strategy"], horizon=25)
    with pytest.raises(UserError):
        ALBL(["entropy", "entropy"], horizon=25)


@pytest.mark.parametrize("names, message", [
    ([], "--candidates is empty; name at least one candidate strategy"),  # was: the random expert alone
    (["entropy", "kmeans", "entropy"], "--candidates names a strategy twice (entropy in entropy,kmeans,entropy)"),
    (["entropyy"], "--candidates: unknown candidate 'entropyy'"),
    (["entropy", "random_expert"], "--candidates must not name 'random_expert'"),
])
def test_experts_are_refused_with_the_messages_of_every_candidates_reader(names, message):
    """The constructor checks its list as registry.parse_candidates checks the flag (test_cli covers the flag)."""
    with pytest.raises(UserError, match=re.escape(message)):
        ALBL(names, horizon=25)


@pytest.mark.parametrize("mode", ["per-example", "per-batch"])
def test_albl_runs_in_the_loop_and_records_expert_probs(tmp_path, mode):
    cfg = tiny_config(strategy="albl", candidates="entropy,margin,kmeans", rounds=3, albl_batch_mode=mode)
    summary = run(cfg, tmp_path, data=make_dataset())
    assert summary["query_rounds"] == 3
    records = runlog.read_rounds(tmp_path)
    experts = ["entropy", "margin", "kmeans", RANDOM_EXPERT]
    for rec in records[:-1]:
        probs = rec["selector"]["expert_probs"]
        assert sorted(probs) == sorted(experts) and sum(probs.values()) == pytest.approx(1.0)
        assert sum(rec["selector"]["expert_counts"].values()) == (cfg.budget if mode == "per-example" else cfg.budget)
        assert 0.0 <= rec["selector"]["accuracy"] <= 1.0
    assert "expert_rhat" in records[1]["selector"]  # the first reward credits last round's picks
    assert -1.0 <= records[1]["selector"]["reward"] <= 1.0
    assert records[1]["selector"]["reward"] == records[1]["selector"]["accuracy"]  # the default reward
    assert -1.0 <= records[1]["selector"]["gain"] <= 1.0  # recorded either way
    assert records[0]["selector"]["pmin"] == pytest.approx(exp4p_pmin(4, cfg.rounds * cfg.budget))  # T = queries
    state = runlog.load_checkpoint(tmp_path)["selector"]
    assert state["experts"] == experts and state["log_w"].shape == (4,)
    assert list((tmp_path / runlog.TENSORBOARD).iterdir())


def test_killed_albl_run_resumes_exactly(tmp_path):
    cfg = tiny_config(strategy="albl", candidates="entropy,kmeans", rounds=3)
    whole = run(cfg, tmp_path / "whole", data=make_dataset())
    run(cfg, tmp_path / "killed", data=make_dataset(), stop_after=2)  # killed after two rounds
    resumed = run(cfg, tmp_path / "killed", data=make_dataset())
    assert resumed["acc"] == whole["acc"]
    a, b = runlog.read_rounds(tmp_path / "whole"), runlog.read_rounds(tmp_path / "killed")
    assert [r["queried"] for r in a] == [r["queried"] for r in b]
    assert [r.get("selector", {}).get("expert_probs") for r in a] == [r.get("selector", {}).get("expert_probs") for r in b]


def test_tensorboard_gets_expert_probabilities_and_a_custom_chart(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tiny_config(strategy="albl", candidates="entropy,kmeans", rounds=2), tmp_path, data=make_dataset())
    events = EventAccumulator(str(tmp_path / runlog.TENSORBOARD))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"albl/prob/entropy", "albl/prob/kmeans", f"albl/prob/{RANDOM_EXPERT}", "selector/reward"} <= tags
    assert [e.step for e in events.Scalars("albl/prob/entropy")] == [8, 12]  # step = labels at selection
    layout = events.Tensors("custom_scalars__config__")  # written by add_custom_scalars
    assert layout


@pytest.mark.parametrize("mode", ["per-example", "per-batch"])
def test_reward_estimates_pool_accuracy_through_the_importance_weights(mode):
    """The model is wrong exactly on the 60 rows margin ranks first, right on the other 140 (pool
    accuracy 0.7). Half the probability is on margin, so unweighted accuracy on the picks is about
    0.35; the importance weights 1 / (n q(i)) must bring both estimates back to 0.7. Through the
    real select / after_labeling path, a fresh ALBL (uniform p) per draw."""
    n, b, draws = 200, 10, 300
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(n, 3, generator=g).softmax(dim=1)
    predicted = probs.argmax(dim=1)
    wrong = candidate_choice("margin", PoolOutputs(n=n, probs=probs), budget=60, generator=0)
    labels = predicted.clone()
    labels[wrong] = (predicted[wrong] + 1) % 3
    hajek, ht = [], []
    for seed in range(draws):
        albl = ALBL(["margin"], horizon=100, batch_mode=mode)
        ctx = RoundContext(round=0, budget=b, outputs=PoolOutputs(n=n, probs=probs), unlabeled=torch.arange(n),
                           labeled=torch.arange(0), model=None, learner=None, seed=seed,
                           generator=torch.Generator().manual_seed(seed))
        sel = albl.select(ctx)
        info = albl.after_labeling(ctx, sel.indices, labels[sel.indices])
        hajek.append(info["accuracy"])
        ht.append(info["accuracy_ht"])
    # per batch, HT is 0 (a margin batch) or ~1.4 (a uniform batch): std 0.7 / sqrt(300) = 0.04;
    # 0.15 is ~4 std from 0.7 and ~5 from what unit weights give (0.35)
    assert sum(ht) / draws == pytest.approx(0.7, abs=0.15)  # Horvitz-Thompson: unbiased
    if mode == "per-example":  # self-normalised: consistent. Per batch every pick of a batch has the
        # same weight, so it is the accuracy on the chosen expert's batch (a known bias, docstring)
        assert sum(hajek) / draws == pytest.approx(0.7, abs=0.1)


# -- the planted pool: margin, anti_margin, noise_a, noise_b ----------------------------------------
PLANTED = ["margin", "anti_margin", "noise_a", "noise_b"]


@pytest.fixture
def planted_candidates():
    """anti_margin (the most confident first) and two noise columns, unless a plug-in registered
    them already; whatever this registers is removed afterwards."""
    from autoal import registry

    list_candidates()
    saved = dict(registry._REGISTRY)
    if "anti_margin" not in saved:
        @registry.register_candidate("anti_margin", needs={"probs"})
        def anti_margin(out, *, budget, generator):
            top2 = out.require("probs").topk(2, dim=1).values
            return top2[:, 0] - top2[:, 1]
    for name in ("noise_a", "noise_b"):
        if name not in saved:
            registry.register_candidate(name)(lambda out, *, budget, generator: torch.rand(out.n, generator=generator))
    yield PLANTED
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def _planted_world(seed: int, mode: str, rounds: int = 12, budget: int = 10, n: int = 300) -> Tensor:
    """Expert probabilities (rounds + 1, K) of ALBL on the planted pool, through select/after_labeling.
    The planted truth: the model gets this round's picks right with probability 0.2 + 0.7 x (share
    of last round's picks margin chose): margin's picks make the next model better, the others'
    do not. The horizon is the number of queries, rounds x budget."""
    albl = ALBL(PLANTED, horizon=rounds * budget, batch_mode=mode)
    coin = torch.Generator().manual_seed(10_000 + seed)
    share, history = 0.0, [albl.probs.clone()]
    for r in range(rounds):
        ctx = _ctx(n=n, seed=1000 * seed + r)
        ctx.budget = budget
        sel = albl.select(ctx)
        predicted = ctx.outputs.probs[sel.indices - 100].argmax(dim=1)
        right = torch.rand(budget, generator=coin) < 0.2 + 0.7 * share
        albl.after_labeling(ctx, sel.indices, torch.where(right, predicted, (predicted + 1) % 3))
        share = sel.info["expert_counts"]["margin"] / budget
        history.append(albl.probs.clone())
    return torch.stack(history)


def test_albl_moves_towards_margin_on_the_planted_pool_within_a_few_rounds(planted_candidates):
    """Per batch (one expert per round, so a reward is attributable to it), with T = the number of
    queries: after 6 of 12 rounds p(margin) is above 1/K and above p(anti_margin) on average over
    seeds, and in most seeds; by the last round more so. (T = rounds with one averaged update per
    round moved p by < 0.01 per round.)"""
    k = len(PLANTED) + 1
    history = torch.stack([_planted_world(seed, "per-batch") for seed in range(12)])  # (seeds, 13, K)
    margin, anti = PLANTED.index("margin"), PLANTED.index("anti_margin")
    for r in (6, 12):
        mean = history[:, r].mean(dim=0)
        assert mean[margin] > 1 / k + 0.05 and mean[margin] > mean[anti] + 0.05
    last = history[:, -1]
    assert (last[:, margin] > last[:, anti]).float().mean() >= 0.75
    assert history[:, -1, margin].mean() > history[:, 6, margin].mean()  # still rising


def test_albl_learns_under_a_pool_subset(tmp_path):
    """A fresh subset each round leaves this round's picks unscored last round: the accuracy reward
    still updates the experts, and the gain (which needs last round's predictions) is left out."""
    cfg = tiny_config(strategy="albl", candidates="entropy,margin,kmeans", rounds=3, pool_subset=12)
    run(cfg, tmp_path, data=make_dataset())
    records = runlog.read_rounds(tmp_path)
    assert "expert_rhat" in records[1]["selector"] and "expert_rhat" in records[2]["selector"]
    assert records[1]["selector"]["reward"] == records[1]["selector"]["accuracy"]


def test_albl_gain_reward_with_a_pool_subset_is_refused():
    with pytest.raises(UserError, match="--albl-reward gain .* --pool-subset"):
        make_selector("albl", tiny_config(strategy="albl", albl_reward="gain", pool_subset=12))
