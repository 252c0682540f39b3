"""Does a search's evidence rank the candidates as the truth does, round by round? (issue 7)

AutoAL learns from a simulation: FitNet trained on half the labeled set (L_tr) scores the other half
(L_val), each candidate marks its L_val picks at the pool's budget ratio, and the search weights the
candidates by their picks' mean target (hardness under ``first-order``, value under ``influence``:
the record's ``column_target``). This script measures that evidence against the truth **on the same
labeled sets**, so the two differ by the estimator alone.

Each round of a run that queries one fixed candidate's batches (``--follow``, margin by default: the
best single candidate on the digits and MNIST configs, so the labeled sets are those a good search
would see), the probe records, per candidate:

- ``truth``: the accuracy of next round's task model trained on L plus the candidate's batch, judged
  on the unlabeled pool less every candidate's batch (true labels; ``oracle_greedy_pool``'s lookahead).
  ``truth_repeat`` is the same with another training seed: how well the truth agrees with itself.
- ``evidence``: AutoAL's ``column_target`` for each objective, from its own two-fold simulation on
  this labeled set (``search_epochs=0``: the evidence only, no SearchNet).
- ``pool_evidence``: the same targets with the truth in place of the simulation: the current task
  model's hardness, and its last-layer one-step value (``heldout_value``, held out: the rest of the
  pool), on the candidate's actual pool batch with true labels. A poor ``pool_evidence`` means the
  criterion is wrong; a good one with a poor ``evidence`` means the small L_val simulation is.

The summary: per source, the Spearman correlation with ``truth`` over candidates, mean ± SE over
rounds and seeds, and by thirds of the run; and each candidate's mean advantage (value less the round's mean).

    python -m experiments.evidence_quality --config experiments/configs/digits.toml --seeds 0,1,2,3,4
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from autoal.config import RunConfig
from autoal.errors import UserError
from autoal.methods.search import AutoALSelector, average_ranks, hardness, heldout_value
from autoal.registry import needs_of, parse_candidates
from autoal.rng import derive_seed
from autoal.selectors import RoundContext, Selection, Selector, register_selector
from experiments.oracle_greedy import candidate_rows, less_round_mean, lookahead_accuracies

NAME = "evidence_probe"
OBJECTIVES = ("first-order", "influence")  # the objectives whose evidence is read without unrolling
FOLLOW = {"candidate": "margin"}  # set by main (--follow) before the run builds its selector


class EvidenceProbe(Selector):
    """Queries ``follow``'s batch; records the truth and every evidence source per candidate."""

    def __init__(self, cfg: RunConfig, follow: str):
        self.cfg, self.follow = cfg, follow
        self.candidates = parse_candidates(cfg.candidates)
        if follow not in self.candidates:
            raise UserError(f"--follow {follow} is not among the candidates ({','.join(self.candidates)}); "
                            "name one of them or add it with --set candidates=...")
        self.needs = needs_of(self.candidates) | {"probs", "head_features"}
        # one AutoAL per objective, each with its own FitNets warm-started across rounds as in a real run
        self.searches = {mode: AutoALSelector(replace(cfg, search_mode=mode, search_epochs=0)) for mode in OBJECTIVES}

    def select(self, ctx: RoundContext) -> Selection:
        train_seed = derive_seed(self.cfg.seed, "train", ctx.round + 1)  # next round's model, as the loop trains it
        truth, batches = lookahead_accuracies(ctx, self.candidates, train_seed, judge="pool")
        repeat, _ = lookahead_accuracies(ctx, self.candidates, derive_seed(train_seed, "truth-repeat"), judge="pool")
        r = ctx.budget / max(len(ctx.unlabeled), 1)
        evidence = {mode: search._search(ctx, r).get("column_target") for mode, search in self.searches.items()}
        info = {"truth": truth, "truth_repeat": repeat, "evidence": evidence,
                "pool_evidence": pool_evidence(ctx, self.candidates), "follow": self.follow}
        return Selection(batches[self.follow], info)

    def state_dict(self) -> dict[str, Any]:
        return {mode: search.state_dict() for mode, search in self.searches.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for mode, search in self.searches.items():
            search.load_state_dict(state.get(mode, {}))


def pool_evidence(ctx: RoundContext, candidates: list[str]) -> dict[str, dict[str, float]]:
    """Each candidate's batch's mean hardness and one-step value under the task model, with true labels."""
    out = ctx.outputs
    labels = ctx.learner.data.train.labels[ctx.unlabeled].to(out.probs.device)
    targets = {"hardness": hardness(out.probs, labels),
               "influence": heldout_value(out.probs, labels, out.require("head_features"))}
    rows = candidate_rows(ctx, candidates)
    return {source: {name: float(t[rows[name].to(t.device)].mean()) for name in candidates}
            for source, t in targets.items()}


@register_selector(NAME)
def make_evidence_probe(cfg: RunConfig) -> Selector:
    if cfg.warm_start:
        raise UserError("the probe's truth mirrors the loop's from-scratch training: run it without --warm-start")
    return EvidenceProbe(cfg, FOLLOW["candidate"])


# --- summary ----------------------------------------------------------------------------------

def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    """Rank correlation of two per-candidate dicts over their common names (ties averaged); nan if flat."""
    names = sorted(set(a) & set(b))
    x = average_ranks(torch.tensor([a[n] for n in names], dtype=torch.float64))
    y = average_ranks(torch.tensor([b[n] for n in names], dtype=torch.float64))
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return float((x * y).sum()) / denom if denom > 0 else math.nan


def round_sources(info: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every per-candidate source of one round's record, by a flat name (``truth`` included)."""
    sources = {"truth": info["truth"], "truth_repeat": info["truth_repeat"]}
    sources.update({f"simulation:{m}": v for m, v in info["evidence"].items() if v})
    sources.update({f"pool:{m}": v for m, v in info["pool_evidence"].items()})
    return sources


def agreement(records: list[list[dict[str, Any]]]) -> dict[str, list[tuple[int, float]]]:
    """Per source (truth_repeat and every evidence): (round, Spearman with truth) for each run's rounds."""
    out: dict[str, list[tuple[int, float]]] = {}
    for run_records in records:
        for rec in run_records:
            sources = round_sources(rec["selector"])
            for name, values in sources.items():
                if name != "truth":
                    out.setdefault(name, []).append((rec["round"], spearman(values, sources["truth"])))
    return out


def mean_se(values: list[float]) -> tuple[float, float, int]:
    v = [x for x in values if not math.isnan(x)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(v) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1) / n) if n > 1 else math.nan
    return mean, se, n


def print_summary(records: list[list[dict[str, Any]]]) -> None:
    corr = agreement(records)
    rounds = sorted({rd for pairs in corr.values() for rd, _ in pairs})
    spans = [rounds[len(rounds) * i // 3: len(rounds) * (i + 1) // 3] for i in range(3)]  # thirds of the run
    print("Spearman with the truth over candidates: mean ± SE over rounds x runs (n), and by thirds of the run")
    head = "  ".join(f"rounds {s[0]}-{s[-1]}" for s in spans if s)
    print(f"  {'source':24s} {'all rounds':>22s}   {head}")
    for name, pairs in corr.items():
        m, se, n = mean_se([c for _, c in pairs])
        parts = []
        for span in spans:
            if span:
                ms, ses, _ = mean_se([c for rd, c in pairs if rd in span])
                parts.append(f"{ms:+.3f} ± {ses:.3f}")
        print(f"  {name:24s} {m:+.3f} ± {se:.3f} (n={n:3d})   " + "  ".join(parts))
    print("each candidate's mean advantage (value less the round's mean), per source:")
    sums: dict[str, dict[str, list[float]]] = {}
    for run_records in records:
        for rec in run_records:
            for source, values in round_sources(rec["selector"]).items():
                for cand, gain in less_round_mean(values).items():
                    sums.setdefault(source, {}).setdefault(cand, []).append(gain)
    for source, by_cand in sums.items():
        ranked = sorted(by_cand.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))
        print(f"  {source:24s} " + "  ".join(f"{c} {sum(v) / len(v):+.4f}" for c, v in ranked))


def main(argv: list[str] | None = None) -> int:
    from autoal.data import load_dataset
    from autoal.loop import run
    from autoal.runlog import read_rounds
    from experiments.planted import planted_config, planted_parser

    parser = planted_parser(__doc__.splitlines()[0], out="runs/evidence")  # --config, --seeds, --set, --out
    parser.add_argument("--follow", default="margin", help="the candidate whose batches the probe queries")
    parser.add_argument("--summary-only", action="store_true", help="summarise the runs under --out, run nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # runs reproduce at a fixed thread count
    FOLLOW["candidate"] = args.follow
    base: RunConfig = planted_config(args.config, args.set)
    if args.follow not in parse_candidates(base.candidates):
        print(f"error: --follow {args.follow} is not among the candidates ({base.candidates}); name one of them "
              "or add it with --set candidates=...", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    folders = [Path(args.out) / f"{NAME}-{args.follow}-seed{seed}" for seed in seeds]
    if not args.summary_only:
        data = load_dataset(base.dataset, base.data_root, base.size)
        for seed, folder in zip(seeds, folders):
            summary_file = folder / "summary.json"  # a finished run is read back, a killed one resumes
            summary = (json.loads(summary_file.read_text()) if summary_file.is_file()
                       else run(replace(base, seed=seed, strategy=NAME), folder, data=data))
            print(f"seed {seed}: AUBC {summary['aubc']:.4f} (following {args.follow})", flush=True)
    # an unfinished run's rounds count too: each round's record is complete once written
    print_summary([[r for r in read_rounds(f) if "selector" in r] for f in folders])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
