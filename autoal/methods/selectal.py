"""SelectAL-style selector (Hacohen & Weinshall 2023): pick the strategy that fits the budget regime.

Every round a removal test asks which points of the labeled set L matter most to a model trained
on it now: L is split at random into a training part L' and a held-out part H; from L' a small
fraction is removed three ways, by TypiClust (the points a low-budget strategy values), by the
uncertainty strategy (margin by default: the points a high-budget strategy values) and at random;
a probe model trains on each reduced L' and is scored on H. Repeats draw a new split and probe seed;
within a repeat the three probes share split and seed, so the comparison is paired.

- removing typical points hurts most      -> low budget  -> query with TypiClust
- removing uncertain points hurts most    -> high budget -> query with the uncertainty strategy
- neither hurts more than random removal  -> mid budget  -> query at random

Hold-out: H comes out of L, not from the val split. Scoring on the val split would use labels
no other strategy paid for (an unfair advantage in a comparison at equal budget, and absent in
a real labeling project); a fresh random H per repeat is honest and costs nothing but noise,
which the repeats average out. The uncertainty scores on L come from the task model (trained on
L, so they are training-set scores; SelectAL needs only their ranking); the embeddings for
TypiClust come from the same single inference pass over L.

Probes train to competence: with the task model's own recipe (``Learner.fit`` with the learner's
settings: epochs, minimum steps, augmentation, schedule), on 0.9 x 0.75 of L. A probe that is
underfit (the earlier 10 epochs / 50 steps gave 0.6-0.8 held-out accuracy on digits against the
task model's 0.96) measures how fast a model learns, not which points it needs, and its
removal differences are noise. ``probe_epochs`` / ``probe_min_steps`` override the recipe (0 =
the task model's), for quick tests. Each round records ``probe_acc``, the probes' mean held-out
accuracy, to be read against the task model's test accuracy.

``--candidates``: SelectAL does not choose from it; its strategies are fixed by the method
(TypiClust, random and ``--selectal-uncertainty``). The flag is still read and refused the same way
as for AutoAL and ALBL (empty, a name twice, an unknown name: ``registry.parse_candidates``), so a
typo in a sweep's shared settings fails here too instead of passing unnoticed.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

import torch
from torch import Tensor

from autoal.errors import UserError
from autoal.learner import Learner
from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, get_candidate, needs_of, parse_candidates
from autoal.rng import derive_seed
from autoal.selectors import RoundContext, Selection, Selector, register_selector
from candidates.typiclust import typiclust_select

log = logging.getLogger(__name__)

LOW_BUDGET = "typiclust"
RANDOM = "random"
REGIME_CODE = {"low": 0, "mid": 1, "high": 2}  # for the TensorBoard scalar


def decide_regime(removal_acc: Mapping[str, float], *, low: str = LOW_BUDGET, high: str = "margin",
                  baseline: str = RANDOM, tolerance: float = 0.0) -> str:
    """'low', 'mid' or 'high' from the held-out accuracies after each removal.

    The removal that hurts most (lowest accuracy) names the regime: ``low``'s removal -> 'low',
    ``high``'s -> 'high'. It must hurt more than random removal by more than ``tolerance``,
    otherwise (or on an exact tie between the two) the regime is 'mid'.
    """
    hurt_low = removal_acc[baseline] - removal_acc[low]
    hurt_high = removal_acc[baseline] - removal_acc[high]
    if max(hurt_low, hurt_high) <= tolerance or hurt_low == hurt_high:
        return "mid"
    return "low" if hurt_low > hurt_high else "high"


def split_sizes(n_labeled: int, holdout: float, removal: float) -> tuple[int, int]:
    """(held-out size, removed size) for a labeled set of ``n_labeled``; (0, 0) if too small to test."""
    n_hold = max(1, round(holdout * n_labeled))
    n_train = n_labeled - n_hold
    n_remove = max(1, round(removal * n_train))
    if n_train - n_remove < 1:
        return 0, 0
    return n_hold, n_remove


class SelectAL(Selector):
    name = "selectal"

    def __init__(self, *, uncertainty: str = "margin", removal: float = 0.1, holdout: float = 0.25,
                 repeats: int = 3, probe_epochs: int = 0, probe_min_steps: int = 0, tolerance: float = 0.0):
        try:
            cand = get_candidate(uncertainty)
        except KeyError as exc:
            raise UserError(f"--selectal-uncertainty: {exc.args[0]}") from None
        if cand.kind != "score" or uncertainty in (RANDOM, LOW_BUDGET):
            raise UserError(f"--selectal-uncertainty must be a score candidate other than random, got {uncertainty!r}")
        for flag, value in (("removal", removal), ("holdout", holdout)):
            if not 0.0 < value < 1.0:
                raise UserError(f"--selectal-{flag} must be in (0, 1), got {value}")
        if repeats < 1 or probe_epochs < 0 or probe_min_steps < 0:
            raise UserError("--selectal-repeats must be at least 1, --selectal-probe-epochs and "
                            "--selectal-probe-min-steps at least 0 (0: the task model's value)")
        self.uncertainty = uncertainty
        self.removal, self.holdout, self.repeats = removal, holdout, repeats
        self.probe_epochs, self.probe_min_steps, self.tolerance = probe_epochs, probe_min_steps, tolerance
        self.needs = needs_of([LOW_BUDGET, uncertainty]) | {"probs"}

    # -- the removal test ------------------------------------------------------------------------
    def _removals(self, sub: PoolOutputs, n_remove: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Rows of ``sub`` (L') each strategy would remove: the ones it values most."""
        emb = sub.require("embeddings")
        return {
            LOW_BUDGET: typiclust_select(emb, emb.new_zeros(0, emb.shape[1]), n_remove, generator),
            self.uncertainty: candidate_choice(self.uncertainty, sub, budget=n_remove, generator=generator).cpu(),
            RANDOM: torch.randperm(sub.n, generator=generator)[:n_remove],
        }

    def probe_learner(self, learner: Learner) -> Learner:
        """The task model's learner (its recipe), with the probe overrides applied where given."""
        overrides = {k: v for k, v in (("epochs", self.probe_epochs), ("min_steps", self.probe_min_steps)) if v > 0}
        if not overrides:
            return learner
        return Learner(learner.data, dataclasses.replace(learner.settings, **overrides), learner.device)

    def removal_test(self, ctx: RoundContext, labeled_out: PoolOutputs) -> tuple[dict[str, float], int, int]:
        """Mean held-out accuracy {strategy: acc} of probes trained without each strategy's removal."""
        n_l = len(ctx.labeled)
        n_hold, n_remove = split_sizes(n_l, self.holdout, self.removal)
        if n_remove == 0:
            return {}, 0, 0
        probe = self.probe_learner(ctx.learner)
        labels = ctx.learner.data.train.labels
        # correct counts, not float means: equal counts give exactly equal accuracies (exact ties)
        correct = {LOW_BUDGET: 0, self.uncertainty: 0, RANDOM: 0}
        for rep in range(self.repeats):
            perm = torch.randperm(n_l, generator=ctx.generator)
            hold, train = perm[:n_hold], perm[n_hold:]  # positions into ctx.labeled
            removals = self._removals(labeled_out.subset(train), n_remove, ctx.generator)
            seed = derive_seed(ctx.seed, "selectal-probe", rep)  # shared by the three: a paired test
            for name, removed in removals.items():
                keep = torch.ones(len(train), dtype=torch.bool)
                keep[removed] = False
                model = probe.fit(ctx.labeled[train[keep]], seed)
                probs = probe.infer(model, ctx.labeled[hold], frozenset({"probs"}), seed).probs.cpu()
                correct[name] += int((probs.argmax(dim=1) == labels[ctx.labeled[hold]]).sum())
        return {name: c / (n_hold * self.repeats) for name, c in correct.items()}, n_hold, n_remove

    # -- the query ---------------------------------------------------------------------------------
    def select(self, ctx: RoundContext) -> Selection:
        labeled_out = ctx.learner.infer(ctx.model, ctx.labeled, self.needs, seed=derive_seed(ctx.seed, "selectal-L"))
        removal_acc, n_hold, n_remove = self.removal_test(ctx, labeled_out)
        if removal_acc:
            regime = decide_regime(removal_acc, high=self.uncertainty, tolerance=self.tolerance)
        else:  # L too small to split: by SelectAL's own premise that is the low-budget regime
            regime = "low"
        strategy = {"low": LOW_BUDGET, "mid": RANDOM, "high": self.uncertainty}[regime]
        if strategy == LOW_BUDGET:  # TypiClust with the labeled set: |L| + b clusters
            rows = typiclust_select(ctx.outputs.require("embeddings"), labeled_out.require("embeddings"),
                                    ctx.budget, ctx.generator)
        elif strategy == RANDOM:
            rows = torch.randperm(ctx.outputs.n, generator=ctx.generator)[:ctx.budget]
        else:
            rows = candidate_choice(strategy, ctx.outputs, budget=ctx.budget, generator=ctx.generator).cpu()
        log.debug("round %d: removal accuracies %s -> %s regime, %s", ctx.round, removal_acc, regime, strategy)
        self._log(ctx, removal_acc, regime)
        info = {"regime": regime, "strategy": strategy, "removal_acc": removal_acc,
                "removed": n_remove, "holdout": n_hold}
        if removal_acc:  # the probes' competence: compare with the task model's test accuracy
            info["probe_acc"] = sum(removal_acc.values()) / len(removal_acc)
        return Selection(ctx.unlabeled[rows], info)

    def _log(self, ctx: RoundContext, removal_acc: dict[str, float], regime: str) -> None:
        if ctx.writer is None:
            return
        step = len(ctx.labeled)
        ctx.writer.add_scalar("selectal/regime", REGIME_CODE[regime], step)
        for name, acc in removal_acc.items():
            ctx.writer.add_scalar(f"selectal/removal_acc/{name}", acc, step)


@register_selector("selectal")
def make_selectal(cfg: Any) -> SelectAL:
    parse_candidates(cfg.candidates)  # not SelectAL's pool (see the module docstring), validated all the same
    return SelectAL(uncertainty=cfg.selectal_uncertainty, removal=cfg.selectal_removal, holdout=cfg.selectal_holdout,
                    repeats=cfg.selectal_repeats, probe_epochs=cfg.selectal_probe_epochs,
                    probe_min_steps=cfg.selectal_probe_min_steps, tolerance=cfg.selectal_tolerance)
