"""ALBL on the planted pool: do its expert probabilities move towards margin?

Candidates ``margin,anti_margin,noise_a,noise_b`` (anti_margin: the most confident samples first;
noise_*: random scores from the candidate's generator) plus ALBL's own uniform random expert.
margin is the only informative expert, so an ALBL that learns raises p(margin) above 1/K and
above p(anti_margin). Prints, per seed and setting, every round's expert probabilities, the
reward and the AUBC:

    python -m experiments.albl_planted --config experiments/configs/digits.toml --seeds 0,1,2

``--modes`` (per-example, per-batch) and ``--rewards`` (gain, accuracy) sweep ALBL's options;
``--set key=value+key=value`` overrides run settings. Finished runs under ``--out`` are read back.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from experiments.planted import PLANTED, planted_parser, planted_setup  # importing it registers the planted candidates

EXPERTS = [*PLANTED.split(","), "random_expert"]


def probability_table(records: list[dict]) -> list[dict[str, float]]:
    """Expert probabilities per query round, from a run's records."""
    return [r["selector"]["expert_probs"] for r in records if "expert_probs" in r.get("selector", {})]


def main(argv: list[str] | None = None) -> int:
    from autoal.loop import run
    from autoal.runlog import read_rounds

    parser = planted_parser(__doc__.splitlines()[0], "runs/albl_planted")
    parser.add_argument("--modes", default="per-example", help="comma-separated ALBL batch modes")
    parser.add_argument("--rewards", default="gain", help="comma-separated ALBL rewards (gain, accuracy)")
    args = parser.parse_args(argv)
    base, data, seeds = planted_setup(args)
    summary_lines = []
    for mode in args.modes.split(","):
        for reward in args.rewards.split(","):
            label = f"albl-{mode}-{reward}"
            finals: list[dict[str, float]] = []
            for seed in seeds:
                cfg = replace(base, seed=seed, strategy="albl", candidates=PLANTED, albl_batch_mode=mode,
                              albl_reward=reward)
                folder = Path(args.out) / f"{label}-seed{seed}"
                done = folder / "summary.json"
                summary = json.loads(done.read_text()) if done.is_file() else run(cfg, folder, data=data)
                table = probability_table(read_rounds(folder))
                print(f"{label} seed {seed}  (K = {len(EXPERTS)}, 1/K = {1 / len(EXPERTS):.3f})")
                print("  round  " + "  ".join(f"{e:>13s}" for e in EXPERTS))
                for r, probs in enumerate(table):
                    print(f"  {r:5d}  " + "  ".join(f"{probs[e]:13.3f}" for e in EXPERTS))
                print(f"  AUBC {summary['aubc']:.4f}", flush=True)
                finals.append(table[-1])
            mean = {e: sum(f[e] for f in finals) / len(finals) for e in EXPERTS}
            summary_lines.append(f"{label:28s} last-round p, mean of {len(seeds)} seeds: "
                                 + "  ".join(f"{e} {mean[e]:.3f}" for e in EXPERTS))
    print()
    print("\n".join(summary_lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
