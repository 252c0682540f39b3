"""The comparison runner: aggregation (known values), method specs, resume/skip, configs, executors."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from autoal.config import RunConfig, check, read_config_file
from autoal.errors import UserError
from autoal.loop import run
from autoal.selectors import known_strategies
from experiments import compare
from experiments import results as res
from conftest import hold_lock_in_another_process, write_medmnist_npz

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments" / "configs"
TINY = dict(init_size=8, budget=4, rounds=2, epochs=2, min_steps=10, batch_size=16, mc_samples=4,
            backbone="cnn", device="cpu")


# --- fake run folders with known numbers -------------------------------------------------------

def write_fake_run(runs_dir: Path, method: str, seed: int, acc: list[float], labels=(10, 20, 30),
                   finished: bool = True, selector: dict | None = None) -> Path:
    run_dir = runs_dir / res.run_dir_name(method, seed)
    run_dir.mkdir(parents=True)
    records = [{"round": i, "labels": n, "acc": a, "auc": 0.5, "seconds": {}, "queried": [],
                **({"selector": selector} if selector else {})} for i, (n, a) in enumerate(zip(labels, acc))]
    (run_dir / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if finished:
        summary = {"labels": list(labels), "acc": acc, "aubc": res_aubc(list(labels), acc), "final_acc": acc[-1]}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def res_aubc(labels: list[int], acc: list[float]) -> float:
    from autoal.runlog import aubc

    return aubc(labels, acc)


@pytest.fixture
def fake_sweep(tmp_path: Path) -> list[res.RunResult]:
    """autoal and entropy, seeds 0 and 1; curves chosen so AUBCs are easy to compute by hand.

    AUBC of (10, 20, 30) labels = ((a0 + a1) / 2 + (a1 + a2) / 2) / 2 = (a0 + 2 a1 + a2) / 4.
    autoal:  seed 0 (0.5, 0.7, 0.9) -> 0.7,  seed 1 (0.5, 0.8, 0.9) -> 0.75
    entropy: seed 0 (0.5, 0.6, 0.7) -> 0.6,  seed 1 (0.4, 0.8, 0.8) -> 0.7
    """
    runs = tmp_path / "runs"
    write_fake_run(runs, "autoal", 0, [0.5, 0.7, 0.9])
    write_fake_run(runs, "autoal", 1, [0.5, 0.8, 0.9])
    write_fake_run(runs, "entropy", 0, [0.5, 0.6, 0.7])
    write_fake_run(runs, "entropy", 1, [0.4, 0.8, 0.8])
    write_fake_run(runs, "entropy", 2, [0.4, 0.8], finished=False)  # killed: not in the statistics
    return res.collect_runs(runs)


def test_collect_runs_reads_finished_and_partial(fake_sweep):
    assert [(r.method, r.seed, r.finished) for r in fake_sweep] == [
        ("autoal", 0, True), ("autoal", 1, True), ("entropy", 0, True), ("entropy", 1, True), ("entropy", 2, False)]
    assert fake_sweep[0].aubc == pytest.approx(0.7)
    assert fake_sweep[-1].acc == (0.4, 0.8)


def test_method_stats_known_values(fake_sweep):
    autoal, entropy = res.method_stats(fake_sweep, ["autoal", "entropy"])
    assert autoal.n == 2 and entropy.n == 2
    assert autoal.aubc_mean == pytest.approx(0.725)
    assert autoal.aubc_std == pytest.approx(math.sqrt(2 * 0.025 ** 2))  # sample std, n - 1 = 1
    assert entropy.aubc_mean == pytest.approx(0.65)
    assert entropy.acc_mean == pytest.approx(0.75) and entropy.acc_std == pytest.approx(math.sqrt(2 * 0.05 ** 2))
    assert autoal.best_aubc and autoal.best_acc and not entropy.best_aubc and not entropy.best_acc


def test_paired_comparison_known_values(fake_sweep):
    (row,) = res.paired_comparisons(fake_sweep, ["autoal", "entropy"])
    assert row.reference == "autoal" and row.method == "entropy" and row.seeds == (0, 1)
    assert row.mean_diff == pytest.approx(((0.7 - 0.6) + (0.75 - 0.7)) / 2)
    assert (row.wins, row.ties, row.losses) == (2, 0, 0)
    assert row.p_value == pytest.approx(0.5)  # 2 of the 4 sign patterns are as extreme


def test_paired_curves_known_values(fake_sweep, tmp_path):
    (method, curve), = res.paired_curves(fake_sweep, ["autoal", "entropy"]).items()
    assert method == "entropy" and curve.n == 2 and curve.labels.tolist() == [10, 20, 30]
    # seed 0: (0, +0.1, +0.2); seed 1: (+0.1, 0, +0.1); the unfinished seed 2 is not paired
    assert curve.mean_diff.tolist() == pytest.approx([0.05, 0.05, 0.15])
    assert curve.leads.tolist() == [1, 1, 2]
    assert "| entropy | 2 | +0.050 (1) | +0.050 (1) | +0.150 (2) |" in res.render_paired_curves(
        res.paired_curves(fake_sweep, ["autoal", "entropy"]), "autoal")
    write_fake_run(tmp_path / "other", "random", 0, [0.5, 0.6, 0.7], labels=(10, 30, 50))
    other = res.collect_runs(tmp_path / "other")
    assert res.paired_curves([*fake_sweep, *other], ["autoal", "random"]) == {}  # other label counts: not paired


def test_a_seed_finished_in_two_folders_is_refused(tmp_path, capsys):
    write_fake_run(tmp_path / "a", "margin", 0, [0.5, 0.6, 0.7])
    write_fake_run(tmp_path / "b", "margin", 0, [0.5, 0.6, 0.8])
    write_fake_run(tmp_path / "b", "margin", 1, [0.5, 0.6, 0.8])
    write_fake_run(tmp_path / "c", "margin", 1, [0.5, 0.6], finished=False)  # a killed copy counts nowhere anyway
    with pytest.raises(SystemExit) as stop:
        res.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "margin seed 0 finished in both" in capsys.readouterr().err
    assert res.main([str(tmp_path / "b"), str(tmp_path / "c"), "--out", str(tmp_path / "out")]) == 0


def test_search_targets_against_the_best_single_candidate(tmp_path):
    # AUBC = (a0 + 2 a1 + a2) / 4: margin 0.70 and 0.72 (mean 0.71, std 0.01414, SE 0.01), random 0.6
    runs = tmp_path / "runs"
    write_fake_run(runs, "margin", 0, [0.5, 0.7, 0.9])
    write_fake_run(runs, "margin", 1, [0.5, 0.74, 0.9])
    write_fake_run(runs, "random", 0, [0.5, 0.6, 0.7])
    write_fake_run(runs, "kmeans", 0, [0.5, 0.6, 0.5])  # 0.55: a single outside AutoAL's pool
    write_fake_run(runs, "autoal", 0, [0.5, 0.7, 0.7])  # 0.65: below margin - SE, above random
    write_fake_run(runs, "autoal-search_mode-heldout", 0, [0.5, 0.7, 0.84])  # 0.685: misses by 0.015
    write_fake_run(runs, "albl", 0, [0.5, 0.66, 0.7])  # 0.63
    write_fake_run(runs, "oracle_greedy", 0, [0.5, 0.9, 0.9])  # 0.80: an upper bound, not a single candidate
    for method, pool in (("autoal", "margin,random"), ("albl", "margin,random,entropy")):
        (runs / res.run_dir_name(method, 0) / "config.json").write_text(
            json.dumps({"strategy": method, "candidates": pool}))
    methods = ["autoal", "autoal-search_mode-heldout", "albl", "margin", "random", "kmeans", "oracle_greedy"]
    results = res.collect_runs(runs)
    targets = {t.method: t for t in res.search_targets(res.method_stats(results, methods), results)}
    assert set(targets) == {"autoal", "autoal-search_mode-heldout", "albl"}
    autoal = targets["autoal"]
    assert autoal.best_single == "margin" and autoal.best_mean == pytest.approx(0.71)
    assert autoal.best_se == pytest.approx(0.01) and autoal.gap == pytest.approx(0.65 - 0.70)
    assert (autoal.rank, autoal.n_singles) == (2, 3) and autoal.above == {"albl": True}
    assert autoal.pool_mean == pytest.approx((0.71 + 0.6) / 2)  # its two candidates, margin and random
    assert targets["albl"].pool_mean is None  # entropy, one of its candidates, is not in the table
    assert targets["autoal-search_mode-heldout"].gap == pytest.approx(-0.015)
    assert targets["albl"].above == {"autoal": False} and targets["albl"].rank == 2
    write_fake_run(runs, "autoal_all15", 0, [0.6, 0.75, 0.9])  # 0.75: first among the singles, target met
    (met,) = [t for t in res.search_targets(res.method_stats(res.collect_runs(runs), ["autoal_all15", "margin"]))]
    assert met.gap == pytest.approx(0.05) and met.rank == 1
    table = res.render_search_targets(list(targets.values()))
    assert "| autoal | 1 | 0.6500 | margin | 0.7000 | -0.0500 | 2 of 3 | 0.6550 | yes |" in table
    assert res.search_targets(res.method_stats(res.collect_runs(runs), ["autoal", "albl"])) == []  # no single


def test_reference_is_autoal_else_first_method():
    assert res.reference_method(["entropy", "autoal", "random"]) == "autoal"
    assert res.reference_method(["margin", "random"]) == "margin"


def test_single_seed_has_no_std_and_renders_dash(tmp_path):
    write_fake_run(tmp_path / "runs", "random", 0, [0.5, 0.6, 0.7])
    results = res.collect_runs(tmp_path / "runs")
    (stats,) = res.method_stats(results, ["random"])
    assert stats.n == 1 and stats.aubc_std is None
    assert "0.6000 ± -" in res.render_markdown([stats], [])


@pytest.mark.parametrize("diffs, expected", [
    ([1.0, 2.0, 3.0], 2 / 8),  # only all-plus and all-minus reach |sum| = 6
    ([1.0, -1.0], 1.0),  # observed mean 0: every pattern is as extreme
    ([0.0, 0.0, 0.0], 1.0),
    ([0.1], 1.0),  # one pair can never be significant
    ([3.0, 1.0, 1.0, 1.0], 2 / 16),  # flipping any sign drops |sum| below 6
    ([1.0, 1.0, 0.0], 4 / 8),  # a zero difference's sign changes nothing: 2 x (++ and --)
])
def test_sign_flip_p_value_exact(diffs, expected):
    assert res.sign_flip_p_value(diffs) == pytest.approx(expected)


def test_sign_flip_p_value_monte_carlo_for_many_seeds():
    assert res.sign_flip_p_value([1.0] * 20) < 0.001  # exact value 2 / 2**20
    assert res.sign_flip_p_value([1.0, -1.0] * 10) == 1.0


def test_markdown_and_csv_tables(fake_sweep):
    stats = res.method_stats(fake_sweep, ["autoal", "entropy"])
    paired = res.paired_comparisons(fake_sweep, ["autoal", "entropy"])
    markdown = res.render_markdown(stats, paired, "tiny")
    assert "| autoal | 2 | **0.7250 ± 0.0354** | **0.9000 ± 0.0000** |" in markdown
    assert "| entropy | 2 | 0.6500 ± 0.0707 | 0.7500 ± 0.0707 |" in markdown
    assert "| entropy | 2 | +0.0750 | 2/0/0 | 0.500 |" in markdown
    rows = list(csv.DictReader(io.StringIO(res.render_csv(stats, paired))))
    assert [r["method"] for r in rows] == ["autoal", "entropy"]
    assert rows[0]["best_aubc"] == "1" and rows[1]["best_aubc"] == "0"
    assert float(rows[1]["aubc_diff_vs_reference"]) == pytest.approx(0.075)
    assert rows[0]["aubc_diff_vs_reference"] == "" and rows[1]["wins"] == "2"


def test_tied_best_is_marked_for_both(tmp_path):
    for method in ("a", "b"):
        write_fake_run(tmp_path / "runs", method, 0, [0.5, 0.6, 0.7])
    stats = res.method_stats(res.collect_runs(tmp_path / "runs"), ["a", "b"])
    assert all(s.best_aubc for s in stats)


def test_mean_curves_and_selector_series(tmp_path):
    runs = tmp_path / "runs"
    write_fake_run(runs, "autoal", 0, [0.5, 0.7, 0.9], selector={"weights": {"entropy": 0.2, "kmeans": 0.8}})
    write_fake_run(runs, "autoal", 1, [0.5, 0.8, 0.9], selector={"weights": {"entropy": 0.4, "kmeans": 0.6}})
    results = res.collect_runs(runs)
    curve = res.mean_curves(results, ["autoal"])["autoal"]
    assert curve.labels.tolist() == [10, 20, 30] and curve.mean.tolist() == pytest.approx([0.5, 0.75, 0.9])
    rounds, values = res.selector_series(results, "autoal", "weights")["entropy"]
    assert rounds.tolist() == [0, 1, 2] and values.tolist() == pytest.approx([0.3, 0.3, 0.3])
    assert res.methods_with_key(results, ["autoal"], "weights") == ["autoal"]
    assert res.methods_with_key(results, ["autoal"], "expert_probs") == []


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from experiments import plots

    runs = tmp_path / "runs"
    write_fake_run(runs, "autoal", 0, [0.5, 0.7, 0.9], selector={"weights": {"entropy": 0.2, "kmeans": 0.8}})
    write_fake_run(runs, "albl", 0, [0.5, 0.6, 0.8], selector={"expert_probs": {"entropy": 0.5, "random": 0.5}})
    results = res.collect_runs(runs)
    assert plots.plot_curves(results, ["autoal", "albl"], tmp_path / "curves.png")
    assert plots.plot_weights(results, ["autoal", "albl"], tmp_path / "weights.png")
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "weights.png").stat().st_size > 0
    assert not plots.plot_weights(results, ["autoal-x"], tmp_path / "none.png")  # no such method: no file


def test_every_autoal_variant_gets_its_weight_panels(tmp_path):
    from experiments import plots

    runs = tmp_path / "runs"
    weights = {"weights": {"entropy": 0.2}, "contribution": {"entropy": 1.0}}
    write_fake_run(runs, "autoal", 0, [0.5, 0.7, 0.8], selector=weights)
    write_fake_run(runs, "autoal-search_mode-heldout", 0, [0.5, 0.6, 0.8], selector=weights)
    write_fake_run(runs, "albl", 0, [0.5, 0.6, 0.8], selector={"expert_probs": {"entropy": 1.0}})
    write_fake_run(runs, "margin", 0, [0.5, 0.6, 0.8])
    rows = plots.weight_panels(res.collect_runs(runs), ["margin", "autoal", "autoal-search_mode-heldout", "albl"])
    assert [[(m, what) for m, what, _ in row] for row in rows] == [
        [("autoal", "strategy weights"), ("autoal", "share of the picks")],
        [("autoal-search_mode-heldout", "strategy weights"), ("autoal-search_mode-heldout", "share of the picks")],
        [("albl", "expert probabilities")]]


# --- method specs and seeds --------------------------------------------------------------------

def test_method_spec_overrides_are_typed_and_sanitised():
    spec = compare.parse_method("entropy@epochs=3+lr=0.01+warm_start=true+backbone=cnn", known_strategies())
    assert spec.strategy == "entropy"
    assert spec.overrides == {"epochs": 3, "lr": 0.01, "warm_start": True, "backbone": "cnn"}
    assert spec.name == "entropy-epochs-3-lr-0.01-warm_start-true-backbone-cnn"


def test_method_spec_sets_a_candidate_pool_with_semicolons():
    specs = compare.parse_methods("autoal@candidates=entropy;diversity:T=0.1;margin+epochs=2,random", known_strategies())
    assert [s.strategy for s in specs] == ["autoal", "random"]
    assert specs[0].overrides == {"candidates": "entropy,diversity:T=0.1,margin", "epochs": 2}
    assert specs[0].name == "autoal-candidates-entropy_diversity-T-0.1_margin-epochs-2"


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown method 'nope'"),
    ("autoal@candidates=entropy;nope", "unknown candidate"),
    ("autoal@candidates=entropy;entropy", "names a strategy twice"),
    ("entropy@bogus=1", "unknown setting 'bogus'"),
    ("entropy@epochs=many", "epochs must be int"),
    ("entropy@backbone=vgg", "backbone must be one of"),
    ("entropy@seed=3", "set by the sweep"),
    ("entropy@epochs", "not key=value"),
    ("entropy@", "nothing after '@'"),
])
def test_bad_method_spec_is_a_user_error(spec, message):
    with pytest.raises(UserError, match=message):
        compare.parse_method(spec, known_strategies())


def test_duplicate_methods_and_seeds_rejected():
    with pytest.raises(UserError, match="more than once"):
        compare.parse_methods("entropy,random,entropy", known_strategies())
    assert compare.parse_seeds("0,2-4") == [0, 2, 3, 4]
    with pytest.raises(UserError):
        compare.parse_seeds("0,0")
    with pytest.raises(UserError):
        compare.parse_seeds("a")


def test_bad_method_name_exits_2_with_one_line(capsys):
    assert compare.main(["--methods", "entropy,nonsense", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown method 'nonsense'") and err.count("\n") == 1
    assert "entropy" in err  # the known strategies are listed


def test_config_differences_ignore_location_and_new_defaults():
    requested = {"rounds": 3, "device": "cuda", "out": "/b", "data_root": "/d2", "lr": 1e-3}
    saved = {"rounds": 3, "device": "cpu", "out": "/a", "data_root": "/d1"}  # older file without lr
    assert compare.config_differences(saved, requested) == []
    assert compare.config_differences({**saved, "rounds": 2}, requested) == ["rounds: 2 -> 3"]


# --- the runner on real tiny runs --------------------------------------------------------------

@pytest.fixture
def tiny_sweep(tmp_path: Path) -> dict:
    """Files of a tiny sweep: an npz dataset in MedMNIST layout and a config file for it."""
    npz = write_medmnist_npz(tmp_path / "tiny.npz")
    config = tmp_path / "tiny.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in TINY.items()))
    return {"npz": npz, "config": config, "out": tmp_path / "sweep"}


def sweep_args(files: dict, methods: str = "entropy,random", seeds: str = "0,1") -> list[str]:
    return ["--dataset", f"npz:{files['npz']}", "--config", str(files["config"]), "--methods", methods,
            "--seeds", seeds, "--out", str(files["out"]), "--no-plots"]


def planned(files: dict, methods: list[str], seeds: list[int]) -> list[compare.RunSpec]:
    """The RunSpecs the command plans for ``sweep_args(files, ...)``."""
    settings = {**read_config_file(files["config"]), "dataset": f"npz:{files['npz']}"}
    specs = [compare.parse_method(m, known_strategies()) for m in methods]
    return compare.plan_runs(settings, specs, seeds, files["out"])


def test_tiny_sweep_end_to_end(tiny_sweep, capsys):
    assert compare.main(sweep_args(tiny_sweep)) == 0
    out = tiny_sweep["out"]
    for method in ("entropy", "random"):
        for seed in (0, 1):
            run_dir = out / "runs" / f"{method}-seed{seed}"
            config = json.loads((run_dir / "config.json").read_text())
            assert config["strategy"] == method and config["seed"] == seed and config["rounds"] == 2
    # the table holds exactly the numbers of the run folders
    summaries = {(m, s): json.loads((out / "runs" / f"{m}-seed{s}" / "summary.json").read_text())
                 for m in ("entropy", "random") for s in (0, 1)}
    rows = {r["method"]: r for r in csv.DictReader((out / "results.csv").open())}
    for method in ("entropy", "random"):
        expected = (summaries[(method, 0)]["aubc"] + summaries[(method, 1)]["aubc"]) / 2
        assert float(rows[method]["aubc_mean"]) == pytest.approx(expected, abs=1e-6)
    assert "| entropy | 2 |" in (out / "results.md").read_text()
    printed = capsys.readouterr().out
    assert printed.count("] entropy seed") == 2 and "[4/4]" in printed


def test_killed_sweep_resumes_without_redoing_finished_runs(tiny_sweep):
    finished, partial = planned(tiny_sweep, ["entropy", "random"], [0])
    run(finished.cfg, finished.run_dir)
    run(partial.cfg, partial.run_dir, stop_after=1)  # "killed" after its first round
    assert not (partial.run_dir / "summary.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in finished.run_dir.iterdir() if p.is_file()}

    assert compare.main(sweep_args(tiny_sweep, seeds="0")) == 0

    after = {p.name: p.stat().st_mtime_ns for p in finished.run_dir.iterdir() if p.is_file()}
    assert after == before  # not a single file of the finished run rewritten
    records = res.read_records(partial.run_dir)
    assert [r["round"] for r in records] == [0, 1, 2] and (partial.run_dir / "summary.json").is_file()


def test_changed_settings_refuse_the_existing_run(tiny_sweep, capsys):
    (spec,) = planned(tiny_sweep, ["entropy"], [0])
    run(spec.cfg, spec.run_dir)
    args = sweep_args(tiny_sweep, methods="entropy", seeds="0") + ["--rounds", "1"]
    assert compare.main(args) == 2
    assert "rounds: 2 -> 1" in capsys.readouterr().err


def test_a_compare_run_folder_resumes_with_autoal_train(tiny_sweep):
    from autoal.train import main as train_main

    (spec,) = planned(tiny_sweep, ["entropy"], [0])
    run(spec.cfg, spec.run_dir, stop_after=1)
    assert train_main(["--resume", str(spec.run_dir), "--no-progress"]) == 0
    assert (spec.run_dir / "summary.json").is_file()


def test_budget_too_large_for_the_pool_is_refused_before_running(tiny_sweep, capsys):
    assert compare.main(sweep_args(tiny_sweep, methods="entropy", seeds="0") + ["--budget", "1000"]) == 2
    assert "larger than the pool" in capsys.readouterr().err
    assert not (tiny_sweep["out"] / "runs").exists()


def test_a_failed_run_is_reported_and_the_rest_go_on(tiny_sweep, monkeypatch, capsys):
    real = compare.run_one

    def flaky(cfg_dict, run_dir, threads=None):
        if cfg_dict["strategy"] == "random":
            raise RuntimeError("simulated failure")
        return real(cfg_dict, run_dir, threads)

    monkeypatch.setattr(compare, "run_one", flaky)
    assert compare.main(sweep_args(tiny_sweep, seeds="0")) == 1
    captured = capsys.readouterr()
    assert "random seed 0: FAILED: RuntimeError: simulated failure" in captured.out
    assert "1 run(s) failed" in captured.err
    rows = {r["method"]: r for r in csv.DictReader((tiny_sweep["out"] / "results.csv").open())}
    assert rows["entropy"]["seeds"] == "1" and rows["random"]["seeds"] == "0"




def test_two_sweeps_cannot_share_a_folder(tiny_sweep, capsys):
    holder = hold_lock_in_another_process(tiny_sweep["out"], "sweep")
    try:
        assert compare.main(sweep_args(tiny_sweep, methods="entropy", seeds="0")) == 2
        assert f"in use by another sweep (PID {holder.pid})" in capsys.readouterr().err
        assert not (tiny_sweep["out"] / "runs").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_run_folder_held_by_another_process_fails_that_run_only(tiny_sweep, capsys):
    entropy, random_ = planned(tiny_sweep, ["entropy", "random"], [0])
    holder = hold_lock_in_another_process(random_.run_dir)
    try:
        assert compare.main(sweep_args(tiny_sweep, seeds="0")) == 1
        out = capsys.readouterr().out
        assert f"random seed 0: FAILED: UserError: {random_.run_dir} is in use by another run (PID {holder.pid})" in out
        assert (entropy.run_dir / "summary.json").is_file() and not (random_.run_dir / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_auto_backbone_is_compared_as_what_it_means_here(tiny_sweep, monkeypatch, capsys):
    from autoal import loop

    args = sweep_args(tiny_sweep, methods="entropy", seeds="0") + ["--backbone", "auto"]
    assert compare.main(args) == 0
    (spec,) = planned(tiny_sweep, ["entropy"], [0])
    assert json.loads((spec.run_dir / "config.json").read_text())["backbone"] == "cnn"
    capsys.readouterr()
    assert compare.main(args) == 0  # on the same device the finished run is the requested one
    assert "(finished earlier)" in capsys.readouterr().out
    # where auto means ResNet-18 (CUDA), the CNN run is not a finished run of this sweep
    monkeypatch.setattr(loop, "resolve_backbone", lambda name, device: "resnet18" if name == "auto" else name)
    assert compare.main(args) == 2
    assert "backbone: 'cnn' -> 'resnet18'" in capsys.readouterr().err


def test_a_run_folder_that_never_reached_a_checkpoint_is_reused(tiny_sweep):
    (spec,) = planned(tiny_sweep, ["entropy"], [0])
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / "config.json").write_text(json.dumps({"strategy": "entropy", "rounds": 9}))  # killed in round 0
    assert compare.main(sweep_args(tiny_sweep, methods="entropy", seeds="0")) == 0
    assert json.loads((spec.run_dir / "config.json").read_text())["rounds"] == 2


def test_ray_missing_is_a_clear_error(tiny_sweep, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    assert compare.main(sweep_args(tiny_sweep, methods="entropy", seeds="0") + ["--executor", "ray"]) == 2
    assert "pip install 'autoal[ray]'" in capsys.readouterr().err


@pytest.mark.slow
def test_local_worker_processes(tiny_sweep):
    assert compare.main(sweep_args(tiny_sweep) + ["--workers", "2"]) == 0
    assert len(list((tiny_sweep["out"] / "runs").glob("*/summary.json"))) == 4


@pytest.mark.slow
def test_ray_executor_on_a_local_instance(tiny_sweep, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    finished, partial = planned(tiny_sweep, ["entropy", "random"], [0])
    run(partial.cfg, partial.run_dir, stop_after=1)  # Ray tasks resume killed runs too
    assert compare.main(sweep_args(tiny_sweep, seeds="0") + ["--executor", "ray", "--workers", "2"]) == 0
    for spec in (finished, partial):
        assert [r["round"] for r in res.read_records(spec.run_dir)] == [0, 1, 2]
    assert (tiny_sweep["out"] / "results.csv").is_file()


# --- configs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_experiment_config_parses(path):
    settings = read_config_file(path)
    cfg = check(RunConfig(**settings))
    assert cfg.dataset == path.stem and cfg.rounds >= 1 and cfg.budget >= 1


def test_the_expected_configs_exist():
    assert {p.stem for p in CONFIG_DIR.glob("*.toml")} >= {"digits", "pathmnist", "organcmnist", "tissuemnist"}


def test_results_cli_tabulates_runs_from_several_folders(tmp_path, capsys):
    """Runs made by different sweeps go into one table, with the mean accuracy at each label count."""
    write_fake_run(tmp_path / "a", "random", 0, [0.5, 0.6, 0.7])
    write_fake_run(tmp_path / "b", "random", 1, [0.5, 0.8, 0.9])
    write_fake_run(tmp_path / "b", "margin", 0, [0.5, 0.7, 0.8])
    assert res.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "t"),
                     "--methods", "random,margin"]) == 0
    table = (tmp_path / "t" / "results.md").read_text()
    assert "| random | 2 | 0.500 | 0.700 | 0.800 |" in table and "| margin | 1 | 0.500 | 0.700 | 0.800 |" in table
    assert (tmp_path / "t" / "results.csv").read_text().splitlines()[1].startswith("random,2,")
    assert res.main([str(tmp_path / "b"), "--out", str(tmp_path / "r"), "--methods", "random,margin",
                     "--rename", "margin=short"]) == 0
    table = (tmp_path / "r" / "results.md").read_text()
    assert "| short | 1 | 0.500 | 0.700 | 0.800 |" in table and "| margin |" not in table
