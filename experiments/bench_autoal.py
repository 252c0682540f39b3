"""Cost of AutoAL's search: wall time of an AutoAL run / wall time of an entropy run.

Same dataset (the offline default, sklearn digits), task model, rounds and seed; each run goes
through ``autoal.loop.run`` into a temporary folder. Prints both times, the ratio (target: an AutoAL run within 3x an entropy run; the published code costs >100x)
and seconds per phase summed over the rounds. Run with OMP_NUM_THREADS=1 so both runs see the
same CPU:

    OMP_NUM_THREADS=1 python experiments/bench_autoal.py [--modes first-order,unrolled,heldout] [--rounds 12]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from autoal.config import RunConfig, read_config_file
from autoal.data import load_dataset
from autoal.loop import run


def timed_run(cfg: RunConfig, data, folder: Path) -> tuple[float, dict]:
    """Wall seconds of one run, plus its CPU seconds (robust to other users of the cores), AUBC and phases."""
    tick, cpu_tick = time.perf_counter(), time.process_time()
    summary = run(cfg, folder, data=data)
    seconds = time.perf_counter() - tick
    cpu_seconds = time.process_time() - cpu_tick
    phases: dict[str, float] = defaultdict(float)
    for line in (folder / "rounds.jsonl").read_text().splitlines():
        record = json.loads(line)
        for phase, secs in record["seconds"].items():
            phases[phase] += secs
        if "search_seconds" in record.get("selector", {}):
            phases["(of select) search"] += record["selector"]["search_seconds"]
    return seconds, {"aubc": summary["aubc"], "final_acc": summary["final_acc"], "phases": dict(phases),
                     "cpu": cpu_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="override the config's dataset")
    parser.add_argument("--config", default="experiments/configs/digits.toml", help="the runs' settings")
    parser.add_argument("--rounds", type=int, default=None, help="override the config's rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="first-order", help="comma-separated AutoAL search modes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    settings = read_config_file(args.config)
    settings.update(seed=args.seed, device="cpu")
    if args.dataset:
        settings["dataset"] = args.dataset
    if args.rounds is not None:
        settings["rounds"] = args.rounds
    base = RunConfig(**settings)
    data = load_dataset(base.dataset, base.data_root, base.size)
    configs = {"entropy": replace(base, strategy="entropy")}
    for mode in args.modes.split(","):
        configs[f"autoal[{mode}]"] = replace(base, strategy="autoal", search_mode=mode)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in configs.items():
            results[name] = timed_run(cfg, data, Path(tmp) / name.replace("[", "-").replace("]", ""))
            print(f"{name:24s} {results[name][0]:7.1f} s   AUBC {results[name][1]['aubc']:.4f}  "
                  f"final acc {results[name][1]['final_acc']:.4f}", flush=True)

    wall0, cpu0 = results["entropy"][0], results["entropy"][1]["cpu"]
    print(f"\n{base.dataset}, {base.rounds} rounds, seed {args.seed}, torch threads {torch.get_num_threads()}")
    print(f"{'run':24s} {'wall s':>8s} {'/entropy':>9s} {'cpu s':>8s} {'/entropy':>9s}   "
          f"wall seconds per phase (summed over rounds)")
    for name, (seconds, info) in results.items():
        phases = "  ".join(f"{k} {v:.1f}" for k, v in sorted(info["phases"].items()))
        print(f"{name:24s} {seconds:8.1f} {seconds / wall0:9.2f} {info['cpu']:8.1f} {info['cpu'] / cpu0:9.2f}   {phases}")


if __name__ == "__main__":
    main()
