"""Sweep results as plain data: read run folders, aggregate over seeds, render Markdown and CSV.

Everything here is a pure function of the run folders' files (summary.json, rounds.jsonl) or of
the values read from them, so a table can be rebuilt at any time without re-running anything,
and nothing here needs torch or matplotlib.

Statistics, per method over the seeds whose run finished:
- AUBC and final test accuracy as mean and *sample* standard deviation (n - 1); no std for one seed.
- The best mean per column is marked (every method tied with it, too).
- A paired comparison of a reference method (``autoal``, else the first method of the sweep)
  against each other method over the seeds both finished: the mean AUBC difference
  (reference - other), wins/ties/losses, and a two-sided paired sign-flip permutation test.
  Pairing by seed is what makes the test fair: the same seed gives every method the same initial
  set and model initialisation, so the seed-to-seed spread cancels out of the differences.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# File names of a run folder (the same as autoal.runlog's; not imported so tables need no torch).
SUMMARY = "summary.json"
ROUNDS = "rounds.jsonl"
CONFIG = "config.json"

RUN_DIR_PATTERN = re.compile(r"^(?P<method>.+)-seed(?P<seed>\d+)$")
#: Differences smaller than this count as ties: AUBCs are equal only when the runs were identical.
TIE_TOLERANCE = 1e-9
#: Up to 2**16 sign patterns the permutation test is exact; beyond, it samples this many.
EXACT_LIMIT = 16
MONTE_CARLO_SAMPLES = 20_000


@dataclass(frozen=True)
class RunResult:
    """One run folder: its learning curve, and its summary numbers once it finished."""

    method: str
    seed: int
    labels: tuple[int, ...]
    acc: tuple[float, ...]
    aubc: float | None  # None while the run is unfinished
    final_acc: float | None
    records: tuple[dict[str, Any], ...] = ()
    folder: str = ""  # the run folder it was read from
    pool: tuple[str, ...] = ()  # a search's candidate strategies (``search_pool``)

    @property
    def finished(self) -> bool:
        return self.aubc is not None


@dataclass(frozen=True)
class MethodStats:
    method: str
    n: int  # finished seeds
    aubc_mean: float | None
    aubc_std: float | None  # None with fewer than two seeds
    acc_mean: float | None
    acc_std: float | None
    best_aubc: bool = False
    best_acc: bool = False


@dataclass(frozen=True)
class PairedComparison:
    reference: str
    method: str
    seeds: tuple[int, ...]  # the seeds both finished
    mean_diff: float | None  # mean over seeds of AUBC(reference) - AUBC(method)
    wins: int
    ties: int
    losses: int
    p_value: float | None


def sanitise(spec: str) -> str:
    """A method spec's folder- and table-safe name: autoal@search_mode=unrolled -> autoal-search_mode-unrolled."""
    name = re.sub(r"[@=+:,]", "-", spec.strip())
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def search_pool(config: dict[str, Any]) -> tuple[str, ...]:
    """The strategies a search run chooses among, as table names (from its config.json); () for a single
    candidate. SelectAL's are fixed by the method (TypiClust, its uncertainty strategy, random)."""
    strategy = config.get("strategy")
    if strategy in ("autoal", "albl"):
        return tuple(sanitise(name) for name in str(config.get("candidates", "")).split(",") if name)
    if strategy == "selectal":
        return ("typiclust", sanitise(str(config.get("selectal_uncertainty", "margin"))), "random")
    return ()


def run_dir_name(method: str, seed: int) -> str:
    return f"{method}-seed{seed}"


def load_run(run_dir: str | Path, method: str, seed: int) -> RunResult:
    """Read one run folder; a folder without summary.json gives an unfinished result."""
    run_dir = Path(run_dir)
    records = tuple(read_records(run_dir))
    config_path = run_dir / CONFIG
    pool = search_pool(json.loads(config_path.read_text())) if config_path.is_file() else ()
    summary_path = run_dir / SUMMARY
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        return RunResult(method, seed, tuple(summary["labels"]), tuple(summary["acc"]),
                         float(summary["aubc"]), float(summary["final_acc"]), records, str(run_dir), pool)
    return RunResult(method, seed, tuple(r["labels"] for r in records), tuple(r["acc"] for r in records),
                     None, None, records, str(run_dir), pool)


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / ROUNDS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect_runs(runs_dir: str | Path) -> list[RunResult]:
    """Every ``METHOD-seedS`` folder under ``runs_dir``, sorted by method then seed."""
    runs_dir = Path(runs_dir)
    found = []
    for path in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        match = RUN_DIR_PATTERN.match(path.name)
        if path.is_dir() and match:
            found.append(load_run(path, match["method"], int(match["seed"])))
    return sorted(found, key=lambda r: (r.method, r.seed))


def duplicate_runs(results: Sequence[RunResult]) -> list[tuple[RunResult, RunResult]]:
    """Pairs of finished runs of the same method and seed (two sweeps' folders given together): each
    would count as a seed of its own in every statistic."""
    seen: dict[tuple[str, int], RunResult] = {}
    pairs = []
    for r in results:
        if r.finished:
            if (r.method, r.seed) in seen:
                pairs.append((seen[(r.method, r.seed)], r))
            seen.setdefault((r.method, r.seed), r)
    return pairs


def reference_method(methods: Sequence[str]) -> str:
    """The method every other one is compared with: ``autoal`` when in the sweep, else the first."""
    if not methods:
        raise ValueError("no methods to compare")
    return "autoal" if "autoal" in methods else methods[0]


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); std is None for fewer than two values."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def method_stats(results: Sequence[RunResult], methods: Sequence[str]) -> list[MethodStats]:
    """Per method (in the order given), AUBC and final accuracy over its finished seeds; best marked."""
    rows = []
    for method in methods:
        done = [r for r in results if r.method == method and r.finished]
        aubc_mean, aubc_std = mean_std([r.aubc for r in done])
        acc_mean, acc_std = mean_std([r.final_acc for r in done])
        rows.append(MethodStats(method, len(done), aubc_mean, aubc_std, acc_mean, acc_std))
    best_aubc = _best([r.aubc_mean for r in rows])
    best_acc = _best([r.acc_mean for r in rows])
    return [MethodStats(r.method, r.n, r.aubc_mean, r.aubc_std, r.acc_mean, r.acc_std,
                        best_aubc=i in best_aubc, best_acc=i in best_acc) for i, r in enumerate(rows)]


def _best(values: Sequence[float | None]) -> set[int]:
    present = [v for v in values if v is not None]
    if not present:
        return set()
    top = max(present)
    return {i for i, v in enumerate(values) if v is not None and math.isclose(v, top, rel_tol=0, abs_tol=TIE_TOLERANCE)}


def sign_flip_p_value(diffs: Sequence[float], *, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation test of mean(diffs) = 0.

    Under the null each paired difference is as likely to have either sign, so the p-value is the
    share of sign patterns whose |mean| is at least the observed one. Exact (all 2**n patterns)
    for n <= 16, else a seeded Monte Carlo estimate. With n seeds the smallest possible p is
    2 / 2**n: three seeds can never go below 0.25, which is a fact about 3 seeds, not a bug.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    observed = abs(d.mean())
    if d.size <= EXACT_LIMIT:
        # every sign pattern as a row of +-1: bit j of pattern k decides the sign of d[j]
        patterns = (np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1
        signs = 1.0 - 2.0 * patterns
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice([-1.0, 1.0], size=(MONTE_CARLO_SAMPLES, d.size))
    means = np.abs(signs @ d) / d.size
    # the tolerance keeps the observed pattern itself counted despite float rounding
    return float(np.mean(means >= observed - 1e-12))


def paired_comparisons(results: Sequence[RunResult], methods: Sequence[str],
                       reference: str | None = None) -> list[PairedComparison]:
    """The reference method against each other method, paired by seed, on AUBC."""
    reference = reference or reference_method(methods)
    ref = {r.seed: r.aubc for r in results if r.method == reference and r.finished}
    rows = []
    for method in methods:
        if method == reference:
            continue
        other = {r.seed: r.aubc for r in results if r.method == method and r.finished}
        seeds = tuple(sorted(set(ref) & set(other)))
        diffs = [ref[s] - other[s] for s in seeds]
        wins = sum(d > TIE_TOLERANCE for d in diffs)
        losses = sum(d < -TIE_TOLERANCE for d in diffs)
        rows.append(PairedComparison(
            reference, method, seeds,
            mean_diff=float(np.mean(diffs)) if diffs else None,
            wins=wins, ties=len(diffs) - wins - losses, losses=losses,
            p_value=sign_flip_p_value(diffs) if diffs else None))
    return rows


#: Methods that choose among candidate strategies; a table's other methods are single candidates. A
#: variant's folder name starts with its selector's: autoal-search_mode-heldout, autoal_all15.
SEARCHES = ("autoal", "albl", "selectal")


#: Upper bounds that see the truth (experiments/oracle_greedy.py): in the tables, but neither a single
#: candidate nor a search, so never "the best single".
ORACLES = ("oracle",)


def _selector_name(method: str) -> str:
    """A method's folder name up to its first - or _: the selector or candidate it runs."""
    return re.split(r"[-_]", method, maxsplit=1)[0]


def is_oracle(method: str) -> bool:
    return _selector_name(method) in ORACLES


def search_of(method: str) -> str | None:
    """The selector a method's name belongs to (``autoal-search_mode-unrolled`` -> autoal), else None."""
    head = _selector_name(method)
    return head if head in SEARCHES else None


@dataclass(frozen=True)
class SearchTarget:
    """A strategy search against the single candidates of the same table (issue 7's target)."""

    method: str
    seeds: int
    aubc: float
    best_single: str
    best_mean: float
    best_se: float  # std / sqrt(n); 0 with one seed
    rank: int  # 1 + the number of single candidates with a higher mean AUBC
    n_singles: int
    above: dict[str, bool]  # the plain autoal / albl / selectal rows (not itself): is its mean above theirs
    pool_mean: float | None = None  # the mean AUBC of its own candidates, when the table has them all:
    # what choosing one of them at random would earn, the baseline a search must beat to have learned

    @property
    def gap(self) -> float:
        """AUBC minus (the best single's mean - 1 SE): >= 0 meets the target."""
        return self.aubc - (self.best_mean - self.best_se)


def search_targets(stats: Sequence[MethodStats], results: Sequence[RunResult] = ()) -> list[SearchTarget]:
    """Each finished search method against the best single candidate: is its mean AUBC at least the
    best single's mean minus one standard error, where does it rank among the singles, is it above the
    other searches (ALBL, SelectAL) of the table, and the mean of its own candidates (its runs' pool,
    from ``results``). Empty without a finished single candidate."""
    done = [s for s in stats if s.aubc_mean is not None]
    singles = [s for s in done if search_of(s.method) is None and not is_oracle(s.method)]
    if not singles:
        return []
    best = max(singles, key=lambda s: s.aubc_mean)
    se = (best.aubc_std or 0.0) / math.sqrt(best.n)
    rivals = {s.method: s.aubc_mean for s in done if s.method in SEARCHES}
    means = {s.method: s.aubc_mean for s in singles}
    pools = {r.method: r.pool for r in results if r.finished and r.pool}

    def pool_mean(method: str) -> float | None:
        pool = pools.get(method, ())
        return float(np.mean([means[m] for m in pool])) if pool and all(m in means for m in pool) else None

    return [SearchTarget(s.method, s.n, s.aubc_mean, best.method, best.aubc_mean, se,
                         rank=1 + sum(x.aubc_mean > s.aubc_mean for x in singles), n_singles=len(singles),
                         above={m: s.aubc_mean > v for m, v in rivals.items() if m != s.method},
                         pool_mean=pool_mean(s.method))
            for s in done if search_of(s.method) is not None]


def render_search_targets(targets: Sequence[SearchTarget]) -> str:
    """The targets as a Markdown table ('' without targets)."""
    if not targets:
        return ""
    rivals = sorted({m for t in targets for m in t.above})
    lines = ["| search | seeds | AUBC | best single | its mean − 1 SE | gap | rank among singles | its candidates' mean"
             + "".join(f" | above {m}" for m in rivals) + " |",
             "|---|---:|---:|---|---:|---:|---:|---:" + "|:---:" * len(rivals) + "|"]
    for t in targets:
        marks = "".join(f" | {'-' if m not in t.above else ('yes' if t.above[m] else 'no')}" for m in rivals)
        lines.append(f"| {t.method} | {t.seeds} | {_num(t.aubc)} | {t.best_single} | {_num(t.best_mean - t.best_se)} "
                     f"| {_signed(t.gap)} | {t.rank} of {t.n_singles} | {_num(t.pool_mean)}{marks} |")
    return "\n".join(lines) + "\n"


# --- rendering -------------------------------------------------------------------------------

def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _cell(mean: float | None, std: float | None, best: bool) -> str:
    text = "-" if mean is None else f"{_num(mean)} ± {_num(std)}"
    return f"**{text}**" if best else text


def render_markdown(stats: Sequence[MethodStats], paired: Sequence[PairedComparison],
                    title: str = "Comparison") -> str:
    """The AUBC / final-accuracy table and the paired comparison, as Markdown."""
    lines = [f"# {title}", "",
             "AUBC (area under the accuracy vs labels curve, in [0, 1]) and final test accuracy: "
             "mean ± sample std over seeds ('-' with one seed); best per column in bold.", "",
             "| method | seeds | AUBC | final ACC |", "|---|---:|---:|---:|"]
    for s in stats:
        lines.append(f"| {s.method} | {s.n} | {_cell(s.aubc_mean, s.aubc_std, s.best_aubc)} "
                     f"| {_cell(s.acc_mean, s.acc_std, s.best_acc)} |")
    if paired:
        ref = paired[0].reference
        lines += ["", f"## {ref} against each method, paired by seed (AUBC)", "",
                  f"ΔAUBC = mean over seeds of AUBC({ref}) − AUBC(method); W/T/L = seeds where {ref} "
                  f"wins/ties/loses; p = two-sided paired sign-flip permutation test "
                  f"(exact up to {EXACT_LIMIT} seeds; with n seeds p cannot go below 2/2^n).", "",
                  "| method | paired seeds | ΔAUBC | W/T/L | p |", "|---|---:|---:|:---:|---:|"]
        for p in paired:
            lines.append(f"| {p.method} | {len(p.seeds)} | {_signed(p.mean_diff)} "
                         f"| {p.wins}/{p.ties}/{p.losses} | {_num(p.p_value, 3)} |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("method", "seeds", "aubc_mean", "aubc_std", "final_acc_mean", "final_acc_std",
               "best_aubc", "best_final_acc", "reference", "paired_seeds", "aubc_diff_vs_reference",
               "wins", "ties", "losses", "p_value")


def render_csv(stats: Sequence[MethodStats], paired: Sequence[PairedComparison]) -> str:
    """One row per method; missing numbers (std of one seed, the reference's own diff) are empty cells."""
    by_method = {p.method: p for p in paired}
    reference = paired[0].reference if paired else (stats[0].method if stats else "")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def num(v: float | None) -> str:
        return "" if v is None else repr(round(v, 6))

    for s in stats:
        p = by_method.get(s.method)
        writer.writerow([s.method, s.n, num(s.aubc_mean), num(s.aubc_std), num(s.acc_mean), num(s.acc_std),
                         int(s.best_aubc), int(s.best_acc), reference,
                         len(p.seeds) if p else "", num(p.mean_diff) if p else "",
                         p.wins if p else "", p.ties if p else "", p.losses if p else "",
                         num(p.p_value) if p else ""])
    return buffer.getvalue()


# --- series for plots ------------------------------------------------------------------------

@dataclass(frozen=True)
class Curve:
    labels: np.ndarray  # (R,) labels at each round
    mean: np.ndarray  # (R,) mean test accuracy over seeds
    std: np.ndarray  # (R,) sample std over seeds (0 with one seed)
    n: int  # seeds


def mean_curves(results: Sequence[RunResult], methods: Sequence[str]) -> dict[str, Curve]:
    """Mean accuracy vs labels per method over its finished seeds (rounds all seeds share)."""
    curves = {}
    for method in methods:
        done = [r for r in results if r.method == method and r.finished and r.acc]
        if not done:
            continue
        rounds = min(len(r.acc) for r in done)
        acc = np.array([r.acc[:rounds] for r in done], dtype=np.float64)  # (seeds, R)
        std = acc.std(axis=0, ddof=1) if len(done) > 1 else np.zeros(rounds)
        curves[method] = Curve(np.asarray(done[0].labels[:rounds]), acc.mean(axis=0), std, len(done))
    return curves


@dataclass(frozen=True)
class PairedCurve:
    labels: np.ndarray  # (R,) labels at each round
    mean_diff: np.ndarray  # (R,) mean over shared seeds of acc(reference) - acc(method)
    leads: np.ndarray  # (R,) seeds on which the reference is ahead
    n: int  # shared seeds


def paired_curves(results: Sequence[RunResult], methods: Sequence[str],
                  reference: str | None = None) -> dict[str, PairedCurve]:
    """The reference method's test accuracy minus each other method's, round by round, paired by seed
    (targets such as "BALD above random at every round from 100 labels on" are per-round statements).
    A method whose runs stopped at other label counts than the reference's is left out."""
    reference = reference or reference_method(methods)
    ref = {r.seed: r for r in results if r.method == reference and r.finished}
    out = {}
    for method in methods:
        other = {r.seed: r for r in results if r.method == method and r.finished}
        seeds = sorted(set(ref) & set(other))
        if method == reference or not seeds:
            continue
        rounds = min(min(len(ref[s].acc), len(other[s].acc)) for s in seeds)
        if any(ref[s].labels[:rounds] != other[s].labels[:rounds] for s in seeds):
            continue
        diffs = np.array([np.subtract(ref[s].acc[:rounds], other[s].acc[:rounds]) for s in seeds])  # (seeds, R)
        out[method] = PairedCurve(np.asarray(ref[seeds[0]].labels[:rounds]), diffs.mean(axis=0),
                                  (diffs > TIE_TOLERANCE).sum(axis=0), len(seeds))
    return out


def render_paired_curves(paired: dict[str, PairedCurve], reference: str) -> str:
    """Markdown: per method and round, the mean paired accuracy difference and on how many seeds the
    reference leads."""
    if not paired:
        return ""
    labels = next(iter(paired.values())).labels
    lines = [f"| {reference} minus | seeds | " + " | ".join(str(int(n)) for n in labels) + " |",
             "|---|---:|" + "---:|" * len(labels)]
    for method, curve in paired.items():
        cells = (f"{d:+.3f} ({k})" for d, k in zip(curve.mean_diff, curve.leads))
        lines.append(f"| {method} | {curve.n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def selector_series(results: Sequence[RunResult], method: str, key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For records' ``selector[key]`` dicts (name -> value): name -> (rounds, mean value over seeds)."""
    values: dict[str, dict[int, list[float]]] = {}
    for run in results:
        if run.method != method:
            continue
        for record in run.records:
            entry = record.get("selector", {}).get(key)
            if not isinstance(entry, dict):
                continue
            for name, value in entry.items():
                values.setdefault(name, {}).setdefault(int(record["round"]), []).append(float(value))
    series = {}
    for name, per_round in values.items():
        rounds = np.array(sorted(per_round))
        series[name] = (rounds, np.array([np.mean(per_round[r]) for r in rounds]))
    return series


def methods_with_key(results: Sequence[RunResult], methods: Sequence[str], key: str) -> list[str]:
    """The methods (in ``methods`` order) whose records carry a ``selector[key]`` dict."""
    return [m for m in methods if any(isinstance(rec.get("selector", {}).get(key), dict)
                                      for r in results if r.method == m for rec in r.records)]


def render_curve_table(curves: dict[str, Curve], every: int = 1) -> str:
    """Mean test accuracy by labels, one row per method (every ``every``-th round), as Markdown."""
    if not curves:
        return ""
    labels = next(iter(curves.values())).labels[::every]
    lines = ["| method | seeds | " + " | ".join(str(int(n)) for n in labels) + " |",
             "|---|---:|" + "---:|" * len(labels)]
    for method, curve in curves.items():
        values = curve.mean[::every]
        lines.append(f"| {method} | {curve.n} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Tables (and plots, with matplotlib) of every METHOD-seedS folder under one or more folders:
    ``python -m experiments.results RUNS_DIR [RUNS_DIR ...] --out DIR``. Nothing is re-run."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m experiments.results", description=main.__doc__)
    parser.add_argument("runs", nargs="+", help="folders holding METHOD-seedS run folders")
    parser.add_argument("--out", required=True, help="where results.md, results.csv and the plots go")
    parser.add_argument("--methods", default="", help="comma-separated methods and their order (default: all)")
    parser.add_argument("--title", default="Comparison")
    parser.add_argument("--rename", action="append", default=[], metavar="METHOD=NAME",
                        help="show METHOD (its folder name) as NAME, e.g. a long candidate list as autoal-all15")
    args = parser.parse_args(argv)
    names = dict(pair.partition("=")[::2] for pair in args.rename)
    if any(not old or not new for old, new in names.items()):
        parser.error(f"--rename takes METHOD=NAME, got {args.rename}")
    results = [r for folder in args.runs for r in collect_runs(folder)]
    methods = [m for m in args.methods.split(",") if m] or sorted({r.method for r in results})
    results = [replace(r, method=names.get(r.method, r.method)) for r in results if r.method in methods]
    methods = [names.get(m, m) for m in methods]
    for first, second in duplicate_runs(results)[:1]:
        parser.error(f"{first.method} seed {first.seed} finished in both {first.folder} and {second.folder}; "
                     f"pass only one of them (a seed must count once)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stats, paired = method_stats(results, methods), paired_comparisons(results, methods)
    text = render_markdown(stats, paired, args.title)
    targets = render_search_targets(search_targets(stats, results))
    if targets:
        text += ("\n## Each search against the best single candidate\n\n"
                 "The target: AUBC at least the best single candidate's mean minus one standard error "
                 "(std / √seeds), and above ALBL's and SelectAL's. gap = AUBC − (best mean − 1 SE), "
                 "≥ 0 meets it; means over each method's own seeds (a search with fewer seeds than the best single "
                 "is not yet compared on equal terms: read the paired table above). Its candidates' mean: the mean AUBC of "
                 "the strategies the search chooses among (when the table has them all), what picking "
                 "one of them at random would earn.\n\n" + targets)
    text += "\n## Mean test accuracy by labels\n\n" + render_curve_table(mean_curves(results, methods))
    reference = reference_method(methods)
    by_round = render_paired_curves(paired_curves(results, methods, reference), reference)
    if by_round:
        text += (f"\n## {reference} against each method by labels, paired by seed\n\n"
                 f"Mean over shared seeds of acc({reference}) − acc(method); in brackets, the seeds on which "
                 f"{reference} is ahead.\n\n" + by_round)
    (out / "results.md").write_text(text)
    (out / "results.csv").write_text(render_csv(stats, paired))
    from experiments import plots

    if plots.have_matplotlib():
        plots.plot_curves(results, methods, out / "curves.png", args.title)
        plots.plot_weights(results, methods, out / "weights.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
