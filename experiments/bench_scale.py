"""Benchmark: one active-learning round at pool sizes N, phase by phase, with peak memory (issue 10, Scale).

    OMP_NUM_THREADS=1 python -m experiments.bench_scale --sizes 10000,40000,165000 --size224 2000

For each size a synthetic pool in MedMNIST's npz layout is written into a temporary folder (28 px
grayscale like TissueMNIST, whose pool is 165,466 images; 224 px RGB like PathMNIST_224 for
``--size224``), and a fresh Python process (so its peak RSS is its own) loads it through the real
path (the npz unpacked once into the memory-mapped cache, then loaded again from the cache) and runs
one round of AutoAL the way the loop does:

  train      the task model on the initial labeled set (fixed size: its cost does not depend on N)
  evaluate   on the test split (fixed size)
  infer      one pass over the unlabeled pool computing every candidate's needs
  <name>     each candidate's choice of ``budget`` rows from that pass, timed alone
  search     AutoAL's search (FitNet on L_tr, L_val inference and columns, SearchNet epochs)
  select     the rest of AutoAL's selection: every candidate's column on the pool, SearchNet's
             weights over it, the mixture threshold and the top-b

then prints the peak RSS (getrusage) and the resident anonymous / file-backed memory at the end.
Across sizes it fits log(seconds) = a + k log(N) per phase and for the N-dependent part of the
round (infer + select), and prints k: 1 is linear. Not a test: it prints figures (and writes them as
JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SEVEN = "entropy,margin,least_confidence,bald,kmeans,var_ratio,mean_std"
#: Phases whose work grows with the pool (the rest run on the fixed labeled and test sets).
POOL_PHASES = ("infer", "select")


def synthetic_images(n: int, size: int, channels: int, n_classes: int, seed: int,
                     chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W[, C]) and labels (N, 1): class c brightens its own cell of a 3x3 grid,
    plus noise; generated in chunks so a large pool never needs a float copy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    shape = (n, size, size) if channels == 1 else (n, size, size, channels)
    images = np.empty(shape, dtype=np.uint8)
    cell = size // 3
    for start in range(0, n, chunk):
        block = rng.integers(0, 80, size=(min(chunk, n - start), *shape[1:]), dtype=np.uint8)
        for c in range(n_classes):
            rows = np.nonzero(labels[start:start + len(block)] == c)[0]
            r, q = divmod(c % 9, 3)
            block[rows, r * cell:(r + 1) * cell, q * cell:(q + 1) * cell] += 120
        images[start:start + len(block)] = block
    return images, labels.reshape(-1, 1).astype(np.int64)


def write_pool(path: Path, n: int, size: int, channels: int, n_classes: int, n_test: int, seed: int) -> None:
    """An npz in MedMNIST layout (stored, not deflated: compressing noise costs minutes and saves nothing)."""
    arrays: dict[str, np.ndarray] = {}
    for i, (split, count) in enumerate((("train", n), ("val", min(n_test, 1000)), ("test", n_test))):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = synthetic_images(count, size, channels, n_classes,
                                                                              seed + i)
    np.savez(path, **arrays)


# --- one size, in its own process ---------------------------------------------------------------

def measure(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One round at one pool size: seconds per phase and memory; runs in a fresh process."""
    import torch

    from autoal import accel
    from autoal.config import RunConfig, check
    from autoal.data import load_dataset
    from autoal.loop import initial_labeled, make_checked_selector, make_learner, resolve_device, resolve_models
    from autoal.registry import candidate_choice
    from autoal.rng import derive_seed, deterministic_mode
    from autoal.selectors import RoundContext

    torch.set_num_threads(args.threads)
    cfg = check(RunConfig(dataset=f"npz:{path}", strategy="autoal", init_size=args.init_size, budget=args.budget,
                          rounds=1, epochs=args.epochs, min_steps=args.min_steps, batch_size=32,
                          mc_samples=args.mc_samples, eval_batch_size=args.eval_batch_size, device=args.device,
                          backbone=args.backbone, candidates=args.candidates, search_epochs=args.search_epochs,
                          precision=args.precision, deterministic=args.deterministic, seed=0))
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}  # this process's CPU time: what the work costs on a shared machine
    peak_after: dict[str, float | None] = {}  # the peak RSS (VmHWM) after each phase, MiB

    def timed(name: str, fn):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        tick, cpu_tick = time.perf_counter(), time.process_time()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds[name] = round(time.perf_counter() - tick, 3)
        cpu_seconds[name] = round(time.process_time() - cpu_tick, 3)
        peak_after[name] = accel.rss_breakdown_mb().get("peak")  # which phase raised the peak
        return result

    timed("unpack+load", lambda: load_dataset(cfg.dataset))  # the first load unpacks the archive
    data = timed("load", lambda: load_dataset(cfg.dataset))  # every later one maps the cache
    device = resolve_device(cfg.device)
    cfg = resolve_models(cfg, device)
    with deterministic_mode(cfg.deterministic):
        selector = make_checked_selector(cfg)
        learner = make_learner(cfg, data, device, needs=selector.needs)
        labeled = torch.zeros(len(data.train), dtype=torch.bool)
        labeled[initial_labeled(len(data.train), cfg.init_size, cfg.seed)] = True
        labeled_idx, unlabeled = labeled.nonzero().squeeze(1), (~labeled).nonzero().squeeze(1)
        model = timed("train", lambda: learner.fit(labeled_idx, derive_seed(cfg.seed, "train", 0)))
        timed("evaluate", lambda: learner.evaluate(model))
        outputs = timed("infer", lambda: learner.infer(model, unlabeled, selector.needs,
                                                       seed=derive_seed(cfg.seed, "infer", 0), labeled_rows=labeled_idx))
        for name in selector.candidates:
            timed(name, lambda: candidate_choice(name, outputs, budget=cfg.budget,
                                                 generator=torch.Generator().manual_seed(0)))
        select_seed = derive_seed(cfg.seed, "select", 0)
        ctx = RoundContext(round=0, budget=cfg.budget, outputs=outputs, unlabeled=unlabeled, labeled=labeled_idx,
                           model=model, learner=learner, seed=select_seed,
                           generator=torch.Generator().manual_seed(select_seed))
        selection = timed("autoal", lambda: selector.select(ctx))
    # AutoAL's own split: search_seconds (wall) of its select; the CPU time is split in the same ratio
    search_share = selection.info["search_seconds"] / max(seconds["autoal"], 1e-9)
    for record in (seconds, cpu_seconds):
        total = record.pop("autoal")
        record["search"] = round(total * search_share, 3)
        record["select"] = round(total - record["search"], 3)
    return {"n": len(data.train), "size": data.image_size, "channels": data.channels, "device": str(device),
            "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_after_phase_mb": peak_after, "peak_rss_mb": accel.peak_rss_mb(), "rss_at_end_mb": accel.rss_breakdown_mb(),
            "pixels_mb": round(data.train.images.numel() / 2**20, 1)}


# --- the sweep over sizes -----------------------------------------------------------------------

def exponent(ns: list[int], secs: list[float]) -> float | None:
    """k of the least-squares fit log(secs) = a + k log(n); None with fewer than two sizes."""
    points = [(n, s) for n, s in zip(ns, secs) if s > 0]
    if len({n for n, _ in points}) < 2:
        return None
    k, _ = np.polyfit(np.log([n for n, _ in points]), np.log([s for _, s in points]), 1)
    return round(float(k), 2)


def report(results: list[dict[str, Any]], key: str = "cpu_seconds") -> str:
    """A markdown table of ``key`` (cpu_seconds or seconds) per phase and the memory, then the exponents."""
    lines = [f"{'CPU seconds of the measuring process' if key == 'cpu_seconds' else 'wall seconds'} per phase:", ""]
    phases = list(results[0][key])
    header = ["N", "px", *phases, "peak RSS MiB", "anon MiB", "file MiB", "pixels MiB"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in results:
        mem = r["rss_at_end_mb"]
        row = [f"{r['n']:,}", str(r["size"]), *(f"{r[key].get(p, float('nan')):.2f}" for p in phases),
               f"{r['peak_rss_mb']:.0f}", f"{mem.get('anon', float('nan')):.0f}",
               f"{mem.get('file', float('nan')):.0f}", f"{r['pixels_mb']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    small = [r for r in results if r["size"] == 28]
    if len(small) >= 2:
        ns = [r["n"] for r in small]
        lines.append("")
        lines.append("Scaling exponent k (seconds ~ N^k) over the 28 px sizes:")
        for phase in phases:
            lines.append(f"  {phase:>18}: {exponent(ns, [r[key][phase] for r in small])}")
        pool = [sum(r[key][p] for p in POOL_PHASES) for r in small]
        lines.append(f"  {'infer + select':>18}: {exponent(ns, pool)}")
        per_round = [sum(v for k, v in r[key].items() if "load" not in k) for r in small]
        lines.append(f"  {'whole round':>18}: {exponent(ns, per_round)}  (train, evaluate and search "
                     f"do not grow with N here)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,40000,165000", help="28 px pool sizes (comma-separated)")
    parser.add_argument("--size224", type=int, default=0, help="also one 224 px RGB pool of this many images (0: none)")
    parser.add_argument("--n-test", type=int, default=2000, help="test split size (fixed across N)")
    parser.add_argument("--classes", type=int, default=8, help="classes (TissueMNIST: 8)")
    parser.add_argument("--init-size", type=int, default=100)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1, help="task-model epochs (the round's training is fixed-size)")
    parser.add_argument("--min-steps", type=int, default=50)
    parser.add_argument("--search-epochs", type=int, default=5)
    parser.add_argument("--mc-samples", type=int, default=20)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--candidates", default=SEVEN)
    parser.add_argument("--backbone", default="cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the measuring process")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--worker", metavar="NPZ", help=argparse.SUPPRESS)  # internal: measure one file
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(measure(Path(args.worker), args)))
        return 0
    plan = [(int(n), 28, 1) for n in args.sizes.split(",") if n.strip()]
    if args.size224:
        plan.append((args.size224, 224, 3))
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        for n, size, channels in plan:
            path = Path(folder) / f"pool{n}_{size}.npz"
            tick = time.perf_counter()
            write_pool(path, n, size, channels, args.classes, args.n_test, seed=n)
            print(f"wrote {path.name} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - tick:.1f} s",
                  flush=True)
            out = subprocess.run([sys.executable, "-m", "experiments.bench_scale", *passthrough, "--worker", str(path)],
                                 capture_output=True, text=True, env={**os.environ, "AUTOAL_CACHE_DIR": folder})
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return out.returncode
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"N={n:,} {size}px (CPU s): " + ", ".join(f"{k} {v:.2f}" for k, v in result["cpu_seconds"].items())
                  + f"; peak RSS {result['peak_rss_mb']:.0f} MiB", flush=True)
            path.unlink()
    print()
    print(report(results, "cpu_seconds"))
    print()
    print(report(results, "seconds"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
