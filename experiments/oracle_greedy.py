"""How much can choosing a candidate per round gain, at best? An oracle's one-round lookahead (issue 7).

AutoAL, ALBL and SelectAL all choose among the candidates round by round, from evidence the run can
see. This script replaces that evidence with the truth: each round, for every candidate, it trains
next round's task model on the labeled set plus that candidate's batch (the loop's own recipe and seed,
so the chosen candidate's lookahead model is exactly next round's model) and scores it on the
dataset's **val split** (never the test split, which the AUBC is measured on). It queries the batch of
the candidate whose lookahead scores best.

That is an upper bound for any per-round search that picks one candidate from a one-round-ahead
signal: with the real labels and the real model it sees what no simulation on L_tr/L_val can. Two
readings follow. If it beats the best single candidate, a per-round search can, and the search's
estimator is what falls short. If it does not, choosing one candidate per round by its next-round
value cannot reach the best single candidate either, however good the estimate: the best single
one wins through the whole trajectory, not round by round.

Six variants (``--method``): ``oracle_greedy`` judges on the val split; ``oracle_greedy_pool`` on the
unlabeled pool less every candidate's batch (the truth the simulated oracle labels from: 6x digits'
val split). ``oracle_leader`` and ``oracle_leader_pool`` judge the same ways but query the candidate
whose lookahead advantage over the round's mean, summed over rounds so far, is highest, so a belief
carried across rounds averages one round's noise out. ``oracle_greedy_matched`` and
``oracle_leader_matched`` judge on only as many val images as the labeled set holds (20-130 on
digits): the exact lookahead that no search has, with the amount of true labels a search does have,
all of them spent on judging. Where these fall short of the best single candidate, no search whose
evidence comes from its labeled set can be expected to reach it.

The records (rounds.jsonl, ``selector``) hold every candidate's lookahead accuracy per round, so
the script also prints how often each candidate was chosen and where the best single candidate
ranked:

    python -m experiments.oracle_greedy --config experiments/configs/digits.toml --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from autoal.config import RunConfig
from autoal.errors import UserError
from autoal.learner import accuracy
from autoal.registry import candidate_choice, needs_of, parse_candidates
from autoal.rng import derive_seed, generator
from autoal.selectors import RoundContext, Selection, Selector, register_selector

NAME = "oracle_greedy"  # judges on the val split
POOL_NAME = "oracle_greedy_pool"  # judges on the rest of the pool: more images, the same truth the loop labels from
LEADER_NAME = "oracle_leader"  # the val judge, choosing by the lookahead advantage summed over rounds
LEADER_POOL_NAME = "oracle_leader_pool"  # the same with the pool judge
MATCHED_NAME = "oracle_greedy_matched"  # the val judge cut to as many images as the labeled set holds
LEADER_MATCHED_NAME = "oracle_leader_matched"  # the same, choosing by the summed advantage


def less_round_mean(values: dict[str, float]) -> dict[str, float]:
    """Each candidate's value minus the mean over candidates of the same round: its advantage."""
    mean = sum(values.values()) / len(values)
    return {name: value - mean for name, value in values.items()}


def candidate_rows(ctx: RoundContext, candidates: list[str]) -> dict[str, Tensor]:
    """Each candidate's batch this round, as rows of ``ctx.outputs`` (its own generator per candidate)."""
    return {name: candidate_choice(name, ctx.outputs, budget=ctx.budget,
                                   generator=generator(ctx.seed, "oracle", name)).cpu() for name in candidates}


def matched_judge_rows(n_val: int, n_labeled: int, seed: int) -> Tensor:
    """The ``matched`` judge: the first min(n_labeled, n_val) val rows in the run's fixed random order."""
    order = torch.randperm(n_val, generator=generator(seed, "oracle-matched-judge"))
    return order[:min(n_labeled, n_val)].sort().values


def lookahead_accuracies(ctx: RoundContext, candidates: list[str], train_seed: int, judge: str = "val",
                         run_seed: int | None = None) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Per candidate: the accuracy of a task model trained on L + its batch, and the batch (pool rows).

    ``judge`` "val": on the val split; "matched": on its first |L| images in a fixed random order of
    the run (``run_seed``; nested: a round's judge holds the previous round's), as many true labels as a search
    could split off its labeled set, here spent on judging alone; "pool": on the unlabeled pool less
    every candidate's batch (one set for all). Every candidate's model is trained with the same seed
    (common random numbers), so the accuracies differ by the batches alone.
    """
    learner = ctx.learner
    batches = {name: ctx.unlabeled[rows] for name, rows in candidate_rows(ctx, candidates).items()}
    if judge in ("val", "matched"):
        split, rows = learner.data.val, torch.arange(len(learner.data.val))
        if judge == "matched":
            assert run_seed is not None, "the matched judge's order is the run's: pass run_seed"
            rows = matched_judge_rows(len(rows), len(ctx.labeled), run_seed)
        if len(rows) == 0:
            raise UserError("the oracle scores lookahead models on the val split, and this dataset has none; "
                            f"use {POOL_NAME}")
    else:
        split, rows = learner.data.train, ctx.unlabeled[~torch.isin(ctx.unlabeled, torch.cat(list(batches.values())))]
    accs = {}
    for name, batch in batches.items():
        model = learner.fit(torch.cat([ctx.labeled.cpu(), batch]).sort().values, train_seed)
        probs = learner.infer(model, rows, frozenset({"probs"}), seed=0, split=split, phase="evaluate").probs.cpu()
        accs[name] = accuracy(probs, split.labels[rows])
    return accs, batches


class OracleLookahead(Selector):
    """Query the batch of the candidate whose next-round model scores best (on the val split, or on
    the rest of the pool with ``judge="pool"``). ``rule="leader"``: the candidate whose lookahead
    accuracy, less the round's mean over candidates, summed over this and every earlier round, is
    highest (follow the leader: the belief carried across rounds, one round's noise averaged out)."""

    def __init__(self, cfg: RunConfig, name: str, judge: str = "val", rule: str = "greedy"):
        self.cfg, self.name, self.judge, self.rule = cfg, name, judge, rule
        self.candidates = parse_candidates(cfg.candidates)
        self.needs = needs_of(self.candidates)
        self.advantage = {n: 0.0 for n in self.candidates}  # summed over rounds (rule "leader")

    def select(self, ctx: RoundContext) -> Selection:
        # the loop trains round r + 1's model from scratch with this seed (warm_start off, the default)
        accs, batches = lookahead_accuracies(ctx, self.candidates, derive_seed(self.cfg.seed, "train", ctx.round + 1),
                                             self.judge, run_seed=self.cfg.seed)
        for name, gain in less_round_mean(accs).items():
            self.advantage[name] += gain
        value = accs if self.rule == "greedy" else self.advantage
        best = max(value.values())
        tied = [n for n in self.candidates if value[n] == best]  # ties: at random, from the run's generator
        chosen = tied[int(torch.randint(len(tied), (1,), generator=ctx.generator))]
        judge = "val" if self.judge == "matched" else self.judge  # the matched judge is a part of the val split
        return Selection(batches[chosen], {"chosen": chosen, f"lookahead_{judge}_acc": accs})

    def state_dict(self) -> dict[str, Any]:
        return {"advantage": dict(self.advantage)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.advantage.update(state.get("advantage", {}))


def _checked(cfg: RunConfig) -> RunConfig:
    if cfg.warm_start:
        raise UserError("the oracle mirrors the loop's from-scratch training: run it without --warm-start")
    return cfg


#: Every variant: its judge ("val", "pool" or "matched") and its rule ("greedy" or "leader").
VARIANTS = {NAME: ("val", "greedy"), POOL_NAME: ("pool", "greedy"), MATCHED_NAME: ("matched", "greedy"),
            LEADER_NAME: ("val", "leader"), LEADER_POOL_NAME: ("pool", "leader"),
            LEADER_MATCHED_NAME: ("matched", "leader")}


def _oracle_factory(name: str, judge: str, rule: str):
    def make(cfg: RunConfig) -> Selector:
        return OracleLookahead(_checked(cfg), name, judge, rule=rule)
    return make


for _name, (_judge, _rule) in VARIANTS.items():
    register_selector(_name)(_oracle_factory(_name, _judge, _rule))


def round_figures(records: list[dict[str, Any]], reference: str) -> dict[str, Any]:
    """How often each candidate was chosen, the reference candidate's rank per round (1 = best), and
    each candidate's lookahead accuracy minus the round's mean over candidates, per round."""
    rounds = [r["selector"] for r in records if "selector" in r]
    ranks, advantage = [], {}
    for info in rounds:
        accs = info.get("lookahead_val_acc") or info["lookahead_pool_acc"]
        ranks.append(1 + sum(v > accs[reference] for v in accs.values()))
        for name, gain in less_round_mean(accs).items():
            advantage.setdefault(name, []).append(gain)
    return {"chosen": Counter(info["chosen"] for info in rounds), "reference_rank": ranks, "advantage": advantage}


def search_evidence(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """An AutoAL run's evidence in the same form: per round, each candidate's mean target (hardness, or
    value under influence) of its L_val picks (``column_target``) minus the round's mean over candidates."""
    advantage: dict[str, list[float]] = {}
    for info in (r["selector"] for r in records if "selector" in r):
        target = info.get("column_target") or info.get("column_hardness")  # the record's name before 0ef72a2
        for name, gain in (less_round_mean(target) if target else {}).items():
            advantage.setdefault(name, []).append(gain)
    return advantage


def print_advantage(advantage: dict[str, list[float]], chosen: Counter | None = None) -> None:
    for name, values in sorted(advantage.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])):
        note = f"  (chosen in {chosen[name]} of {len(values)} rounds)" if chosen is not None else ""
        print(f"  {name:18s} {sum(values) / len(values):+.4f}{note}")


def main(argv: list[str] | None = None) -> int:
    from experiments.planted import planted_config
    from autoal.data import load_dataset
    from autoal.loop import run
    from autoal.runlog import read_rounds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/digits.toml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", default="", help="extra settings key=value joined by +")
    parser.add_argument("--reference", default="margin", help="the candidate whose rank per round is printed")
    parser.add_argument("--method", choices=tuple(VARIANTS), default=NAME,
                        help=f"{NAME}: the best lookahead on the val split; {POOL_NAME}: on the rest of the pool; "
                             f"{MATCHED_NAME}: on as many val images as the labeled set holds; "
                             f"{LEADER_NAME}, {LEADER_POOL_NAME}, {LEADER_MATCHED_NAME}: the best lookahead "
                             "advantage summed over rounds")
    parser.add_argument("--out", default="runs/oracle")
    parser.add_argument("--search-runs", nargs="+", metavar="RUN",
                        help="instead: print these AutoAL runs' evidence (each candidate's L_val picks' mean "
                             "target less the round's mean), to set beside the oracle's lookahead advantage")
    args = parser.parse_args(argv)
    if args.search_runs:
        evidence: dict[str, list[float]] = {}
        for folder in args.search_runs:
            for name, values in search_evidence(read_rounds(Path(folder))).items():
                evidence.setdefault(name, []).extend(values)
        print(f"AutoAL's evidence over {len(args.search_runs)} runs: L_val picks' mean target minus the round's mean")
        print_advantage(evidence)
        return 0
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # runs reproduce at a fixed thread count
    base: RunConfig = planted_config(args.config, args.set)
    data = load_dataset(base.dataset, base.data_root, base.size)
    total: Counter = Counter()
    advantage: dict[str, list[float]] = {}
    method = args.method
    for seed in (int(s) for s in args.seeds.split(",")):
        folder = Path(args.out) / f"{method}-seed{seed}"
        summary_file = folder / "summary.json"  # a finished run is read back, a killed one resumes
        summary = (json.loads(summary_file.read_text()) if summary_file.is_file()
                   else run(replace(base, seed=seed, strategy=method), folder, data=data))
        fig = round_figures(read_rounds(folder), args.reference)
        total.update(fig["chosen"])
        for name, values in fig["advantage"].items():
            advantage.setdefault(name, []).extend(values)
        print(f"seed {seed}: AUBC {summary['aubc']:.4f}  chosen {dict(fig['chosen'])}  "
              f"{args.reference}'s rank per round {fig['reference_rank']}", flush=True)
    print(f"chosen over all seeds: {dict(total.most_common())}")
    print("lookahead accuracy minus the round's mean over candidates, mean over rounds and seeds:")
    print_advantage(advantage, total)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
