"""Diagnostics: does each candidate's score find the samples the task model gets wrong?

    OMP_NUM_THREADS=1 python -m experiments.score_diagnostics --config experiments/configs/digits.toml \
        [--seeds 0,1] [--sizes 20,60,140] [--methods entropy,margin,bald,learning_loss,consistency]

For each seed and labeled-set size n, a task model is trained on n random pool samples (the run's
recipe; with a loss-prediction module when a method needs ``predicted_loss``), and on the rest of
the pool each method is scored against the truth the active learner never sees:

- rho: Spearman's rank correlation of the score with the model's per-sample cross-entropy on the
  true label (a score method; for consistency its sum_c sigma^2_ic, the part of g that measures
  inconsistency);
- err@b: the error rate of the model on the method's ``--budget`` picks (the samples it would
  query), against ``pool err``, the error rate on the whole unlabeled pool (random's expectation).

An uncertainty strategy whose rho is near 0 and whose err@b is at or below pool err is no better
informed than random at that labeled-set size. Also printed: the test accuracy of the model with
the loss module against the same training without it (learning_loss changes the task model's
training; this says what that costs). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from autoal.config import from_dict, read_config_file
from autoal.data import load_dataset
from autoal.loop import make_learner
from autoal.registry import candidate_choice, get_candidate, needs_of, run_candidate
from candidates.consistency import prediction_variance


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rho of two 1-D tensors (average ranks for ties)."""
    def ranks(x: Tensor) -> Tensor:
        values, inverse, counts = torch.unique(x.double(), return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        return ((ends - (counts.double() - 1) / 2))[inverse]  # average 1-based rank of each tie group
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="TOML run settings (python -m autoal.train --config)")
    parser.add_argument("--dataset", help="overrides the config's dataset")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--sizes", default="20,60,140", help="labeled-set sizes")
    parser.add_argument("--budget", type=int, help="picks per method (default: the config's budget)")
    parser.add_argument("--methods", default="entropy,margin,bald,learning_loss,consistency")
    args = parser.parse_args(argv)

    raw = read_config_file(args.config)
    if args.dataset:
        raw["dataset"] = args.dataset
    cfg = from_dict(raw)
    methods = args.methods.split(",")
    budget = args.budget or cfg.budget
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.size, cfg.channels)
    device = torch.device("cpu")
    needs = needs_of(methods) | {"probs"}
    print(f"{cfg.dataset}: pool {len(data.train)}, picks per method {budget}, mc_samples {cfg.mc_samples}, "
          f"aug_views {cfg.aug_views}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
        for size in [int(s) for s in args.sizes.split(",")]:
            labeled, pool = order[:size], order[size:]
            truth = data.train.labels[pool].long()
            learner = make_learner(cfg, data, device, needs=needs)
            model = learner.fit(labeled, seed)
            out = learner.infer(model, pool, needs, seed)
            probs = out.probs.float()
            loss = -torch.log(probs.clamp_min(1e-12)).gather(1, truth[:, None]).squeeze(1)
            wrong = (probs.argmax(1) != truth).float()
            line = [f"seed {seed} n={size:4d} test acc {learner.evaluate(model)[0]:.3f}"]
            if "predicted_loss" in needs:
                plain = make_learner(cfg, data, device, needs=needs - {"predicted_loss"})
                line.append(f"(without loss module {plain.evaluate(plain.fit(labeled, seed))[0]:.3f})")
            line.append(f"pool err {wrong.mean():.2f}")
            print("  ".join(line))
            for name in methods:
                picks = candidate_choice(name, out, budget=budget, generator=seed)
                if get_candidate(name).kind == "score":
                    score = run_candidate(name, out, budget=budget, generator=seed)
                elif name == "consistency":
                    score = prediction_variance(probs, out.require("aug_probs"))
                else:
                    score = None
                rho = "   -  " if score is None else f"{spearman(score.float(), loss):+.3f}"
                print(f"    {name:16s} rho {rho}  err@{budget} {wrong[picks].mean():.2f}")


if __name__ == "__main__":
    main()
