"""The command line: bad input gives one `error:` line and exit code 2; --config, --resume, --help."""

from __future__ import annotations

import json

import pytest
import torch

from autoal import runlog
from autoal.errors import UserError
from autoal.registry import parse_candidates
from autoal.selectors import make_selector
from autoal.train import main
from conftest import tiny_config, write_medmnist_npz

N_POOL = 64


@pytest.fixture
def npz(tmp_path):
    return write_medmnist_npz(tmp_path / "tiny.npz", n_train=N_POOL, n_test=16)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run folder (runs/...) never lands in the repository


def _args(npz, out, **overrides) -> list[str]:
    """A run of a second or so: 64-sample pool, 1 round, a few optimiser steps."""
    settings = {"dataset": f"npz:{npz}", "strategy": "entropy", "init-size": 8, "budget": 4, "rounds": 1,
                "epochs": 1, "min-steps": 2, "backbone": "cnn", "device": "cpu", "mc-samples": 2, "out": str(out)}
    settings.update(overrides)
    argv = [f"--{k}={v}" for k, v in settings.items() if v is not None]
    return argv + ["--no-progress"]


def _error(capsys) -> str:
    """The error line; asserts it is exactly one line starting with ``error:``."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_good_run(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert "round   0" in out and "round   1" in out and "AUBC" in out and str(tmp_path / "run") in out
    assert [r["labels"] for r in runlog.read_rounds(tmp_path / "run")] == [8, 12]


def test_unknown_dataset(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "run", dataset="imagenet")) == 2
    line = _error(capsys)
    assert "unknown dataset 'imagenet'" in line and "digits" in line and "pathmnist" in line
    assert not (tmp_path / "run").exists()


def test_unknown_strategy_lists_known_ones(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "run", strategy="entropyy")) == 2
    line = _error(capsys)
    assert "unknown strategy 'entropyy'" in line
    assert all(name in line for name in ("entropy", "margin", "bald", "kmeans", "random"))


def test_missing_npz(tmp_path, capsys):
    assert main(_args(tmp_path / "absent.npz", tmp_path / "run")) == 2
    assert "absent.npz" in _error(capsys)


def test_missing_medmnist_file(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "run", dataset="bloodmnist", **{"data-root": str(tmp_path / "d")})) == 2
    line = _error(capsys)
    assert str(tmp_path / "d" / "bloodmnist.npz") in line and "MD5" in line and "zenodo" in line


def test_budget_larger_than_the_pool(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "run", budget=N_POOL + 1)) == 2
    assert "--budget 65 is larger than the pool (64 samples)" in _error(capsys)


def test_rounds_that_exhaust_the_pool(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "run", rounds=20)) == 2
    line = _error(capsys)
    assert "pool has 64" in line and "--rounds 14" in line


@pytest.mark.parametrize("flag,value,match", [
    ("budget", 0, "--budget must be at least 1"),
    ("init-size", 0, "--init-size must be at least 1"),
    ("dropout", 1.0, "--dropout must be in [0, 1)"),
    ("device", "gpu", "is not a device"),
])
def test_bad_values(npz, tmp_path, capsys, flag, value, match):
    assert main(_args(npz, tmp_path / "run", **{flag: value})) == 2
    assert match in _error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "run", device="cuda")) == 2
    assert "CUDA is not available" in _error(capsys)


def test_folder_holding_a_run_is_refused_and_resume_continues_it(npz, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = _args(npz, run_dir, rounds=2)
    # a run killed after its first round: simulated by a checkpoint that says so
    assert main(argv) == 0
    full = runlog.read_rounds(run_dir)
    state = runlog.load_checkpoint(run_dir)
    state.update(next_round=1, records=state["records"][:1])
    state["labeled"][full[1]["queried"]] = False
    runlog.save_checkpoint(run_dir, state)
    runlog.write_rounds(run_dir, state["records"])
    capsys.readouterr()

    assert main(argv) == 2
    line = _error(capsys)
    assert "already holds a run" in line and f"--resume {run_dir}" in line

    assert main(["--resume", str(run_dir), "--no-progress"]) == 0
    assert "round   1" in capsys.readouterr().out
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in runlog.read_rounds(run_dir)] == \
           [{k: v for k, v in r.items() if k != "seconds"} for r in full]


def test_resume_with_changed_flags_is_refused(npz, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(_args(npz, run_dir)) == 0
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--budget", "5"]) == 2
    assert "drop --budget" in _error(capsys)
    config = tmp_path / "c.toml"
    config.write_text("budget = 5\n")
    assert main(["--resume", str(run_dir), "--config", str(config)]) == 2
    assert "drop --config" in _error(capsys)
    assert main(["--resume", str(run_dir), "--device", "cpu", "--no-progress"]) == 0  # the device may change


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no config.json there" in _error(capsys)


@pytest.mark.parametrize("text,match", [
    ("bogus_setting = 1\n", "unknown setting 'bogus_setting'"),
    ("budget = 'many'\n", "budget must be int"),
    ("budget = \n", "cannot parse config file"),
])
def test_bad_config_file(npz, tmp_path, capsys, text, match):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main([*_args(npz, tmp_path / "run"), "--config", str(config)]) == 2
    line = _error(capsys)
    assert match in line and str(config) in line


def test_missing_config_file(npz, tmp_path, capsys):
    assert main([*_args(npz, tmp_path / "run"), "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in _error(capsys)


@pytest.mark.parametrize("suffix", ["toml", "json"])
def test_config_values_are_used_and_flags_win(npz, tmp_path, suffix):
    values = {"budget": 3, "seed": 5, "mc-samples": 3, "lr": 0.01}
    config = tmp_path / f"defaults.{suffix}"
    if suffix == "json":
        config.write_text(json.dumps(values))
    else:
        config.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    argv = [a for a in _args(npz, tmp_path / "run", budget=None, **{"mc-samples": None}) if "seed" not in a]
    assert main([*argv, "--config", str(config), "--seed", "7"]) == 0
    saved = runlog.read_json(tmp_path / "run" / runlog.CONFIG)
    assert saved["budget"] == 3 and saved["mc_samples"] == 3 and saved["lr"] == 0.01  # from the file
    assert saved["seed"] == 7  # the flag wins
    assert saved["epochs"] == 1  # flags not in the file still count
    assert [r["labels"] for r in runlog.read_rounds(tmp_path / "run")] == [8, 11]


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--data-root", "--strategy", "--init-size", "--budget", "--rounds", "--epochs",
                 "--backbone", "--device", "--seed", "--mc-samples", "--out", "--resume", "--config"):
        assert flag in text, flag


@pytest.mark.parametrize("samples", [0, 1])
@pytest.mark.parametrize("strategy, candidates", [
    ("bald", None), ("var_ratio", None), ("mean_std", None),
    ("autoal", "entropy,bald"), ("albl", "margin,mean_std"),
])
def test_mc_strategy_with_fewer_than_two_mc_samples(npz, tmp_path, capsys, monkeypatch, samples, strategy,
                                                   candidates):
    """With T = 1 every MC statistic is constant over the pool: refused up front, nothing written."""

    def no_folder_yet(*args, **kwargs):
        raise AssertionError("the run folder was locked (created) before the settings were checked")

    monkeypatch.setattr(runlog, "hold_lock", no_folder_yet)
    argv = _args(npz, tmp_path / "run", strategy=strategy, candidates=candidates, **{"mc-samples": samples})
    assert main(argv) == 2
    line = _error(capsys)
    assert f"--strategy {strategy} uses MC-dropout samples" in line and "--mc-samples 2 or more" in line
    assert not (tmp_path / "run").exists()


def test_mc_samples_are_not_needed_without_an_mc_strategy(npz, tmp_path, capsys):
    assert main(_args(npz, tmp_path / "a", strategy="entropy", **{"mc-samples": 0})) == 0
    assert main(_args(npz, tmp_path / "b", strategy="albl", candidates="entropy,margin", **{"mc-samples": 1})) == 0


@pytest.mark.parametrize("argv, match", [(["--budget", "x"], "invalid int value: 'x'"),
                                         (["--backbone", "vgg"], "invalid choice: 'vgg'"),
                                         (["--no-such-flag"], "unrecognized arguments: --no-such-flag")])
def test_malformed_flags_get_one_line_and_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    line = _error(capsys)
    assert match in line and "--help" in line


@pytest.mark.parametrize("dataset", ["digits", "npz"])
def test_size_is_refused_where_it_would_be_ignored(npz, tmp_path, capsys, dataset):
    """digits and npz images are never resized: a --size there would be recorded in config.json as if used."""
    name = "digits" if dataset == "digits" else f"npz:{npz}"
    assert main(_args(npz, tmp_path / "run", dataset=name, size=64)) == 2
    line = _error(capsys)
    assert "--size 64 does not apply to" in line and "drop --size" in line
    assert not (tmp_path / "run").exists()
    assert main(_args(npz, tmp_path / "run", dataset=name, size=28)) == 0  # the default is what they hold


@pytest.mark.parametrize("dataset", ["pathmnist", "cifar10", "mnist"])
def test_size_is_left_to_the_loaders_that_use_it(dataset):
    """MedMNIST picks its file by --size and the torchvision sets check it against their native size."""
    from autoal.config import check_size

    check_size(dataset, 64)  # no error here: their loaders decide (see test_data, test_torchvision_data)


# --- --candidates: one reading for AutoAL, ALBL and SelectAL (registry.parse_candidates) ---------------

def test_parse_candidates_keeps_the_order_and_drops_empty_entries():
    assert parse_candidates(" margin, entropy,kmeans ,") == ["margin", "entropy", "kmeans"]


BAD_CANDIDATES = {"empty": ("", "--candidates is empty; name at least one candidate strategy"),
                  "only commas": (" , ,", "--candidates is empty; name at least one candidate strategy"),
                  "twice": ("entropy,margin,entropy", "--candidates names a strategy twice (entropy in "
                                                      "entropy,margin,entropy); name each once"),
                  "unknown": ("entropy,entropyy", "--candidates: unknown candidate 'entropyy'; known: ")}


@pytest.mark.parametrize("case", list(BAD_CANDIDATES))
@pytest.mark.parametrize("strategy", ["autoal", "albl", "selectal"])
def test_bad_candidates_are_refused_alike_by_every_selector_that_reads_them(strategy, case):
    text, message = BAD_CANDIDATES[case]
    with pytest.raises(UserError) as refused:
        parse_candidates(text)
    assert str(refused.value).startswith(message)
    with pytest.raises(UserError) as refused:
        make_selector(strategy, tiny_config(strategy=strategy, candidates=text))
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("strategy", ["albl", "selectal"])
def test_bad_candidates_get_one_line_and_no_folder(npz, tmp_path, capsys, strategy):
    assert main(_args(npz, tmp_path / "run", strategy=strategy, candidates="margin,margin")) == 2
    assert "--candidates names a strategy twice (margin in margin,margin)" in _error(capsys)
    assert not (tmp_path / "run").exists()
