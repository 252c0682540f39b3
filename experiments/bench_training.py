"""Benchmark: seconds (and test accuracy) of one task-model fit at 20, 100 and 220 labels, per recipe.

    OMP_NUM_THREADS=1 python -m experiments.bench_training [--dataset npz:../shared/data/mnist10k.npz]
        [--labels 20,100,220] [--seeds 0] [--device cpu]

Recipes (each a set of TrainSettings; the network is the current task model in both):
- old: the recipe before issue 8: 50 epochs, at least 100 steps, constant lr, no augmentation
  (``--epochs 50 --min-steps 100 --schedule constant --augment none`` reproduces it in a run);
- new: the defaults: 80 epochs, at least 200 steps, cosine lr, the dataset's augmentation.

For each labeled-set size the labeled rows are a seeded random subset of the pool (what the first
rounds of random sampling label), the same for both recipes. Prints the median seconds of one fit
over the seeds, the mean test accuracy, and new/old seconds (the cost limit of issue 8 is 2x).
Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from autoal.learner import Learner, TrainSettings, train_steps
from autoal.data import load_dataset
from autoal.rng import derive_seed, generator

RECIPES = {
    "old": dict(epochs=50, min_steps=100, schedule="constant", augment="none"),
    "new": {},  # TrainSettings' defaults
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="npz:../shared/data/mnist10k.npz", help="dataset (as --dataset)")
    parser.add_argument("--data-root", default="data", help="MedMNIST folder")
    parser.add_argument("--labels", default="20,100,220", help="labeled-set sizes, comma-separated")
    parser.add_argument("--seeds", default="0", help="seeds (labeled subset and model), comma-separated")
    parser.add_argument("--recipes", default="old,new", help=f"recipes to time: {', '.join(RECIPES)}")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    data = load_dataset(args.dataset, args.data_root)
    device = torch.device(args.device)
    sizes = [int(v) for v in args.labels.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    recipes = args.recipes.split(",")
    base = TrainSettings(backbone="cnn")
    print(f"{data.name}: pool {len(data.train)}, test {len(data.test)}, device {device}, "
          f"torch threads {torch.get_num_threads()}, seeds {seeds}")
    print(f"{'labels':>6} {'recipe':>6} {'steps':>6} {'seconds':>8} {'test acc':>9}")
    for n in sizes:
        seconds: dict[str, float] = {}
        for name in recipes:
            settings = replace(base, **RECIPES[name])
            learner = Learner(data, settings, device)
            times, accs = [], []
            for seed in seeds:
                rows = torch.randperm(len(data.train), generator=generator(seed, "bench-rows"))[:n]
                tick = time.perf_counter()
                model = learner.fit(rows, derive_seed(seed, "train", n))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - tick)
                accs.append(learner.evaluate(model)[0])
            seconds[name] = statistics.median(times)
            steps = train_steps(n, settings.batch_size, settings.epochs, settings.min_steps)
            print(f"{n:>6} {name:>6} {steps:>6} {seconds[name]:>8.2f} {statistics.mean(accs):>9.3f}", flush=True)
        if "old" in seconds and "new" in seconds:
            print(f"{n:>6}  new/old seconds = {seconds['new'] / seconds['old']:.2f}  (limit 2)")


if __name__ == "__main__":
    main()
