"""Trustworthy run folders (issue 10): one writer, what ran is recorded and checked on resume, safe
checkpoints, strict JSON, and one-line errors (exit 2) with no half-made folder left behind."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch

from autoal import loop, runlog
from autoal.data import ImageDataset, Split
from autoal.errors import UserError
from autoal.loop import run
from autoal.train import main
from conftest import hold_lock_in_another_process, make_dataset, tiny_config, write_medmnist_npz


@pytest.fixture
def npz(tmp_path):
    return write_medmnist_npz(tmp_path / "tiny.npz", n_train=64, n_test=16)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _args(npz, out, **overrides) -> list[str]:
    settings = {"dataset": f"npz:{npz}", "strategy": "entropy", "init-size": 8, "budget": 4, "rounds": 1,
                "epochs": 1, "min-steps": 2, "backbone": "cnn", "device": "cpu", "mc-samples": 2, "out": str(out)}
    settings.update(overrides)
    return [f"--{k}={v}" for k, v in settings.items() if v is not None] + ["--no-progress"]


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def _records(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runlog.read_rounds(run_dir)]


def _cut_to_first_round(run_dir) -> None:
    """Make a finished 2-round run look killed after round 0 (as the CLI tests do)."""
    full = runlog.read_rounds(run_dir)
    state = runlog.load_checkpoint(run_dir)
    state.update(next_round=1, records=state["records"][:1])
    state["labeled"][full[1]["queried"]] = False  # round 1's picks were labeled after the "kill"
    runlog.save_checkpoint(run_dir, state)
    runlog.write_rounds(run_dir, state["records"])


# --- 1. one process per run folder ---------------------------------------------------------------



def test_a_second_process_is_refused_with_the_holders_pid(npz, tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = hold_lock_in_another_process(run_dir)
    try:
        assert main(_args(npz, run_dir)) == 2
        line = _error(capsys)
        assert f"in use by another run (PID {holder.pid})" in line
        assert not (run_dir / runlog.CONFIG).exists()  # the refused process wrote nothing
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock with the process
        holder.wait()
    assert main(_args(npz, run_dir)) == 0


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    with runlog.hold_lock(tmp_path / "f"):
        with runlog.hold_lock(tmp_path / "f"):
            pass
        with pytest.raises(UserError, match="in use"):  # another open file description: a second writer
            runlog._acquire((tmp_path / "f").resolve(), "run")
    runlog.os.close(runlog._acquire((tmp_path / "f").resolve(), "run"))


def test_stale_tmp_files_are_removed_when_the_lock_is_taken(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # a write killed before its rename
    with runlog.hold_lock(folder):
        assert not list(folder.glob("*.tmp"))


# --- 2. the backbone is resolved once and saved ----------------------------------------------------

def test_auto_backbone_is_saved_resolved_and_kept_on_another_device(npz, tmp_path, monkeypatch):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(_args(npz, whole, backbone="auto", rounds=2)) == 0
    assert main(_args(npz, parts, backbone="auto", rounds=2)) == 0
    assert runlog.read_json(parts / runlog.CONFIG)["backbone"] == "cnn"  # what auto meant on the CPU
    _cut_to_first_round(parts)
    # resumed "on CUDA": there auto would mean ResNet-18
    monkeypatch.setattr(loop, "resolve_backbone", lambda name, device: "resnet18" if name == "auto" else name)
    assert main(["--resume", str(parts), "--no-progress"]) == 0
    assert _records(parts) == _records(whole)


def test_a_folder_computed_with_another_backbone_is_refused(tmp_path, monkeypatch):
    data = make_dataset()
    run(tiny_config(backbone="auto", rounds=1), tmp_path, data=data)
    monkeypatch.setattr(loop, "resolve_backbone", lambda name, device: "resnet18" if name == "auto" else name)
    with pytest.raises(UserError, match="backbone: 'cnn' -> 'resnet18'"):
        run(tiny_config(backbone="auto", rounds=1), tmp_path, data=data)


# --- 3. the checkpoint is loaded with weights_only=True --------------------------------------------

def test_a_planted_pickle_is_refused_and_never_run(npz, tmp_path, capsys):
    run_dir, marker = tmp_path / "run", tmp_path / "ran"
    assert main(_args(npz, run_dir)) == 0

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"next_round": 0, "payload": Planted()}, run_dir / runlog.CHECKPOINT)
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--no-progress"]) == 2
    line = _error(capsys)
    assert "is not a checkpoint this program wrote" in line and "posix.system" in line
    assert not marker.exists()


@pytest.mark.parametrize("strategy", ["autoal", "albl", "selectal"])
def test_every_selectors_checkpoint_loads_with_weights_only(tmp_path, strategy):
    cfg = tiny_config(strategy=strategy, warm_start=True, rounds=2, selectal_repeats=1,
                      selectal_probe_epochs=1, selectal_probe_min_steps=2)
    run(cfg, tmp_path, data=make_dataset(), stop_after=2)
    state = torch.load(tmp_path / runlog.CHECKPOINT, weights_only=True)
    assert state["next_round"] == 2 and state["model"] is not None


@pytest.mark.parametrize("content,match", [(b"", "truncated or corrupt"),
                                           (b"garbage" * 20, "not a checkpoint this program wrote"),
                                           ("half", "truncated or corrupt")])
def test_damaged_checkpoints_are_one_line(npz, tmp_path, capsys, content, match):
    run_dir = tmp_path / "run"
    assert main(_args(npz, run_dir)) == 0
    path = run_dir / runlog.CHECKPOINT
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if content == "half" else content)
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--no-progress"]) == 2
    assert match in _error(capsys)


# --- 4. the checkpoint knows the config it was computed with ---------------------------------------

def test_an_edited_config_json_is_refused_on_resume(npz, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(_args(npz, run_dir, rounds=2)) == 0
    _cut_to_first_round(run_dir)
    config = runlog.read_json(run_dir / runlog.CONFIG)
    runlog.write_json(run_dir / runlog.CONFIG, {**config, "budget": 5})
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--no-progress"]) == 2
    line = _error(capsys)
    assert "computed with other settings than config.json (budget: 4 -> 5)" in line
    assert len(runlog.read_rounds(run_dir)) == 1  # nothing ran


# --- 5. validation before anything is written; no half-made folder ---------------------------------

@pytest.mark.parametrize("flag,value,match", [
    ("lr", -0.01, "--lr must be positive"), ("lr", 0, "--lr must be positive"),
    ("lr", "nan", "--lr must be a finite number"), ("lr", "inf", "--lr must be a finite number"),
    ("weight-decay", -1, "--weight-decay must not be negative"),
    ("dropout", "nan", "--dropout must be"),
    ("device", "mps", "MPS is not available"), ("device", "cuda:7", "CUDA"),
])
def test_bad_settings_leave_no_folder(npz, tmp_path, capsys, flag, value, match):
    if flag == "device" and value == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    run_dir = tmp_path / "run"
    assert main(_args(npz, run_dir, **{flag: value})) == 2
    assert match in _error(capsys)
    assert not run_dir.exists()
    assert main(_args(npz, run_dir)) == 0  # and the same folder is then free


def test_a_bad_label_leaves_no_folder(tmp_path, capsys):
    path = write_medmnist_npz(tmp_path / "bad.npz")
    arrays = dict(np.load(path))
    arrays["train_labels"][0] = 10**9
    np.savez(path, **arrays)
    assert main(_args(path, tmp_path / "run")) == 2
    assert "1000000000" in _error(capsys)
    assert not (tmp_path / "run").exists()


def test_a_failure_before_the_first_checkpoint_leaves_no_folder(npz, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(loop.Learner, "fit", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            main(_args(npz, run_dir))
    assert not run_dir.exists()
    assert main(_args(npz, run_dir)) == 0


def test_a_folder_without_a_checkpoint_may_be_reused(npz, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runlog.write_json(run_dir / runlog.CONFIG, {"strategy": "random"})  # killed in round 0 of another run
    (run_dir / runlog.ROUNDS).write_text("")
    assert main(_args(npz, run_dir)) == 0
    assert runlog.read_json(run_dir / runlog.CONFIG)["strategy"] == "entropy"


# --- 6. one line, exit 2 ---------------------------------------------------------------------------

def test_out_is_an_existing_file(npz, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert main(_args(npz, tmp_path / "taken")) == 2
    assert "exists and is not a folder" in _error(capsys)
    assert main(_args(npz, tmp_path / "taken" / "run")) == 2
    assert "is a file, not a folder" in _error(capsys)


def test_out_on_a_read_only_filesystem(npz, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro" / "run"
    real_mkdir = runlog.Path.mkdir

    def read_only_out(self, *args, **kwargs):  # only --out is read-only: the data cache may be written
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(runlog.Path, "mkdir", read_only_out)
    assert main(_args(npz, out)) == 2
    line = _error(capsys)
    assert "Read-only file system" in line and "ro" in line and "--out" in line, line


def test_a_json_config_holding_a_list(npz, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text("[1, 2]")
    assert main([*_args(npz, tmp_path / "run"), "--config", str(config)]) == 2
    assert "holds a list" in _error(capsys)


@pytest.mark.parametrize("text,match", [("{not json", "is not readable JSON"), ("[]", "holds a list"),
                                        ('{"budget": "four"}', "budget must be int")])
def test_a_corrupt_config_json_on_resume(npz, tmp_path, capsys, text, match):
    run_dir = tmp_path / "run"
    assert main(_args(npz, run_dir)) == 0
    (run_dir / runlog.CONFIG).write_text(text)
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--no-progress"]) == 2
    assert match in _error(capsys)


class _FullDisk:
    """A file whose writes fail as on a full disk (ENOSPC)."""

    def __init__(self, path, mode):
        self.f = open(path, mode)

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_names_the_disk_and_the_folder_and_leaves_no_tmp(npz, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    assert main(_args(npz, run_dir, rounds=2)) == 0
    _cut_to_first_round(run_dir)
    capsys.readouterr()
    monkeypatch.setattr(runlog, "open", lambda path, mode: _FullDisk(path, mode), raising=False)
    assert main(["--resume", str(run_dir), "--no-progress"]) == 2
    line = _error(capsys)
    assert f"the disk holding {run_dir} is full" in line and "MiB free" in line and f"continues with --resume {run_dir}" in line
    assert not list(run_dir.glob("*.tmp"))
    monkeypatch.undo()
    assert main(["--resume", str(run_dir), "--no-progress"]) == 0  # space freed: it goes on


def test_a_full_disk_while_saving_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(runlog, "open", lambda path, mode: _FullDisk(path, mode), raising=False)
    with pytest.raises(UserError, match=f"the disk holding {tmp_path} is full .* while writing checkpoint.pt"):
        runlog.save_checkpoint(tmp_path, {"next_round": 1, "labeled": torch.zeros(8, dtype=torch.bool)})
    assert not list(tmp_path.iterdir())


# --- 8. strict JSON ---------------------------------------------------------------------------------

def _strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_files_never_hold_nan(tmp_path):
    runlog.write_json(tmp_path / "s.json", {"aubc": float("nan"), "curve": [1.0, float("inf")],
                                            runlog.WHY_NULL: {"aubc": "no rounds"}})
    data = _strict((tmp_path / "s.json").read_text())
    assert data["aubc"] is None and data["curve"] == [1.0, None]
    assert data[runlog.WHY_NULL] == {"aubc": "no rounds", "curve[1]": "not a number (undefined this round)"}


def test_auc_of_a_one_class_test_split_is_null_with_the_reason(tmp_path):
    data = make_dataset()
    one_class = Split(data.test.images, torch.zeros_like(data.test.labels))
    data = ImageDataset(data.name, data.train, data.val, one_class, data.n_classes, data.mean, data.std)
    run(tiny_config(rounds=1), tmp_path, data=data)
    records = [_strict(line) for line in (tmp_path / runlog.ROUNDS).read_text().splitlines()]
    assert all(r["auc"] is None for r in records)
    assert "test split" in records[0][runlog.WHY_NULL]["auc"]
    _strict((tmp_path / runlog.SUMMARY).read_text())
