"""Command line: ``python -m autoal.train --dataset pathmnist`` (or the ``autoal`` console script)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from autoal import runlog
from autoal.config import CONFIG_FIELDS, RunConfig, build_parser, check, default_run_dir, from_dict, resolve_config
from autoal.errors import UserError

log = logging.getLogger("autoal")


def resolve_run(args: Any) -> tuple[RunConfig, Path]:
    """The config and run folder: a new run (refusing a folder that holds one) or ``--resume``."""
    given = {k for k in vars(args) if k in CONFIG_FIELDS}
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / runlog.CONFIG).is_file():
            raise UserError(f"--resume {run_dir}: no {runlog.CONFIG} there; give the folder of an earlier run")
        extra = sorted(given - {"device"})
        if extra or args.config:
            flags = ", ".join("--" + k.replace("_", "-") for k in extra) or "--config"
            raise UserError(f"--resume continues with the run's saved config; drop {flags} or start a new run")
        cfg = from_dict(runlog.read_json(run_dir / runlog.CONFIG))
        if "device" in given:
            cfg.device = args.device
        return check(cfg), run_dir
    cfg = resolve_config(args)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if (run_dir / runlog.CONFIG).is_file():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another folder with --out")
    return cfg, run_dir


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        cfg, run_dir = resolve_run(args)
        return _run(cfg, run_dir, progress=not args.no_progress and sys.stderr.isatty())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: every finished round is saved; continue with --resume {locals().get('run_dir', 'RUN_DIR')}",
              file=sys.stderr)
        return 130


def _run(cfg: RunConfig, run_dir: Path, progress: bool) -> int:
    from autoal.data import load_dataset
    from autoal.loop import check_sizes, run  # heavy imports after the arguments are known to be good

    data = load_dataset(cfg.dataset, cfg.data_root, cfg.size)  # bad data fails before anything is shown
    check_sizes(cfg, len(data.train))

    print(f"run folder: {run_dir}", flush=True)
    bar = step_bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.rounds + 1, desc=f"{cfg.strategy} on {cfg.dataset}", unit="round")
        # the phase of the current round: long rounds (MedMNIST, ResNet-18) are not silent
        step_bar = tqdm(total=0, position=1, leave=False, unit="it", mininterval=0.5)

    current = [None]  # (phase, total) the step bar shows now

    def on_progress(phase: str, done: int, total: int) -> None:
        if current[0] != (phase, total):
            current[0] = (phase, total)
            step_bar.set_description(phase, refresh=False)
            step_bar.reset(total=total)
        step_bar.update(done - step_bar.n)

    def on_round(record: dict[str, Any]) -> None:
        line = (f"round {record['round']:>3}  labels {record['labels']:>6}  "
                f"test acc {record['acc']:.4f}  auc {record['auc']:.4f}")
        if bar is not None:
            bar.update(1)
            bar.write(line)
        else:
            print(line, flush=True)

    try:
        summary = run(cfg, run_dir, data=data, on_round=on_round, on_progress=on_progress if progress else None)
    finally:
        for b in (step_bar, bar):
            if b is not None:
                b.close()
    print(f"AUBC {summary['aubc']:.4f}  final acc {summary['final_acc']:.4f}  "
          f"({summary['total_seconds']:.1f} s)")
    print(f"results: {run_dir}/{runlog.ROUNDS}, {run_dir}/{runlog.SUMMARY}; "
          f"TensorBoard: tensorboard --logdir {run_dir}/{runlog.TENSORBOARD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
