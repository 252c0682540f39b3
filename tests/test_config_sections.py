"""Config files with method sections ([autoal], [albl], [selectal]), candidate parameters in specs
and by flag (--diversity-temperature), and what config.json records of them."""

from __future__ import annotations

import json

import pytest

from autoal import runlog
from autoal.config import (PARAMETERS_KEY, RunConfig, apply_candidate_flags, build_parser, default_run_dir,
                           read_config_file, resolve_config, to_dict)
from autoal.errors import UserError
from autoal.train import main
from conftest import write_medmnist_npz


def _write(tmp_path, text: str, name: str = "c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _resolve(argv: list[str]) -> RunConfig:
    return resolve_config(build_parser().parse_args(argv))


# -- sections -------------------------------------------------------------------------------------
def test_sections_map_onto_the_flat_fields(tmp_path):
    path = _write(tmp_path, """
        budget = 7
        [autoal]
        search_epochs = 3
        candidates = "entropy,diversity:T=0.1"
        [albl]
        delta = 0.2
        albl_reward = "gain"
        [selectal]
        repeats = 2
    """.replace("\n        ", "\n"))
    assert read_config_file(path) == {"budget": 7, "search_epochs": 3, "candidates": "entropy,diversity:T=0.1",
                                      "albl_delta": 0.2, "albl_reward": "gain", "selectal_repeats": 2}


def test_an_old_flat_file_reads_as_before(tmp_path):
    path = _write(tmp_path, 'albl_delta = 0.2\nselectal_repeats = 2\nsearch-epochs = 3\n')
    assert read_config_file(path) == {"albl_delta": 0.2, "selectal_repeats": 2, "search_epochs": 3}


def test_json_sections_too(tmp_path):
    path = _write(tmp_path, json.dumps({"albl": {"batch_mode": "per-batch"}, "rounds": 2}), "c.json")
    assert read_config_file(path) == {"albl_batch_mode": "per-batch", "rounds": 2}


@pytest.mark.parametrize("text, problem", [
    ("[albl]\nsearch_epochs = 3\n", "[albl] has no setting 'search_epochs'; its settings: candidates, batch_mode"),
    ("[autoal]\ndelta = 0.1\n", "[autoal] has no setting 'delta'"),
    ("[albll]\ndelta = 0.1\n", "unknown section [albll]; the sections are [autoal], [albl], [selectal]"),
    ("albl_delta = 0.3\n[albl]\ndelta = 0.1\n", "albl_delta is set twice"),
    ("[autoal]\ncandidates = 'entropy'\n[albl]\ncandidates = 'margin'\n", "candidates is set twice"),
    ("[albl]\ndelta = 'high'\n", "albl_delta must be float"),
    ("[albl]\nbatch_mode = 'sometimes'\n", "albl_batch_mode must be one of per-example, per-batch"),
])
def test_bad_sections_are_one_line_user_errors(tmp_path, text, problem):
    with pytest.raises(UserError) as info:
        read_config_file(_write(tmp_path, text))
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_flags_win_over_a_sectioned_file(tmp_path):
    path = _write(tmp_path, "[albl]\ndelta = 0.2\nreward = 'gain'\n")
    cfg = _resolve(["--config", str(path), "--albl-delta", "0.3"])
    assert cfg.albl_delta == 0.3 and cfg.albl_reward == "gain"


def test_the_shipped_configs_still_read(tmp_path):
    from pathlib import Path

    for path in sorted((Path(__file__).parent.parent / "experiments" / "configs").glob("*.toml")):
        assert isinstance(read_config_file(path), dict)


# -- candidate parameters in the run's settings --------------------------------------------------
def test_diversity_temperature_flag_is_the_spec():
    cfg = _resolve(["--strategy", "diversity", "--diversity-temperature", "0.1"])
    assert cfg.strategy == "diversity:T=0.1"
    assert _resolve(["--strategy", "diversity:T=0.1"]).strategy == "diversity:T=0.1"
    cfg = _resolve(["--strategy", "albl", "--candidates", "entropy,diversity", "--diversity-temperature", "0"])
    assert cfg.candidates == "entropy,diversity:T=0.0"
    assert _resolve(["--strategy", "diversity", "--diversity-temperature", "0.5"]).strategy == "diversity"


def test_diversity_temperature_from_a_config_file(tmp_path):
    path = _write(tmp_path, 'strategy = "diversity"\ndiversity_temperature = 0.25\n')
    assert _resolve(["--config", str(path)]).strategy == "diversity:T=0.25"
    assert _resolve(["--config", str(path), "--diversity-temperature", "0.75"]).strategy == "diversity:T=0.75"


@pytest.mark.parametrize("argv, problem", [
    (["--strategy", "diversity:T=0.2", "--diversity-temperature", "0.1"], "contradicts diversity:T=0.2"),
    (["--strategy", "entropy", "--diversity-temperature", "0.1"], "neither --strategy nor --candidates names diversity"),
    (["--strategy", "diversity", "--diversity-temperature", "-1"], "T=-1.0 is invalid (below 0.0)"),
])
def test_bad_diversity_temperature(argv, problem):
    with pytest.raises(UserError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        _resolve(argv)


def test_a_sweep_applies_the_flag_only_where_diversity_is_used():
    assert apply_candidate_flags({"strategy": "entropy", "diversity_temperature": 0.1}, strict=False) == {
        "strategy": "entropy"}


def test_config_json_records_resolved_parameters_and_a_safe_folder_name():
    cfg = _resolve(["--strategy", "batchbald:samples=64"])
    assert to_dict(cfg)[PARAMETERS_KEY] == {"batchbald:samples=64": {"samples": 64, "max_configs": 4096}}
    assert str(default_run_dir(cfg)) == "runs/digits-batchbald-samples-64-seed0"
    autoal = to_dict(_resolve(["--candidates", "entropy,diversity"]))  # the pool of a search method
    assert autoal[PARAMETERS_KEY] == {"diversity": {"T": 0.5}}
    assert PARAMETERS_KEY not in to_dict(_resolve([]))  # the seven have no parameters


def test_a_run_with_a_spec_records_it_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    npz = write_medmnist_npz(tmp_path / "tiny.npz", n_train=48, n_test=16)
    argv = [f"--dataset=npz:{npz}", "--strategy=diversity", "--diversity-temperature=0.1", "--init-size=8",
            "--budget=4", "--rounds=1", "--epochs=1", "--min-steps=2", "--backbone=cnn", "--device=cpu",
            "--no-progress"]
    assert main(argv) == 0
    run_dir = tmp_path / "runs" / "tiny-diversity-T-0.1-seed0"
    saved = runlog.read_json(run_dir / runlog.CONFIG)
    assert saved["strategy"] == "diversity:T=0.1" and saved[PARAMETERS_KEY] == {"diversity:T=0.1": {"T": 0.1}}
    assert main(["--resume", str(run_dir), "--no-progress"]) == 0
    assert main(["--resume", str(run_dir), "--diversity-temperature=0.2", "--no-progress"]) == 2
    assert "drop --diversity-temperature" in capsys.readouterr().err
    assert main(argv[:1] + ["--strategy=diversity:T=x"] + argv[3:] + ["--out", str(tmp_path / "bad")]) == 2
    assert "T=x is invalid (expected float)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_comparison_method_specs_take_candidate_parameters():
    from autoal.selectors import known_strategies
    from experiments.compare import parse_methods

    text = "autoal@search_epochs=10,diversity:T=0.10,batchbald:samples=8,max_configs=16@epochs=2,random"
    specs = parse_methods(text, known_strategies())
    assert [(s.strategy, s.overrides, s.name) for s in specs] == [
        ("autoal", {"search_epochs": 10}, "autoal-search_epochs-10"),
        ("diversity:T=0.1", {}, "diversity-T-0.1"),
        ("batchbald:samples=8,max_configs=16", {"epochs": 2}, "batchbald-samples-8-max_configs-16-epochs-2"),
        ("random", {}, "random")]
    with pytest.raises(UserError, match="--methods names diversity more than once"):
        parse_methods("diversity,diversity:T=0.5", known_strategies())  # the default: the same method
    with pytest.raises(UserError, match="method 'diversity:T=-1': candidate 'diversity': T=-1 is invalid"):
        parse_methods("diversity:T=-1", known_strategies())
    with pytest.raises(UserError, match="only a candidate takes parameters after ':'"):
        parse_methods("autoal:search_epochs=3", known_strategies())
