"""ALBL, Active Learning By Learning (Hsu & Lin 2015): an EXP4.P bandit over the candidates.

The experts are the candidates named in ``--candidates`` plus a uniform random expert. Each round
the selector mixes the experts' advice (distributions over the unlabeled pool) with the expert
probabilities p, q(i) = sum_k p_k advice_k(i), and draws the batch.

Advice:
- per-example mode (default): for every queried example an expert k ~ p is drawn, and the
  example from its advice over the not-yet-taken points. A score candidate advises a one-hot on
  its top-ranked remaining point (classic ALBL: the expert "asks" one question; tied scores are
  ranked at random by the round's generator); a set candidate (kmeans, typiclust) is uniform over
  the remaining points of its set, and uniform over all remaining points once its set is used up;
  the random expert is uniform over the remaining points.
- per-batch mode: one expert k ~ p chooses the whole batch. For the credit, each expert's advice
  is uniform over the batch it would have chosen (a score candidate's top-b, a set candidate's set,
  every point for the random expert), so experts that agree share the credit.

Horizon. Hsu & Lin run EXP4.P with T = the query budget: one trial per query (libact's
``T``), pmin = sqrt(ln K / (K T)) and step pmin / 2. In batch mode each queried example is still
one trial; what changes is that the feedback of a round's b trials arrives together, after the
batch, and the b draws share the probabilities p (nothing was learned in between). That is
EXP4.P under delayed feedback, whose cost is bounded in terms of the delay (at most b trials;
Joulani, Gyorgy & Szepesvari 2013), with the same T. So T = rounds x budget and a round's update is the sum
of its b trials' updates (``exp4p_update(trials=b)``). Using T = rounds instead (the earlier
choice) and one averaged update per round made pmin hit its 1/(2K) cap and the per-round step b
times too small: on digits the probabilities stayed within 0.119-0.132 over 12 rounds. In
per-batch mode the b picks of a round are drawn by one expert, not b independent trials; we
keep the same T and summed update for both modes, so they learn at the same rate.

Reward (honest, DESIGN.md): after the oracle labels this round's picks S_t, the task model of this
round, which has not seen S_t, is scored on them. Each pick i carries the importance weight
1 / (n * q(i)) (n = points it was drawn from), which turns accuracy on draws from q into an
estimate of pool accuracy. We use the self-normalised (Hajek) form sum(c_i w_i) / sum(w_i): the
Horvitz-Thompson mean(c_i w_i) is unbiased but unbounded (weights up to ~1/pmin), while EXP4.P's
analysis needs rewards in [0, 1]; the ratio is bounded and consistent in per-example mode. (Per
batch, every pick of a batch has the same weight, so the ratio is the accuracy on the chosen
expert's batch; the Horvitz-Thompson form, recorded too, is the unbiased one there.) The reward
measures the model trained on last round's picks S_{t-1}, so it is credited to the experts that
advised them: rhat_k = r * sum_{i in S_{t-1}} advice_k(i) / q(i), one term per trial.
``reward="gain"`` credits instead the paired difference between this round's and last round's
model, both scored on S_t (neither has seen it): it removes the accuracy level, but the
importance weights put nearly all the mass on the one to four uniform picks of a batch, where
consecutive models almost always agree, so on digits it is ~0 in most rounds and ALBL hardly moves.

What to expect at these horizons: the expected credit of every expert is r * b per round, and
only the covariance between the reward and how many of last round's picks an expert advised
separates them. With b = 10, K = 5 and an accuracy reward whose batch-to-batch change is a
few points, that signal is a fraction of the count noise in one round; EXP4.P's guarantee is
O(sqrt(T K ln K)), vacuous at T = 120. ``experiments/albl_planted.py`` prints what happens on
the planted pool.

Weights live in log space; probabilities, log-weights and the pending credit are checkpointed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autoal.errors import UserError
from autoal.registry import candidate_choice, check_candidates, get_candidate, needs_of, parse_candidates
from autoal.selectors import RoundContext, Selection, Selector, register_selector

RANDOM_EXPERT = "random_expert"
BATCH_MODES = ("per-example", "per-batch")
REWARDS = ("accuracy", "gain")


# -- EXP4.P, as pure functions ---------------------------------------------------------------------
def exp4p_pmin(n_experts: int, horizon: int) -> float:
    """pmin = sqrt(ln K / (K T)), T the number of queries (EXP4.P trials), capped at 1 / (2K).

    The cap binds only for short horizons (T < 4 K ln K, e.g. T < 67 for K = 8): beyond 1/K the
    formula would make 1 - K*pmin < 0 and give the most-weighted expert the LEAST probability.
    At the cap half the mass still follows the weights.
    """
    k, t = n_experts, max(horizon, 1)
    if k < 2:
        return 0.0
    return min(math.sqrt(math.log(k) / (k * t)), 0.5 / k)


def exp4p_probs(log_w: Tensor, pmin: float) -> Tensor:
    """p_k = (1 - K pmin) w_k / sum(w) + pmin, from log-weights (K,); float64, sums to 1."""
    k = log_w.shape[0]
    return (1.0 - k * pmin) * torch.softmax(log_w.double(), dim=0) + pmin


def exp4p_update(log_w: Tensor, probs: Tensor, rhat: Tensor, *, pmin: float, horizon: int,
                 delta: float, trials: int = 1) -> Tensor:
    """log w_k += pmin/2 * (rhat_k + trials * vhat_k * sqrt(ln(K/delta) / (K T))), vhat_k = 1 / p_k.

    One update for ``trials`` EXP4.P trials (queries) whose feedback arrived together: ``rhat``
    (K,) is the SUM of their reward estimates and each trial adds its own variance term. With
    ``trials=1`` this is EXP4.P's step. ``probs`` (K,) are the probabilities the rewarded picks
    were drawn with (the same for every pick of a batch). vhat = 1/p is ALBL's variance bound
    (its advice-to-arm matrix is the identity). Returned shifted to max 0 so the log-weights
    never overflow.
    """
    k = log_w.shape[0]
    vhat = 1.0 / probs.double()
    bonus = trials * vhat * math.sqrt(math.log(k / delta) / (k * max(horizon, 1)))
    updated = log_w.double() + pmin / 2.0 * (rhat.double() + bonus)
    return updated - updated.max()


def importance_weighted_accuracy(correct: Tensor, weights: Tensor) -> tuple[float, float]:
    """(self-normalised, Horvitz-Thompson) estimates of pool accuracy from picks (b,) with
    importance weights 1 / (n q(i)) (b,)."""
    c, w = correct.double(), weights.double()
    return float((c * w).sum() / w.sum()), float((c * w).mean())


def expert_rewards(reward: float, credit: Tensor) -> Tensor:
    """rhat_k = r * sum_i advice_k(i) / q(i) over the rewarded picks (one EXP4.P trial each);
    credit (b, K) -> (K,)."""
    return reward * credit.double().sum(dim=0)


# -- the experts' advice ---------------------------------------------------------------------------
class _Expert:
    """One expert's advice over the remaining (not yet taken) unlabeled rows 0..n-1."""

    def prob(self, row: int, taken: set[int], n_left: int) -> float:
        raise NotImplementedError

    def draw(self, taken: set[int], n: int, generator: torch.Generator) -> int:
        raise NotImplementedError

    def batch(self, budget: int, n: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def batch_prob(self, row: int, budget: int, n: int) -> float:
        raise NotImplementedError


def _uniform_remaining(taken: set[int], n: int, generator: torch.Generator) -> int:
    """A uniform draw among rows not in ``taken``: rejection first (taken is usually tiny)."""
    for _ in range(64):
        row = int(torch.randint(n, (1,), generator=generator))
        if row not in taken:
            return row
    left = [r for r in range(n) if r not in taken]
    return left[int(torch.randint(len(left), (1,), generator=generator))]


class _TopRanked(_Expert):
    """A score candidate: one-hot on its top-ranked remaining row (per batch: uniform on its top-b)."""

    def __init__(self, order: Tensor):
        self.order = order.tolist()  # rows, best first
        self.pos = 0

    def _top(self, taken: set[int]) -> int:
        while self.order[self.pos] in taken:
            self.pos += 1
        return self.order[self.pos]

    def prob(self, row: int, taken: set[int], n_left: int) -> float:
        return 1.0 if row == self._top(taken) else 0.0

    def draw(self, taken: set[int], n: int, generator: torch.Generator) -> int:
        return self._top(taken)

    def batch(self, budget: int, n: int, generator: torch.Generator) -> Tensor:
        return torch.tensor(self.order[:budget], dtype=torch.long)

    def batch_prob(self, row: int, budget: int, n: int) -> float:
        return 1.0 / budget if row in self.order[:budget] else 0.0


class _UniformSet(_Expert):
    """A set candidate: uniform over the remaining rows of its set, then over all remaining rows."""

    def __init__(self, members: Tensor):
        self.members = members.tolist()
        self.member_set = set(self.members)

    def _left(self, taken: set[int]) -> list[int]:
        return [m for m in self.members if m not in taken]

    def prob(self, row: int, taken: set[int], n_left: int) -> float:
        left = self._left(taken)
        if not left:
            return 1.0 / n_left
        return 1.0 / len(left) if row in self.member_set else 0.0

    def draw(self, taken: set[int], n: int, generator: torch.Generator) -> int:
        left = self._left(taken)
        if not left:
            return _uniform_remaining(taken, n, generator)
        return left[int(torch.randint(len(left), (1,), generator=generator))]

    def batch(self, budget: int, n: int, generator: torch.Generator) -> Tensor:
        return torch.tensor(self.members, dtype=torch.long)

    def batch_prob(self, row: int, budget: int, n: int) -> float:
        return 1.0 / len(self.members) if row in self.member_set else 0.0


class _Uniform(_Expert):
    """The random expert: uniform over the remaining rows; keeps every q(i) > 0."""

    def prob(self, row: int, taken: set[int], n_left: int) -> float:
        return 1.0 / n_left

    def draw(self, taken: set[int], n: int, generator: torch.Generator) -> int:
        return _uniform_remaining(taken, n, generator)

    def batch(self, budget: int, n: int, generator: torch.Generator) -> Tensor:
        return torch.randperm(n, generator=generator)[:budget]

    def batch_prob(self, row: int, budget: int, n: int) -> float:
        return 1.0 / n


@dataclass
class Draw:
    """One round's picks and what the reward needs later."""

    rows: Tensor  # (b,) rows into the unlabeled pool
    expert: Tensor  # (b,) index of the expert that chose each pick
    credit: Tensor  # (b, K) advice_k(i) / q(i) at each pick
    weight: Tensor  # (b,) importance weight 1 / (n_left * q(i))


def draw_per_example(experts: list[_Expert], probs: Tensor, n: int, budget: int,
                     generator: torch.Generator) -> Draw:
    """For each of ``budget`` examples: expert k ~ p, then a row from its advice over the rows left."""
    taken: set[int] = set()
    rows, chosen, credit, weight = [], [], [], []
    p = probs.tolist()
    for j in range(budget):
        k = int(torch.multinomial(probs.float(), 1, generator=generator))
        row = experts[k].draw(taken, n, generator)
        n_left = n - j
        advice = torch.tensor([e.prob(row, taken, n_left) for e in experts], dtype=torch.float64)  # (K,)
        q = float((advice * torch.tensor(p, dtype=torch.float64)).sum())
        rows.append(row)
        chosen.append(k)
        credit.append(advice / q)
        weight.append(1.0 / (n_left * q))
        taken.add(row)
    return Draw(torch.tensor(rows, dtype=torch.long), torch.tensor(chosen, dtype=torch.long),
                torch.stack(credit), torch.tensor(weight, dtype=torch.float64))


def draw_per_batch(experts: list[_Expert], probs: Tensor, n: int, budget: int,
                   generator: torch.Generator) -> Draw:
    """One expert k ~ p picks the whole batch; advice at the batch level for the credit."""
    k = int(torch.multinomial(probs.float(), 1, generator=generator))
    rows = experts[k].batch(budget, n, generator)
    advice = torch.tensor([[e.batch_prob(r, budget, n) for e in experts] for r in rows.tolist()],
                          dtype=torch.float64)  # (b, K)
    q = advice @ probs.double()  # (b,)
    return Draw(rows, torch.full((budget,), k, dtype=torch.long), advice / q.unsqueeze(1), 1.0 / (n * q))


# -- the selector ----------------------------------------------------------------------------------
class ALBL(Selector):
    name = "albl"

    def __init__(self, candidates: list[str], *, horizon: int, batch_mode: str = "per-example",
                 delta: float = 0.1, reward: str = "accuracy"):
        if batch_mode not in BATCH_MODES:
            raise UserError(f"--albl-batch-mode must be one of {', '.join(BATCH_MODES)}, got {batch_mode!r}")
        if reward not in REWARDS:
            raise UserError(f"--albl-reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        if not 0.0 < delta < 1.0:
            raise UserError(f"--albl-delta must be in (0, 1), got {delta}")
        if horizon < 1:
            raise UserError(f"ALBL's horizon (the number of queries, rounds x budget) must be at least 1, got {horizon}")
        if RANDOM_EXPERT in candidates:  # the name of ALBL's own uniform expert, always present
            raise UserError(f"--candidates must not name {RANDOM_EXPERT!r}: ALBL adds it by itself")
        # at least one (with none ALBL would be the random expert alone), distinct, registered
        self.candidates = check_candidates(candidates)
        self.experts = [*self.candidates, RANDOM_EXPERT]
        self.needs = needs_of(self.candidates) | {"probs"}  # probs: the reward scores the task model
        self.batch_mode = batch_mode
        self.reward = reward
        self.delta = delta
        self.horizon = horizon  # T: queries, one EXP4.P trial each
        self.pmin = exp4p_pmin(len(self.experts), horizon)
        self.log_w = torch.zeros(len(self.experts), dtype=torch.float64)
        self.last: dict[str, Tensor] | None = None  # credit and probs of last round's picks
        # last round's model's predictions over its unlabeled pool: the paired baseline of "gain"
        self.previous: dict[str, Tensor] | None = None  # {"pool": (N_u,) sorted indices, "pred": (N_u,)}
        # this round's draw, its probabilities, pool and predictions, until after_labeling: part of the
        # state, so a person's labels may arrive in a later process (--oracle human)
        self._pending: dict[str, Tensor] | None = None
        self._layout_written = False

    @property
    def probs(self) -> Tensor:
        return exp4p_probs(self.log_w, self.pmin)

    def _advisors(self, ctx: RoundContext) -> list[_Expert]:
        advisors: list[_Expert] = []
        for name in self.candidates:
            if get_candidate(name).kind == "set":
                advisors.append(_UniformSet(candidate_choice(name, ctx.outputs, budget=ctx.budget,
                                                             generator=ctx.generator).cpu()))
            else:  # the full ranking (ties in random order): per-example draws walk down it past taken rows
                advisors.append(_TopRanked(candidate_choice(name, ctx.outputs, budget=ctx.outputs.n,
                                                            generator=ctx.generator).cpu()))
        return [*advisors, _Uniform()]

    def select(self, ctx: RoundContext) -> Selection:
        probs = self.probs
        advisors = self._advisors(ctx)
        draw_fn = draw_per_example if self.batch_mode == "per-example" else draw_per_batch
        draw = draw_fn(advisors, probs, ctx.outputs.n, ctx.budget, ctx.generator)
        # the task model of this round has not been trained on these picks: an honest estimate
        predicted = ctx.outputs.require("probs").argmax(dim=1).cpu()  # (N_u,)
        self._pending = {"picks": ctx.unlabeled[draw.rows].cpu(), "credit": draw.credit, "weight": draw.weight,
                         "probs": probs, "pool": ctx.unlabeled.cpu().clone(), "pool_pred": predicted.to(torch.int16)}
        counts = torch.bincount(draw.expert, minlength=len(self.experts)).tolist()
        info = {"expert_probs": dict(zip(self.experts, map(float, probs))),
                "expert_counts": dict(zip(self.experts, counts)), "pmin": self.pmin,
                # per pick, the expert that drew it: what a person labeling the batch sees (not recorded)
                "pick_contributions": [{self.experts[int(k)]: 1.0} for k in draw.expert]}
        self._log(ctx, probs)
        return Selection(ctx.unlabeled[draw.rows], info)

    def after_labeling(self, ctx: RoundContext | None, indices: Tensor, labels: Tensor) -> dict[str, Any]:
        """The reward from this round's picks, read from the pending draw alone (``ctx`` is unused: with a
        person's labels it is another process's). ``indices`` may be a subset of the picks, in pick
        order: the images a person skipped have no label, so they are left out of the estimate and of
        the credit (they did not enter training either)."""
        if self._pending is None:
            raise RuntimeError("ALBL.after_labeling called without a select in this round")
        pending, self._pending = self._pending, None
        indices, labels = indices.cpu(), labels.cpu()
        kept = torch.isin(pending["picks"], indices)
        if not torch.equal(pending["picks"][kept], indices):
            raise RuntimeError("ALBL.after_labeling got other indices than it selected")
        self.previous, previous = {"pool": pending["pool"], "pred": pending["pool_pred"]}, self.previous
        if not kept.any():  # every pick skipped: nothing to estimate, and nothing to credit next round
            self.last = None
            return {"reward_skipped": "no pick of this round was labeled"}
        weight = pending["weight"][kept]
        predicted = previous_predictions(self.previous, indices)  # this round's model on its own picks
        accuracy, accuracy_ht = importance_weighted_accuracy(predicted == labels, weight)
        info: dict[str, Any] = {"accuracy": accuracy, "accuracy_ht": accuracy_ht}
        before = previous_predictions(previous, indices) if previous is not None else None
        if before is not None:  # last round's model on the same picks: neither has seen them
            info["accuracy_before"] = importance_weighted_accuracy(before == labels, weight)[0]
            info["gain"] = accuracy - info["accuracy_before"]
        if self.last is not None:  # this reward is the consequence of last round's picks
            reward = info["gain"] if self.reward == "gain" else accuracy
            rhat = expert_rewards(reward, self.last["credit"])
            self.log_w = exp4p_update(self.log_w, self.last["probs"], rhat, pmin=self.pmin,
                                      horizon=self.horizon, delta=self.delta, trials=len(self.last["credit"]))
            info["reward"] = reward
            info["expert_rhat"] = dict(zip(self.experts, map(float, rhat)))
        self.last = {"credit": pending["credit"][kept], "probs": pending["probs"]}
        return info

    def _log(self, ctx: RoundContext, probs: Tensor) -> None:
        if ctx.writer is None:
            return
        if not self._layout_written:  # one chart: every expert's probability against the labels
            ctx.writer.add_custom_scalars({"ALBL": {"expert probability": [
                "Multiline", [f"albl/prob/{name}" for name in self.experts]]}})
            self._layout_written = True
        for name, p in zip(self.experts, probs.tolist()):
            ctx.writer.add_scalar(f"albl/prob/{name}", p, len(ctx.labeled))

    def state_dict(self) -> dict[str, Any]:
        return {"experts": list(self.experts), "log_w": self.log_w.clone(), "pmin": self.pmin,
                "last": None if self.last is None else {k: v.clone() for k, v in self.last.items()},
                "previous": None if self.previous is None else {k: v.clone() for k, v in self.previous.items()},
                "pending": None if self._pending is None else {k: v.clone() for k, v in self._pending.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["experts"] != self.experts:
            raise UserError(f"the checkpoint's ALBL experts {state['experts']} differ from {self.experts}")
        self.log_w = state["log_w"].double().clone()
        self.pmin = float(state["pmin"])
        self.last = None if state["last"] is None else {k: v.clone() for k, v in state["last"].items()}
        previous = state.get("previous")
        self.previous = None if previous is None else {k: v.clone() for k, v in previous.items()}
        pending = state.get("pending")  # a draw whose labels a person has not given yet
        self._pending = None if pending is None else {k: v.clone() for k, v in pending.items()}


def previous_predictions(previous: dict[str, Tensor], indices: Tensor) -> Tensor | None:
    """Last round's model's predicted classes (b,) at pool ``indices`` (b,); None when last round did
    not score them all (``--pool-subset`` scores a fresh random subset each round)."""
    pos = torch.searchsorted(previous["pool"], indices)  # previous["pool"] is sorted (nonzero order)
    if (pos >= len(previous["pool"])).any() or not torch.equal(previous["pool"][pos.clamp(max=len(previous["pool"]) - 1)], indices):
        return None
    return previous["pred"][pos].long()


@register_selector("albl")
def make_albl(cfg: Any) -> ALBL:
    if cfg.albl_reward == "gain" and cfg.pool_subset > 0:
        raise UserError("--albl-reward gain compares last round's model on this round's picks, which --pool-subset "
                        "leaves unscored last round; use --albl-reward accuracy or --pool-subset 0")
    return ALBL(parse_candidates(cfg.candidates), horizon=cfg.rounds * cfg.budget, batch_mode=cfg.albl_batch_mode, delta=cfg.albl_delta,
                reward=cfg.albl_reward)
