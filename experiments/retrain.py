"""Retrain the task model on a finished run's labeled set under other training settings.

    OMP_NUM_THREADS=1 python -m experiments.retrain RUN_DIR --labels 100 --set class_weights=balanced [--set ...]

Rebuilds the labeled set the run held at ``--labels`` labels (its initial set plus the picks of the
rounds before), trains a fresh model on it with the run's own settings and again with the ``--set``
overrides, and prints the class counts and both test accuracies. Separates what a strategy chose
from how the model learns from it: a set whose model does badly under one recipe and well under
another is a training problem, not a selection one. The training seed is the run's seed for both,
so the difference is the settings'. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from autoal import runlog
from autoal.config import from_dict
from autoal.data import load_dataset
from autoal.initial import initial_set
from autoal.loop import make_learner
from experiments.compare import parse_value


def labeled_at(run_dir: Path, labels: int, cfg, data) -> torch.Tensor:
    """Pool rows the run had labeled when it held ``labels`` labels."""
    rows = [initial_set(cfg, data)]
    for line in (run_dir / "rounds.jsonl").read_text().splitlines():
        if sum(len(r) for r in rows) >= labels:
            break
        rows.append(torch.tensor(json.loads(line)["queried"], dtype=torch.long))
    labeled = torch.cat(rows)
    if len(labeled) != labels:
        raise SystemExit(f"error: {run_dir} never held exactly {labels} labels (it went to {len(labeled)})")
    return labeled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--labels", type=int, required=True, help="labeled-set size to rebuild")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a training override")
    args = parser.parse_args(argv)

    raw = runlog.read_config_json(args.run_dir / runlog.CONFIG)
    overrides = {}
    for pair in args.set:
        key, _, text = pair.partition("=")
        try:
            overrides[key] = parse_value(key, text)
        except (KeyError, ValueError) as exc:
            parser.error(f"--set {pair}: unknown setting or bad value ({exc}); give KEY=VALUE with a run setting's name")
    cfg = from_dict(raw)
    if cfg.oracle == "human":  # its labels live in the run's checkpoint, not in the dataset
        parser.error(f"{args.run_dir} was labeled by a person (--oracle human); retrain rebuilds only "
                     f"simulated-oracle runs, whose labels are the dataset's own")
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.size, cfg.channels)
    labeled = labeled_at(args.run_dir, args.labels, cfg, data)
    counts = torch.bincount(data.train.labels[labeled].long(), minlength=data.n_classes).tolist()
    device = torch.device("cpu")
    line = [f"{args.run_dir.name} labels {args.labels} class counts {counts}"]
    for name, settings in (("as run", cfg), (" ".join(args.set) or "again", from_dict({**raw, **overrides}))):
        learner = make_learner(settings, data, device, needs=frozenset({"probs"}))
        line.append(f"{name}: test acc {learner.evaluate(learner.fit(labeled, settings.seed))[0]:.3f}")
    print("  ".join(line))


if __name__ == "__main__":
    main()
