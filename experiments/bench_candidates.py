"""Benchmark: the cost of the seven non-random candidates against entropy alone (issue 2).

    OMP_NUM_THREADS=... python -m experiments.bench_candidates [--n 20000] [--mc-samples 20] [--budget 1000]

A synthetic pool of N 28x28 RGB uint8 images goes through the small CNN. The CNN is untrained: its
weights are random but fixed by --seed, which is all the timings need (the work per image does not
depend on the weights, and k-means does the same number of distance computations whatever the
embeddings look like, up to the iterations it needs to converge). Prints:

(a) the wall time of one PoolOutputs inference pass computing everything the seven candidates need
    (probs, T MC samples, embeddings) and of the pass computing only probs;
(b) the wall time of all seven candidates' values from one PoolOutputs, and of entropy alone;
(c) [inference(all needs) + all seven] / [inference(probs) + entropy], and the candidates-only ratio;
(d) what T MC-dropout samples cost (probs + mc_probs) three ways: head-only sampling (our models:
    every dropout is in the head, one backbone pass + T head passes), T full passes batched (the
    batch repeated T times in one forward, the path a model with dropout in its backbone takes;
    here the same CNN with a Dropout2d after each conv stage) and T full passes in a Python loop.

(e) issue 9's candidates (diversity, coreset, badge, batchbald), each timed alone from a PoolOutputs
    holding what it needs (--labeled labeled rows' embeddings as core-set's centres), as a multiple
    of entropy alone; batchbald at --batchbald-budget picks (its cost grows with budget x samples).

(f) issue 9's consistency, learning_loss and cluster_margin, each with the inference pass of its own
    needs (consistency: --aug-views augmented views per image; learning_loss: the same CNN with a
    loss-prediction module) and its selection time, both as multiples of the probs-only pass and of
    entropy alone; and one training step with the loss module against one without (learning_loss's
    cost in training, which the other candidates do not pay).

Each time is the median of --repeats runs. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from autoal.learner import infer_pool, mc_dropout
from autoal.models import Classifier, add_loss_module, build_classifier, loss_ranking_loss
from autoal.rng import dropout_generator
from autoal.registry import needs_of, run_candidate

SEVEN = ("entropy", "margin", "least_confidence", "bald", "var_ratio", "mean_std", "kmeans")
EXTRA = ("diversity", "coreset", "badge", "batchbald")  # issue 9
NEW = ("consistency", "learning_loss", "cluster_margin")  # issue 9, items 3, 7, 8


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        tick = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="pool size")
    parser.add_argument("--mc-samples", type=int, default=20, help="MC-dropout samples T")
    parser.add_argument("--budget", type=int, default=1_000, help="budget b (k-means clusters)")
    parser.add_argument("--classes", type=int, default=9, help="classes (pathmnist has 9)")
    parser.add_argument("--batch-size", type=int, default=512, help="inference batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median reported)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images, the CNN weights and MC dropout")
    parser.add_argument("--labeled", type=int, default=1_000, help="labeled rows (core-set's initial centres)")
    parser.add_argument("--batchbald-budget", type=int, default=10, help="picks timed for batchbald")
    parser.add_argument("--aug-views", type=int, default=50, help="augmented views N_a for consistency")
    parser.add_argument("--only-new", action="store_true", help="print (a) probs-only inference, entropy and (f) only")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (args.n, 3, 28, 28), dtype=torch.uint8, generator=gen)  # the pool
    model = build_classifier("cnn", 3, 28, args.classes, generator=torch.Generator().manual_seed(args.seed))
    model = model.to(device).eval()  # untrained, fixed seed
    mean = torch.full((1, 3, 1, 1), 0.5, device=device)

    def load(rows: torch.Tensor) -> torch.Tensor:
        return (images[rows].to(device).float() / 255.0 - mean) / 0.25

    rows = torch.arange(args.n)

    def infer(needs: frozenset[str]):
        return infer_pool(model, load, rows, needs, mc_samples=args.mc_samples, batch_size=args.batch_size,
                          seed=args.seed, device=device)

    if args.only_new:
        t_infer_probs, outputs = timed(lambda: infer(frozenset({"probs"})), args.repeats)
        t_entropy, _ = timed(lambda: run_candidate("entropy", outputs, budget=args.budget, generator=args.seed),
                             args.repeats)
        print(f"pool {args.n} x 3x28x28 uint8, small CNN (untrained, seed {args.seed}), budget {args.budget}, "
              f"device {device}, torch threads {torch.get_num_threads()}, median of {args.repeats}")
        print(f"(a) inference, probs only: {t_infer_probs:8.3f} s   entropy alone: {t_entropy:8.5f} s")
        bench_new(args, model, load, rows, device, t_infer_probs, t_entropy)
        return

    needs = needs_of(list(SEVEN))
    print(f"pool {args.n} x 3x28x28 uint8, small CNN (untrained, seed {args.seed}), T={args.mc_samples}, "
          f"budget {args.budget}, device {device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    # the two passes alternate, so a neighbour's load on a shared machine falls on both alike
    all_times, probs_times = [], []
    for _ in range(args.repeats):
        t, outputs = timed(lambda: infer(needs), 1)
        all_times.append(t)
        probs_times.append(timed(lambda: infer(frozenset({"probs"})), 1)[0])
    t_infer_all, t_infer_probs = statistics.median(all_times), statistics.median(probs_times)
    print(f"(a) inference, all needs {sorted(needs)}: {t_infer_all:8.3f} s")
    print(f"    inference, probs only:                          {t_infer_probs:8.3f} s")

    per_candidate = {}
    for name in SEVEN:
        per_candidate[name], _ = timed(lambda: run_candidate(name, outputs, budget=args.budget, generator=args.seed),
                                       args.repeats)
    t_seven, _ = timed(lambda: [run_candidate(name, outputs, budget=args.budget, generator=args.seed)
                                for name in SEVEN], args.repeats)
    t_entropy = per_candidate["entropy"]
    print(f"(b) all seven candidates: {t_seven:8.4f} s   entropy alone: {t_entropy:8.5f} s")
    print("    per candidate: " + ", ".join(f"{k} {v:.4f} s" for k, v in per_candidate.items()))
    total_ratio = (t_infer_all + t_seven) / (t_infer_probs + t_entropy)
    print(f"(c) [inference(all needs) + all seven] / [inference(probs) + entropy] = {total_ratio:.2f}"
          f"  (target <= 2)")
    print(f"    candidates only: all seven / entropy = {t_seven / t_entropy:.0f}")

    extra_needs = needs_of(list(EXTRA))
    labeled_images = torch.randint(0, 256, (args.labeled, 3, 28, 28), dtype=torch.uint8, generator=gen)
    t_extra_infer, extra = timed(lambda: dataclasses.replace(
        infer(extra_needs), labeled_embeddings=infer_pool(
            model, lambda r: (labeled_images[r].to(device).float() / 255.0 - mean) / 0.25, torch.arange(args.labeled),
            frozenset({"embeddings"}), mc_samples=args.mc_samples, batch_size=args.batch_size, seed=args.seed,
            device=device).embeddings), args.repeats)
    print(f"(e) inference with issue 9's needs {sorted(extra_needs)} (+ {args.labeled} labeled rows): "
          f"{t_extra_infer:8.3f} s ({t_extra_infer / t_infer_probs:.2f} x probs only)")
    for name in EXTRA:
        b = args.batchbald_budget if name == "batchbald" else args.budget
        t, _ = timed(lambda: run_candidate(name, extra, budget=b, generator=args.seed), args.repeats)
        print(f"    {name:10s} budget {b:5d}: {t:9.4f} s = {t / t_entropy:8.0f} x entropy alone, "
              f"[inference + {name}] / [inference(probs) + entropy] = "
              f"{(t_extra_infer + t) / (t_infer_probs + t_entropy):.2f}")

    bench_new(args, model, load, rows, device, t_infer_probs, t_entropy)

    mc_needs = frozenset({"probs", "mc_probs"})
    full = with_backbone_dropout(model)
    t_head, _ = timed(lambda: infer(mc_needs), args.repeats)
    t_batched, _ = timed(lambda: infer_pool(full, load, rows, mc_needs, mc_samples=args.mc_samples,
                                            batch_size=args.batch_size, seed=args.seed, device=device),
                         args.repeats)
    t_loop, _ = timed(lambda: looped_mc(full, load, rows, args.mc_samples, args.batch_size, args.seed, device),
                      args.repeats)
    print(f"(d) T={args.mc_samples} MC samples (+ probs): head-only {t_head:8.3f} s   "
          f"full passes batched {t_batched:8.3f} s   full passes looped {t_loop:8.3f} s")
    print(f"    full batched / head-only = {t_batched / t_head:.1f}   looped / batched = {t_loop / t_batched:.2f}")


def bench_new(args: argparse.Namespace, model: Classifier, load, rows: torch.Tensor, device: torch.device,
              t_infer_probs: float, t_entropy: float) -> None:
    """(f): consistency, learning_loss and cluster_margin, each with the inference its needs cost."""
    loss_model = add_loss_module(copy.deepcopy(model), 3, 28, torch.Generator().manual_seed(args.seed)).eval()
    print(f"(f) issue 9 items 3, 7, 8 (consistency with N_a = {args.aug_views} views):")
    for name in NEW:
        needs = needs_of([name])
        net = loss_model if "predicted_loss" in needs else model
        t_infer, outputs = timed(lambda: infer_pool(net, load, rows, needs, mc_samples=args.mc_samples,
                                                    batch_size=args.batch_size, seed=args.seed, device=device,
                                                    aug_views=args.aug_views, augment="shift"), args.repeats)
        t, _ = timed(lambda: run_candidate(name, outputs, budget=args.budget, generator=args.seed), args.repeats)
        print(f"    {name:14s} inference {sorted(needs)}: {t_infer:8.3f} s ({t_infer / t_infer_probs:6.2f} x probs only); "
              f"selection {t:8.4f} s = {t / t_entropy:8.1f} x entropy alone; [inference + {name}] / "
              f"[inference(probs) + entropy] = {(t_infer + t) / (t_infer_probs + t_entropy):.2f}")
    t_plain, t_module = train_step_times(model, loss_model, device, args.repeats)
    print(f"    training step (batch 32, Adam): {t_plain * 1e3:7.2f} ms without the loss module, "
          f"{t_module * 1e3:7.2f} ms with it ({t_module / t_plain:.2f} x)")


def train_step_times(model: Classifier, loss_model: Classifier, device: torch.device, repeats: int,
                     steps: int = 20) -> tuple[float, float]:
    """Seconds per training step of the plain CNN and of the CNN with its loss module (the learner's
    step: cross-entropy, plus the ranking loss for the module), each the median of ``repeats`` runs of
    ``steps`` steps on random batches of 32."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 28, 28, generator=gen).to(device)
    y = torch.randint(0, model.head[-1].out_features, (32,), generator=gen).to(device)
    results = []
    for net, with_module in ((copy.deepcopy(model), False), (copy.deepcopy(loss_model), True)):
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def run_steps() -> None:
            for _ in range(steps):
                if with_module:
                    logits, levels = net.forward_with_levels(x)
                    loss = F.cross_entropy(logits, y, reduction="none")
                    total = loss.mean() + loss_ranking_loss(net.loss_module(levels), loss.detach())
                else:
                    total = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()

        results.append(timed(run_steps, repeats)[0] / steps)
    return results[0], results[1]


def with_backbone_dropout(model: Classifier, p: float = 0.1) -> Classifier:
    """A copy of the CNN with a Dropout2d after each conv stage's ReLU (BatchBALD's MNIST model has
    dropout after every conv block): MC samples then need full passes."""
    import copy

    full = copy.deepcopy(model)
    layers: list[nn.Module] = []
    for layer in full.backbone:
        layers.append(layer)
        if isinstance(layer, nn.ReLU):
            layers.append(nn.Dropout2d(p))
    full.backbone = nn.Sequential(*layers)
    return full.eval()


def looped_mc(model: nn.Module, load, rows: torch.Tensor, mc_samples: int, batch_size: int, seed: int,
              device: torch.device) -> torch.Tensor:
    """The reference the batched path replaces: probs, then T separate full passes per batch."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    with torch.inference_mode(), dropout_generator(model, gen):
        for start in range(0, len(rows), batch_size):
            x = load(rows[start:start + batch_size])
            model(x).softmax(dim=1)
            with mc_dropout(model):
                out.append(torch.stack([model(x) for _ in range(mc_samples)]).softmax(dim=2))
    return torch.cat(out, dim=1)


if __name__ == "__main__":
    main()
