"""The planted test: does AutoAL's search find the good strategy when one is planted among bad ones?

Candidates ``margin,anti_margin,noise_a,noise_b``: margin is the only informative one, anti_margin
queries the most confident samples first (the worst thing to do) and the noise columns are random.
An equal-weight mix of the four lands near random sampling, so a search that learns nothing shows.

Importing this module registers the three planted candidates (the tests load it through the
``autoal.candidates`` entry-point group, as a third-party plug-in would be loaded). Run as a script it
prints, per seed, AutoAL's strategy weights per round, the share of the last round's picks that margin
alone would have made from the same model, and the AUBC of AutoAL against margin alone:

    python -m experiments.planted --config experiments/configs/digits.toml --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import register_candidate

PLANTED = "margin,anti_margin,noise_a,noise_b"


@register_candidate("anti_margin", needs={"probs"})
def anti_margin(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """p_top1 - p_top2, shape (N,): the most confident samples first (margin reversed)."""
    top2 = out.require("probs").topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


@register_candidate("noise_a")
def noise_a(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Uniform random scores from the candidate's generator, shape (N,)."""
    return torch.rand(out.n, generator=generator)


@register_candidate("noise_b")
def noise_b(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """A second, independent column of uniform random scores, shape (N,)."""
    return torch.rand(out.n, generator=generator)


def planted_figures(records: list[dict]) -> dict:
    """From an AutoAL run's records: per-round weight order, and the last round's agreement with margin."""
    rounds = [r["selector"] for r in records if "selector" in r]
    order = [sorted(info["weights"], key=info["weights"].get, reverse=True) for info in rounds]
    return {
        "margin_highest": [o[0] == "margin" for o in order],
        "anti_margin_lowest": [o[-1] == "anti_margin" for o in order],
        "last_agreement_with_margin": rounds[-1]["agreement"]["margin"],
        "last_weights": rounds[-1]["weights"],
    }


def planted_config(config_file: str, overrides: str = ""):
    """The RunConfig of a config file with ``key=value+key=value`` overrides (typed like the field)."""
    from autoal.config import RunConfig, read_config_file

    settings = read_config_file(config_file)
    for pair in filter(None, overrides.split("+")):
        key, value = pair.split("=", 1)
        settings[key] = type(getattr(RunConfig(), key))(value)
    return RunConfig(**settings)


def planted_parser(description: str, out: str) -> argparse.ArgumentParser:
    """The options both planted-pool scripts share; each adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default="experiments/configs/digits.toml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", default="", help="extra settings key=value joined by +, e.g. search_epochs=100")
    parser.add_argument("--out", default=out)
    return parser


def planted_setup(args: argparse.Namespace):
    """(base config, dataset, seeds) of parsed planted-script options; one thread, quiet logging."""
    from autoal.data import load_dataset

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    base = planted_config(args.config, args.set)
    return base, load_dataset(base.dataset, base.data_root, base.size), [int(s) for s in args.seeds.split(",")]


def main(argv: list[str] | None = None) -> int:
    from autoal.config import RunConfig
    from autoal.loop import run
    from autoal.runlog import read_rounds

    parser = planted_parser(__doc__.splitlines()[0], "runs/planted")
    parser.add_argument("--modes", default="first-order", help="comma-separated AutoAL search modes")
    args = parser.parse_args(argv)
    base, data, seeds = planted_setup(args)

    def finished(method: str, seed: int, cfg: RunConfig) -> tuple[Path, dict]:
        folder = Path(args.out) / f"{method}-seed{seed}"
        summary_file = folder / "summary.json"  # a finished run is read back, a killed one resumes
        return folder, json.loads(summary_file.read_text()) if summary_file.is_file() else run(cfg, folder, data=data)

    aubc: dict[str, list[float]] = {"margin": []}
    for seed in seeds:
        aubc["margin"].append(finished("margin", seed, replace(base, seed=seed, strategy="margin"))[1]["aubc"])
    for mode in args.modes.split(","):
        method = f"autoal-{mode}"
        aubc[method] = []
        for seed in seeds:
            cfg = replace(base, seed=seed, strategy="autoal", search_mode=mode, candidates=PLANTED)
            folder, summary = finished(method, seed, cfg)
            aubc[method].append(summary["aubc"])
            fig = planted_figures(read_rounds(folder))
            marks = lambda flags: "".join("x" if f else "." for f in flags)  # noqa: E731
            weights = "  ".join(f"{k} {v:.3f}" for k, v in fig["last_weights"].items())
            print(f"{method} seed {seed}: margin highest {marks(fig['margin_highest'])}  "
                  f"anti_margin lowest {marks(fig['anti_margin_lowest'])}  "
                  f"last-round agreement with margin {fig['last_agreement_with_margin']:.2f}  "
                  f"AUBC {summary['aubc']:.4f}\n    last weights: {weights}", flush=True)
    print()
    for method, values in aubc.items():
        print(f"{method:24s} AUBC mean {sum(values) / len(values):.4f} over {len(values)} seeds: "
              + " ".join(f"{v:.4f}" for v in values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
