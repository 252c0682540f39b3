"""Measure the diverse initial set against the uniform one, as Buchert et al. (seed 001, section VI-A) did.

    OMP_NUM_THREADS=1 python -m experiments.init_set --datasets digits,npz:../shared/data/mnist10k.npz \\
        --seeds 0-9 --init-size 20 [--no-accuracy] [--out experiments/results/init-set]

For each dataset and seed it draws the initial set four ways:

- ``random``: the uniform seeded set (``--init-strategy random``);
- ``diverse``: k-means++ seeding (T = 0.5) on the pooled RotNet representation (``--init-strategy
  diverse``, with its default RotNetSettings);
- ``diverse-grid``: the same RotNet, read out as the backbone's flattened output (the CNN's 3x3
  grid, 1,152 values: what the candidates call embeddings) instead of pooled over space;
- ``kmeans++-pixels``: k-means++ seeding on the standardised pixels: no self-supervision at all, the
  control that says what the RotNet adds.

and reports, as mean +- std over the seeds: the paper's class-distribution distance
d = max_c |p~_c - p_c| (its eq. 6), the total variation distance and KL(p~ || p) against the pool's
class distribution, the number of classes the set covers, the mean pairwise L2 distance of the set
in pixel space (standardised pixels, the same space for every row) and in the pooled RotNet space
(the paper's diversity measure), and, unless --no-accuracy, the test accuracy of the task model
trained on the set alone (the project's default CPU recipe: small CNN, 200 Adam steps): the
paper's figure 10 measure. p-values: Welch's t-test of each row against random.

Prints the markdown table and writes it (with a CSV of every seed) to --out when given. The RotNet
is trained once per dataset and seed here (both readouts come from one model); nothing is cached.
Seeds may be split over processes (``--seeds 0-4`` and ``--seeds 5-9``, each with its own --out) and
their CSVs tabulated together: ``--merge A/results.csv,B/results.csv [--out DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from autoal.data import ImageDataset, load_dataset
from autoal.initial import (DEFAULT_ROTNET, class_distribution_distance, diverse_initial, mean_pairwise_distance,
                            random_initial, representation_of, train_rotnet)
from autoal.learner import Learner, TrainSettings
from autoal.rng import derive_seed

METHODS = ("random", "diverse", "diverse-grid", "kmeans++-pixels")
METRICS = ("d_max", "tv", "kl", "classes", "pix_dist", "ssl_dist", "acc")
HEADERS = {"d_max": "class dist. d (max)", "tv": "TV", "kl": "KL(set||pool)", "classes": "classes covered",
           "pix_dist": "mean pairwise dist. (pixels)", "ssl_dist": "mean pairwise dist. (RotNet, pooled)",
           "acc": "initial-model test acc"}


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def pixels(data: ImageDataset) -> torch.Tensor:
    """Standardised pixels of the pool, flattened (N, C*H*W)."""
    return data.normalise(data.train.images).flatten(1)


def initial_accuracy(data: ImageDataset, rows: torch.Tensor, seed: int) -> float:
    """Test accuracy of the default CPU task model trained on ``rows`` alone."""
    learner = Learner(data, TrainSettings(), torch.device("cpu"))
    model = learner.fit(rows, derive_seed(seed, "train", 0))
    return learner.evaluate(model)[0]


def measure(data: ImageDataset, seeds: list[int], init_size: int, accuracy: bool) -> list[dict[str, Any]]:
    labels, n_classes = data.train.labels, data.n_classes
    pix = pixels(data)
    rows = []
    for seed in seeds:
        tick = time.perf_counter()
        model, rotation_acc = train_rotnet(data, "cnn", seed, torch.device("cpu"), DEFAULT_ROTNET)
        pooled = representation_of(model, data.train, data, torch.device("cpu"), DEFAULT_ROTNET)
        grid = representation_of(model, data.train, data, torch.device("cpu"),
                                 replace(DEFAULT_ROTNET, representation="embedding"))
        ssl_seconds = time.perf_counter() - tick
        sets = {"random": random_initial(len(labels), init_size, seed),
                "diverse": diverse_initial(pooled, init_size, seed),
                "diverse-grid": diverse_initial(grid, init_size, seed),
                "kmeans++-pixels": diverse_initial(pix, init_size, seed)}
        for method, picks in sets.items():
            dist = class_distribution_distance(labels[picks], labels, n_classes)
            row = {"dataset": data.name, "seed": seed, "method": method, "d_max": dist["max"], "tv": dist["tv"],
                   "kl": dist["kl"], "classes": len(labels[picks].unique()),
                   "pix_dist": mean_pairwise_distance(pix[picks]), "ssl_dist": mean_pairwise_distance(pooled[picks]),
                   "acc": initial_accuracy(data, picks, seed) if accuracy else float("nan"),
                   "rotation_acc": rotation_acc, "ssl_seconds": round(ssl_seconds, 1)}
            rows.append(row)
        print(f"  {data.name} seed {seed}: RotNet {ssl_seconds:.0f} s, rotation accuracy {rotation_acc:.3f}; "
              + ", ".join(f"{r['method']} d={r['d_max']:.3f} acc={r['acc']:.3f}" for r in rows[-len(sets):]),
              file=sys.stderr, flush=True)
    return rows


def _welch_p(a: list[float], b: list[float]) -> float:
    from scipy.stats import ttest_ind

    if len(a) < 2 or statistics.pstdev(a) == statistics.pstdev(b) == 0:
        return float("nan")
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def table(rows: list[dict[str, Any]], accuracy: bool) -> str:
    metrics = [m for m in METRICS if accuracy or m != "acc"]
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        of = [r for r in rows if r["dataset"] == dataset]
        n_seeds = len({r["seed"] for r in of})
        rot = statistics.mean(r["rotation_acc"] for r in of)
        secs = statistics.mean(r["ssl_seconds"] for r in of)
        lines += [f"### {dataset} ({n_seeds} seeds; RotNet rotation accuracy {rot:.3f}, {secs:.0f} s per seed)", "",
                  "| initial set | " + " | ".join(HEADERS[m] for m in metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        base = {m: [r[m] for r in of if r["method"] == "random"] for m in metrics}
        for method in METHODS:
            cells = []
            for m in metrics:
                values = [r[m] for r in of if r["method"] == method]
                cell = f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}"
                if method != "random":
                    p = _welch_p(values, base[m])
                    cell += f" (p={p:.2g})" if p == p else ""
                cells.append(cell)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="digits", help="comma-separated (default: digits)")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,1,2 (default 0-9)")
    parser.add_argument("--init-size", type=int, default=20)
    parser.add_argument("--no-accuracy", action="store_true", help="skip training a task model on each set")
    parser.add_argument("--out", help="folder for results.md and results.csv")
    parser.add_argument("--merge", help="comma-separated results.csv files to tabulate together (runs nothing)")
    args = parser.parse_args(argv)
    if args.merge:
        rows = [_typed(r) for path in args.merge.split(",") for r in csv.DictReader(open(path))]
        accuracy = any(r["acc"] == r["acc"] for r in rows)
        _save(args.out, rows, table(rows, accuracy))
        print(table(rows, accuracy))
        return 0
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    for name in filter(None, args.datasets.split(",")):
        rows += measure(load_dataset(name, args.data_root), parse_seeds(args.seeds), args.init_size,
                        not args.no_accuracy)
        text = table(rows, not args.no_accuracy)
        _save(args.out, rows, text)  # after each dataset: a later one failing keeps the earlier results
    print(text)
    return 0


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """A row read back from results.csv with its numbers as numbers."""
    return {k: (v if k in ("dataset", "method") else int(v) if k in ("seed", "classes") else float(v))
            for k, v in row.items()}


def _save(out: str | None, rows: list[dict[str, Any]], text: str) -> None:
    if not out:
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.md").write_text(text)
    with open(folder / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
