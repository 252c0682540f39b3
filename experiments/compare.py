"""Compare strategies on one dataset over several seeds: run the sweep, then tabulate and plot it.

    python -m experiments.compare --dataset digits \\
        --methods autoal,albl,selectal,entropy,margin,least_confidence,bald,var_ratio,mean_std,kmeans,random \\
        --seeds 0,1,2

Every method x seed is a normal run folder ``OUT/runs/METHOD-seedS`` (so ``python -m autoal.train
--resume`` works on it too). Finished runs are skipped, killed runs resume from their checkpoint,
the rest run. Then OUT/results.md, OUT/results.csv, OUT/curves.png and OUT/weights.png are written.

A method may carry setting overrides after ``@``, as ``key=value`` pairs joined by ``+`` (``+``
needs no shell quoting, unlike ``;``): ``autoal@search_mode=unrolled+epochs=20``. Its folder and
table name is the sanitised spec, ``autoal-search_mode-unrolled-epochs-20``. A candidate's own
parameters go after ``:`` (``diversity:T=0.1``, ``batchbald:samples=512,max_configs=1024``; folder
``diversity-T-0.1``), before any ``@`` overrides: ``diversity:T=0.1@epochs=20``.

Precedence of settings: RunConfig defaults < --config FILE < flags of this command < a method's
overrides; the strategy and seed always come from --methods and --seeds.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import logging
import multiprocessing
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from autoal.config import (CONFIG_FIELDS, OneLineParser, RunConfig, apply_candidate_flags, check, config_differences,
                           from_dict, read_config_file, to_dict, validate_settings)
from autoal.errors import UserError
from experiments import results as res

log = logging.getLogger(__name__)

OVERRIDE_SEP = "+"
#: Inside a method spec, a list setting (candidates) separates its items with this: --methods already
#: splits on commas. autoal@candidates=entropy;margin;diversity:T=0.1 is --candidates entropy,margin,...
LIST_SEP = ";"
#: Settings the sweep decides itself; a method spec or config file cannot set them per run.
SWEEP_OWNED = ("strategy", "seed", "out")
#: Run settings this command takes as flags (all others through --config or a method's overrides).
CLI_SETTINGS = ("dataset", "data_root", "size", "init_size", "budget", "rounds", "epochs", "backbone", "device")
RUNS = "runs"


# --- method specs and seeds ------------------------------------------------------------------

@dataclass(frozen=True)
class MethodSpec:
    spec: str  # as given, e.g. "autoal@search_mode=unrolled"
    strategy: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Folder- and table-safe name: autoal@search_mode=unrolled -> autoal-search_mode-unrolled."""
        return res.sanitise(self.spec)


def parse_value(name: str, text: str) -> Any:
    """A method override's text as the type of the RunConfig field ``name``."""
    expected = type(CONFIG_FIELDS[name].default)
    if expected is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name} must be true or false, got {text!r}")
        return lowered in ("true", "1", "yes")
    try:
        return expected(text)
    except ValueError:
        raise ValueError(f"{name} must be {expected.__name__}, got {text!r}") from None


def parse_method(spec: str, known: Sequence[str]) -> MethodSpec:
    """``strategy[:param=value,...][@key=value+key=value...]`` -> MethodSpec; UserError naming the problem
    otherwise. A candidate's parameters are checked (and written canonically) by the registry."""
    strategy, at, rest = spec.strip().partition("@")
    strategy = strategy.strip()
    if strategy.partition(":")[0].strip() not in known:
        raise UserError(f"unknown method {strategy!r} in --methods; known: {', '.join(known)}")
    if ":" in strategy:
        from autoal.registry import get_candidate

        try:
            strategy = get_candidate(strategy).name
        except KeyError:  # a search method (autoal, albl, selectal): its settings go after '@'
            raise UserError(f"method {spec!r}: only a candidate takes parameters after ':'; give "
                            f"{strategy.partition(':')[0]}'s settings after '@'") from None
        except UserError as exc:
            raise UserError(f"method {spec!r}: {exc}") from None
        # the canonical spec names the folder: diversity:T=0.10 and diversity:T=0.1 are one method,
        # and diversity:T=0.5 (the default) is plain diversity
        spec = strategy + (at + rest if at else "")
    overrides: dict[str, Any] = {}
    for pair in filter(None, rest.split(OVERRIDE_SEP)):
        key, eq, text = pair.partition("=")
        name = key.strip().replace("-", "_")
        if not eq:
            raise UserError(f"method {spec!r}: override {pair!r} is not key=value "
                            f"(pairs are joined by '{OVERRIDE_SEP}')")
        if name not in CONFIG_FIELDS:
            raise UserError(f"method {spec!r}: unknown setting {key!r}; known: {', '.join(sorted(CONFIG_FIELDS))}")
        if name in SWEEP_OWNED:
            raise UserError(f"method {spec!r}: {name} is set by the sweep (--methods/--seeds/--out), not per method")
        if name == "candidates":
            from autoal.registry import parse_candidates

            try:  # checked here, so a bad name fails before any run starts
                value = ",".join(parse_candidates(text.replace(LIST_SEP, ",")))
            except UserError as exc:
                raise UserError(f"method {spec!r}: {exc}") from None
        else:
            try:
                value = parse_value(name, text.strip())
            except ValueError as exc:
                raise UserError(f"method {spec!r}: {exc}") from None
        overrides.update(validate_settings({name: value}, where=f"method {spec!r}"))  # choices too
    if at and not overrides:
        raise UserError(f"method {spec!r}: nothing after '@'; give key=value overrides or drop the '@'")
    return MethodSpec(spec.strip(), strategy, overrides)


def parse_methods(text: str, known: Sequence[str]) -> list[MethodSpec]:
    from autoal.registry import split_specs  # diversity:T=0.1,N=3 keeps its own commas

    specs = [parse_method(s, known) for s in split_specs(text)]
    if not specs:
        raise UserError("--methods is empty; give a comma-separated list such as entropy,random")
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"--methods names {', '.join(duplicates)} more than once")
    return specs


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` or ranges ``0-4`` (inclusive), mixed freely."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise UserError(f"--seeds: {part!r} is not a seed or range; use e.g. 0,1,2 or 0-4")
        low, high = int(match[1]), int(match[2] or match[1])
        seeds.extend(range(low, high + 1))
    if not seeds:
        raise UserError("--seeds is empty; give e.g. 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds repeats a seed: {text}")
    return seeds


# --- planning --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    method: str  # MethodSpec.name
    seed: int
    cfg: RunConfig
    run_dir: Path


def absolute_paths(settings: dict[str, Any]) -> dict[str, Any]:
    """Data paths made absolute: worker processes and Ray tasks may start in another directory."""
    settings = dict(settings)
    dataset = settings.get("dataset", "")
    if dataset.startswith("npz:"):
        settings["dataset"] = "npz:" + str(Path(dataset[4:]).expanduser().resolve())
    if "data_root" in settings:
        settings["data_root"] = str(Path(settings["data_root"]).expanduser().resolve())
    return settings


def plan_runs(settings: dict[str, Any], methods: Sequence[MethodSpec], seeds: Sequence[int],
              out: Path) -> list[RunSpec]:
    """One RunSpec per method x seed (method-major, so a partial sweep fills whole rows first)."""
    plan = []
    for method in methods:
        for seed in seeds:
            run_dir = (out / RUNS / res.run_dir_name(method.name, seed)).resolve()
            merged = absolute_paths({**settings, **method.overrides, "strategy": method.strategy})
            merged = apply_candidate_flags(merged, strict=False)  # a config's diversity_temperature, where used
            cfg = check(RunConfig(**{**merged, "seed": seed, "out": str(run_dir)}))
            plan.append(RunSpec(method.name, seed, cfg, run_dir))
    return plan


def run_status(spec: RunSpec, local: bool = True) -> str:
    """'done' (summary present), 'resume' (checkpoint present), or 'new'; UserError when the folder
    holds a run with other settings (continuing it would mix two configurations).

    ``local``: the run computes on this machine, so ``auto`` backbones are compared as what they
    mean on its device: a folder computed with the small CNN on the CPU is not a finished ResNet-18
    run on CUDA. Not local (Ray: the device is the worker's): that check is left to the run itself,
    which makes it against the saved config before computing anything.
    """
    from autoal import runlog
    from autoal.loop import DEVICE_DEPENDENT, resolve_device, resolve_models

    config_path = spec.run_dir / runlog.CONFIG
    computed = (spec.run_dir / runlog.SUMMARY).is_file() or (spec.run_dir / runlog.CHECKPOINT).is_file()
    if config_path.is_file() and computed:  # a folder that never reached a checkpoint is simply reused
        saved, requested = from_dict(runlog.read_config_json(config_path)), spec.cfg
        if local:
            device = resolve_device(requested.device)
            saved, requested = resolve_models(saved, device), resolve_models(requested, device)
        diffs = config_differences(to_dict(saved), to_dict(requested))
        if not local:
            diffs = [d for d in diffs if d.split(":")[0] not in DEVICE_DEPENDENT]
        if diffs:
            raise UserError(f"{spec.run_dir} holds a run with other settings ({'; '.join(diffs)}); "
                            f"delete that folder or choose another --out")
    if (spec.run_dir / runlog.SUMMARY).is_file():
        return "done"
    if (spec.run_dir / runlog.CHECKPOINT).is_file():
        return "resume"
    return "new"


# --- executing -------------------------------------------------------------------------------

#: Called when a run ends: (spec, summary or None, error text or None).
Report = Callable[[RunSpec, "dict[str, Any] | None", "str | None"], None]

_DATA_CACHE: dict[tuple[str, str, int], Any] = {}


def _dataset(cfg: RunConfig) -> Any:
    """The run's dataset, loaded once per process (a sweep uses one dataset many times)."""
    from autoal.data import load_dataset

    key = (cfg.dataset, cfg.data_root, cfg.size)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(cfg.dataset, cfg.data_root, cfg.size)
    return _DATA_CACHE[key]


def run_one(cfg_dict: dict[str, Any], run_dir: str, threads: int | None = None) -> dict[str, Any]:
    """Run (or resume) one run; the entry point of worker processes and Ray tasks (picklable args)."""
    import torch

    from autoal import runlog
    from autoal.loop import run

    if threads:
        torch.set_num_threads(threads)
    cfg = from_dict(cfg_dict)
    with runlog.hold_lock(Path(run_dir)):  # a train process (or another sweep's worker) may not share it
        return run(cfg, Path(run_dir), data=_dataset(cfg))


def ray_task_device(requested: str, gpu_ids: Sequence[Any]) -> str:
    """The device a Ray task computes on, for the run's ``--device``.

    Ray gives a task the GPUs it reserved by setting CUDA_VISIBLE_DEVICES to their physical ids,
    so inside the task torch numbers them from 0: on the GPU Ray chose, ``cuda:1`` names a second
    GPU the task cannot see (or does not own). Placement is Ray's, so every CUDA request (``cuda``,
    ``cuda:N``) becomes the task's own first GPU, ``cuda:0``. A CUDA request in a task that
    reserved no GPU is refused with the fix; cpu and auto stay as they are (auto finds no GPU in a
    task without one, and resolves to the CPU, as on a machine without one).
    """
    if not requested.startswith("cuda"):
        return requested
    if not gpu_ids:
        raise UserError(f"--device {requested}: this Ray task reserved no GPU, so it sees none; give "
                        f"--gpus-per-run 1 (or a fraction) on a cluster with GPUs, or --device cpu")
    return "cuda:0"


def run_one_ray(cfg_dict: dict[str, Any], run_dir: str, threads: int | None = None) -> dict[str, Any]:
    """``run_one`` inside a Ray task: the device mapped to the GPU Ray assigned (``ray_task_device``)."""
    import ray

    gpu_ids = ray.get_gpu_ids()
    device = ray_task_device(cfg_dict.get("device", "auto"), gpu_ids)
    if device != cfg_dict.get("device"):
        log.info("%s: Ray assigned GPU %s; computing on %s (requested %s)", run_dir, gpu_ids, device,
                 cfg_dict.get("device"))
    return run_one({**cfg_dict, "device": device}, run_dir, threads)


def threads_per_worker(workers: int) -> int:
    """Split the cores between workers (oversubscribed BLAS threads slow every worker down);
    an OMP_NUM_THREADS the user set is an upper bound."""
    share = max(1, (os.cpu_count() or 1) // max(1, workers))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def execute_local(todo: Sequence[RunSpec], report: Report, workers: int = 1) -> None:
    """One run at a time in this process, or ``workers`` spawned processes."""
    if workers <= 1:
        for spec in todo:
            try:
                summary = run_one(to_dict(spec.cfg), str(spec.run_dir))
            except Exception as exc:  # one failed run must not lose the rest of the sweep
                log.debug("run %s failed", spec.run_dir, exc_info=True)
                report(spec, None, _error_text(exc))
            else:
                report(spec, summary, None)
        return
    threads = threads_per_worker(workers)
    # spawn, not fork: forking a process that already holds torch threads can deadlock
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = {pool.submit(run_one, to_dict(s.cfg), str(s.run_dir), threads): s for s in todo}
        try:
            for future in futures.as_completed(pending):
                spec = pending[future]
                try:
                    report(spec, future.result(), None)
                except Exception as exc:
                    report(spec, None, _error_text(exc))
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray, which is not installed: pip install 'autoal[ray]' "
                        "(or use --executor local)") from None
    return ray


def execute_ray(todo: Sequence[RunSpec], report: Report, *, cpus_per_run: float = 1.0,
                gpus_per_run: float | None = None, local_cpus: int | None = None) -> None:
    """Each run is a Ray task; they write into the same run folders (which must be on storage every
    node sees). Joins the cluster at RAY_ADDRESS when set, else starts a local Ray instance."""
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address="auto")
        else:
            # "local": a new instance even when /tmp/ray names a cluster started with `ray start`
            # (ray.init() would join that one, and refuses num_cpus when joining)
            ray.init(address="local", num_cpus=local_cpus, include_dashboard=False)
    try:
        if gpus_per_run is None:
            # Ray hides the GPUs from tasks that reserve none, so runs meant for CUDA must reserve one
            wants_cuda = any(s.cfg.device != "cpu" for s in todo)
            gpus_per_run = 1.0 if wants_cuda and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(run_one_ray)
        threads = max(1, int(cpus_per_run))
        pending = {task.remote(to_dict(s.cfg), str(s.run_dir), threads): s for s in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                report(spec, ray.get(done[0]), None)
            except Exception as exc:  # RayTaskError wraps the run's own exception
                cause = getattr(exc, "cause", None) or exc
                report(spec, None, _error_text(cause))
    finally:
        if started_here:
            ray.shutdown()


# --- reporting -------------------------------------------------------------------------------

def write_report(out: Path, plan: Sequence[RunSpec], methods: Sequence[str], title: str,
                 plots: bool = True) -> list[Path]:
    """Tables (always) and plots (with matplotlib) of the planned runs; returns the files written."""
    from autoal.runlog import atomic_write_text

    results = [res.load_run(s.run_dir, s.method, s.seed) for s in plan]
    stats = res.method_stats(results, methods)
    paired = res.paired_comparisons(results, methods)
    written = [out / "results.md", out / "results.csv"]
    atomic_write_text(written[0], res.render_markdown(stats, paired, title))
    atomic_write_text(written[1], res.render_csv(stats, paired))
    if not plots:
        return written
    from experiments import plots as plotting

    if not plotting.have_matplotlib():
        print("plots skipped: matplotlib is not installed (pip install 'autoal[plot]')")
        return written
    if plotting.plot_curves(results, methods, out / "curves.png", title):
        written.append(out / "curves.png")
    if plotting.plot_weights(results, methods, out / "weights.png"):
        written.append(out / "weights.png")
    return written


# --- command line ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m experiments.compare",
        description="Run every method x seed on one dataset (skipping finished runs, resuming killed ones), "
                    "then write results.md, results.csv, curves.png and weights.png into --out.")
    parser.add_argument("--methods", required=True,
                        help="comma-separated strategies; a candidate's parameters after ':', overrides after "
                             "'@' as key=value joined by '+' (a candidate pool's names joined by ';'), e.g. "
                             "autoal,autoal@search_mode=unrolled,autoal@candidates=entropy;margin;kmeans,entropy,"
                             "diversity:T=0.1,random")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds or ranges (default: 0,1,2)")
    parser.add_argument("--config", metavar="FILE", help="TOML/JSON run settings shared by every run "
                                                         "(the format of python -m autoal.train --config)")
    for name in CLI_SETTINGS:
        f = CONFIG_FIELDS[name]
        parser.add_argument("--" + name.replace("_", "-"), type=type(f.default), default=argparse.SUPPRESS,
                            metavar=name.upper(), choices=f.metadata.get("choices"), help=f.metadata["help"])
    parser.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/compare-DATASET)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local processes (default) or Ray tasks (pip install 'autoal[ray]'; joins the "
                             "cluster at RAY_ADDRESS if set, else starts a local Ray instance)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local: parallel processes (default 1: in this process); "
                             "ray without RAY_ADDRESS: CPUs of the local Ray instance")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs each run reserves (default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=None,
                        help="ray: GPUs each run reserves, fractions allowed (default: 1 when the cluster "
                             "has GPUs and --device is not cpu, else 0)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (with tracebacks of failed runs)")
    return parser


def shared_settings(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig defaults < --config < this command's flags, without the sweep-owned settings."""
    settings: dict[str, Any] = {}
    if args.config:
        from_file = read_config_file(args.config)
        ignored = sorted(set(from_file) & set(SWEEP_OWNED))
        if ignored:
            print(f"note: {args.config} sets {', '.join(ignored)}; the sweep sets those per run")
        settings.update({k: v for k, v in from_file.items() if k not in SWEEP_OWNED})
    settings.update(validate_settings({k: v for k, v in vars(args).items() if k in CLI_SETTINGS}, where="flags"))
    return settings


def dataset_label(dataset: str) -> str:
    return Path(dataset[4:]).stem if dataset.startswith("npz:") else dataset


def check_plan_sizes(plan: Sequence[RunSpec]) -> None:
    """Load each dataset once (this process caches it) and check the budgets fit, before any run starts."""
    from autoal.loop import check_sizes

    for spec in plan:
        check_sizes(spec.cfg, len(_dataset(spec.cfg).train))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return _main(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished rounds are saved; run the same command again to resume the sweep",
              file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    from autoal.selectors import known_strategies

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    methods = parse_methods(args.methods, known_strategies())
    seeds = parse_seeds(args.seeds)
    settings = shared_settings(args)
    dataset = settings.get("dataset", RunConfig.dataset)
    out = Path(args.out or Path("runs") / f"compare-{dataset_label(dataset)}")
    plan = plan_runs(settings, methods, seeds, out)
    if args.executor == "local":
        check_plan_sizes(plan)  # only local: Ray tasks may read data this machine does not have
    else:
        _import_ray()  # fail before running anything when Ray is missing
    from autoal import runlog

    with runlog.hold_lock(out, what="sweep"):  # one sweep per folder: two would share run folders
        return _sweep(args, out, plan, methods, seeds, dataset)


def _sweep(args: argparse.Namespace, out: Path, plan: list[RunSpec], methods: list[MethodSpec],
           seeds: list[int], dataset: str) -> int:
    status = {s.run_dir: run_status(s, local=args.executor == "local") for s in plan}  # refuses mismatched folders before any work
    todo = [s for s in plan if status[s.run_dir] != "done"]
    (out / RUNS).mkdir(exist_ok=True)
    resumed = sum(status[s.run_dir] == "resume" for s in todo)
    print(f"sweep {out}: {len(plan)} runs, {len(plan) - len(todo)} finished earlier, "
          f"{resumed} to resume, {len(todo) - resumed} to start", flush=True)
    progress = Progress(len(plan))
    for spec in plan:
        if status[spec.run_dir] == "done":
            progress.skipped(spec)
    if todo and args.executor == "local":
        execute_local(todo, progress, workers=args.workers)
    elif todo:
        execute_ray(todo, progress, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                    local_cpus=args.workers if args.workers > 1 else None)

    first = plan[0].cfg
    title = (f"{dataset_label(dataset)}: {first.init_size} initial labels + {first.rounds} rounds of "
             f"{first.budget}, seeds {','.join(map(str, seeds))}")
    for path in write_report(out, plan, [m.name for m in methods], title, plots=not args.no_plots):
        print(f"wrote {path}")
    if progress.failed:
        print(f"{len(progress.failed)} run(s) failed: {', '.join(map(str, progress.failed))}; "
              f"rerun the same command to retry them (use -v for tracebacks)", file=sys.stderr)
        return 1
    return 0


def _number(value: float | None) -> str:
    """A summary number: null (written for NaN) or NaN print as n/a."""
    return "n/a" if value is None or value != value else f"{value:.4f}"


class Progress:
    """Prints one line per finished (or skipped, or failed) run."""

    def __init__(self, total: int):
        self.total = total
        self.count = 0
        self.failed: list[Path] = []

    def _line(self, spec: RunSpec, text: str) -> None:
        self.count += 1
        print(f"[{self.count}/{self.total}] {spec.method} seed {spec.seed}: {text}", flush=True)

    def skipped(self, spec: RunSpec) -> None:
        summary = json.loads((spec.run_dir / "summary.json").read_text())
        self._line(spec, f"AUBC {_number(summary['aubc'])}  final acc {_number(summary['final_acc'])}  "
                         f"(finished earlier)")

    def __call__(self, spec: RunSpec, summary: dict[str, Any] | None, error: str | None) -> None:
        if error is not None or not summary:
            self.failed.append(spec.run_dir)
            self._line(spec, f"FAILED: {error or 'no summary'}")
            return
        self._line(spec, f"AUBC {_number(summary['aubc'])}  final acc {_number(summary['final_acc'])}  "
                         f"({summary['total_seconds']:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
