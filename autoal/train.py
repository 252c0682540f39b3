"""Command line: ``python -m autoal.train --dataset pathmnist`` (or the ``autoal`` console script)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from autoal import runlog
from autoal.config import (CANDIDATE_FLAGS, CONFIG_FIELDS, RunConfig, build_parser, check, default_run_dir, from_dict,
                           resolve_config, validate_settings)
from autoal.errors import UserError

log = logging.getLogger("autoal")


def resolve_run(args: Any) -> tuple[RunConfig, Path, bool]:
    """The config and run folder, and whether this is a ``--resume``."""
    given = {k for k in vars(args) if k in CONFIG_FIELDS or k in CANDIDATE_FLAGS}  # e.g. --diversity-temperature
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / runlog.CONFIG).is_file():
            raise UserError(f"--resume {run_dir}: no {runlog.CONFIG} there; give the folder of an earlier run")
        extra = sorted(given - {"device"})
        if extra or args.config:
            flags = ", ".join("--" + k.replace("_", "-") for k in extra) or "--config"
            raise UserError(f"--resume continues with the run's saved config; drop {flags} or start a new run")
        path = run_dir / runlog.CONFIG
        raw = runlog.read_config_json(path)
        # types and choices as for a config file; unknown keys (a newer version's) are ignored
        cfg = from_dict(validate_settings({k: v for k, v in raw.items() if k in CONFIG_FIELDS}, where=str(path)))
        if "device" in given:
            cfg.device = args.device
        return check(cfg), run_dir, True
    cfg = resolve_config(args)
    return cfg, Path(cfg.out) if cfg.out else default_run_dir(cfg), False


def refuse_a_computed_run(run_dir: Path) -> None:
    """A new run may reuse a folder whose run never reached its first checkpoint, nothing else."""
    if (run_dir / runlog.CHECKPOINT).is_file():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another folder with --out")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run_dir = None
    try:
        cfg, run_dir, resuming = resolve_run(args)
        return _run(cfg, run_dir, resuming, progress=not args.no_progress and sys.stderr.isatty())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if run_dir is not None and (run_dir / runlog.CHECKPOINT).is_file():
            print(f"\ninterrupted: every finished round is saved; continue with --resume {run_dir}", file=sys.stderr)
        else:
            print("\ninterrupted before the first round was saved; run the same command again", file=sys.stderr)
        return 130


def _run(cfg: RunConfig, run_dir: Path, resuming: bool, progress: bool) -> int:
    from autoal.data import load_dataset
    from autoal.loop import check_pool_labels, check_sizes, make_checked_selector, resolve_device  # heavy

    data = load_dataset(cfg.dataset, cfg.data_root, cfg.size, cfg.channels)  # bad data fails before anything is written
    check_sizes(cfg, len(data.train))
    check_pool_labels(cfg, data)
    resolve_device(cfg.device)
    make_checked_selector(cfg)  # its settings too (--candidates, --mc-samples for MC strategies)
    created = not run_dir.exists()
    with runlog.hold_lock(run_dir):  # one process per run folder, until this one exits
        if not resuming:
            refuse_a_computed_run(run_dir)  # checked under the lock: two starts cannot both pass it
        try:
            return _run_locked(cfg, run_dir, data, progress)
        except BaseException:
            if created and not (run_dir / runlog.CHECKPOINT).is_file():
                # failed before its first round was saved: leave no half-made folder behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _run_locked(cfg: RunConfig, run_dir: Path, data: Any, progress: bool) -> int:
    from autoal.loop import run

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
        line = _round_line(record)
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
    if "pending" in summary:  # the human oracle: a batch waits for a person; this run is paused, not failed
        from autoal.oracle import next_steps

        record = summary["record"]
        print(f"{_round_line(record)}  (paused for labels)")
        print(next_steps(run_dir, Path(summary["pending"]), summary["n_images"]), flush=True)
        return 0
    print(f"AUBC {_number(summary['aubc'])}  final acc {_number(summary['final_acc'])}  "
          f"({summary['total_seconds']:.1f} s, peak memory {summary['peak_rss_mb']:.0f} MiB)")
    print(f"results: {run_dir}/{runlog.ROUNDS}, {run_dir}/{runlog.SUMMARY}; "
          f"TensorBoard: tensorboard --logdir {run_dir}/{runlog.TENSORBOARD}")
    return 0


def _round_line(record: dict[str, Any]) -> str:
    return (f"round {record['round']:>3}  labels {record['labels']:>6}  "
            f"test acc {_number(record['acc'])}  auc {_number(record['auc'])}")


def _number(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
