"""The active-learning loop: a two-round smoke run, seeded initial sets, resume == uninterrupted, AUBC."""

from __future__ import annotations

import json

import pytest
import torch

from autoal import loop, runlog
from autoal.errors import UserError
from autoal.learner import Learner
from autoal.loop import initial_labeled, run
from conftest import make_dataset, tiny_config

N_POOL = 64


@pytest.fixture
def data():
    return make_dataset(n_train=N_POOL)


def _records(run_dir) -> list[dict]:
    """rounds.jsonl without the wall times (the only part allowed to differ between two runs)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runlog.read_rounds(run_dir)]


def _tb_steps(run_dir, tag: str = "test/acc") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / runlog.TENSORBOARD), purge_orphaned_data=True)
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


@pytest.mark.parametrize("strategy", ["entropy", "bald", "kmeans", "random"])
def test_two_round_smoke_run(tmp_path, data, strategy):
    cfg = tiny_config(strategy=strategy)
    seen = []
    summary = run(cfg, tmp_path, data=data, on_round=seen.append)

    records = runlog.read_rounds(tmp_path)
    assert [r["round"] for r in records] == [0, 1, 2]
    assert [r["labels"] for r in records] == [cfg.init_size + r * cfg.budget for r in range(cfg.rounds + 1)]
    assert seen == records
    queried = [i for r in records for i in r["queried"]]
    assert [len(r["queried"]) for r in records] == [cfg.budget, cfg.budget, 0]
    assert len(set(queried)) == len(queried)  # no sample is queried twice
    assert all(0 <= i < N_POOL for i in queried)
    initial = set(initial_labeled(N_POOL, cfg.init_size, cfg.seed).tolist())
    assert not initial & set(queried)
    for r in records:
        assert 0.0 <= r["acc"] <= 1.0 and 0.0 <= r["auc"] <= 1.0
        assert {"train", "evaluate"} <= set(r["seconds"])
    assert {"infer", "select"} <= set(records[0]["seconds"])

    for name in (runlog.CONFIG, runlog.ROUNDS, runlog.SUMMARY, runlog.CHECKPOINT):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / runlog.TENSORBOARD).glob("events.out.tfevents.*"))
    assert _tb_steps(tmp_path) == [8, 12, 16]
    assert json.loads((tmp_path / runlog.CONFIG).read_text())["strategy"] == strategy
    assert runlog.read_json(tmp_path / runlog.SUMMARY) == summary
    assert summary["labels"] == [8, 12, 16] and summary["acc"] == [r["acc"] for r in records]
    assert summary["aubc"] == pytest.approx(runlog.aubc(summary["labels"], summary["acc"]))

    state = runlog.load_checkpoint(tmp_path)
    assert state["next_round"] == cfg.rounds + 1
    assert sorted(state["labeled"].nonzero().squeeze(1).tolist()) == sorted(initial | set(queried))


def test_initial_set_is_the_same_for_every_strategy(tmp_path, data):
    initial = {}
    for strategy in ("entropy", "kmeans", "random"):
        run(tiny_config(strategy=strategy), tmp_path / strategy, data=data, stop_after=1)
        state = runlog.load_checkpoint(tmp_path / strategy)
        queried = runlog.read_rounds(tmp_path / strategy)[0]["queried"]
        labeled = state["labeled"].clone()
        labeled[queried] = False
        initial[strategy] = labeled.nonzero().squeeze(1).tolist()
    assert initial["entropy"] == initial["kmeans"] == initial["random"]
    assert initial["entropy"] == initial_labeled(N_POOL, 8, seed=0).tolist()
    assert len(initial["entropy"]) == 8


def test_initial_set_depends_on_the_seed_only():
    a, b = initial_labeled(N_POOL, 8, seed=0), initial_labeled(N_POOL, 8, seed=1)
    assert torch.equal(a, initial_labeled(N_POOL, 8, seed=0))
    assert not torch.equal(a, b)
    assert len(a.unique()) == 8


@pytest.mark.parametrize("overrides", [dict(strategy="bald"), dict(strategy="kmeans", warm_start=True)])
def test_resume_equals_uninterrupted(tmp_path, data, overrides):
    cfg = tiny_config(**overrides)
    run(cfg, tmp_path / "whole", data=data)
    assert run(cfg, tmp_path / "parts", data=data, stop_after=1) == {}
    assert len(runlog.read_rounds(tmp_path / "parts")) == 1
    summary = run(cfg, tmp_path / "parts", data=data)
    assert _records(tmp_path / "parts") == _records(tmp_path / "whole")
    whole = runlog.read_json(tmp_path / "whole" / runlog.SUMMARY)
    measured = ("total_seconds", "peak_rss_mb")  # of the process, not of the run's results
    assert {k: v for k, v in summary.items() if k not in measured} == \
           {k: v for k, v in whole.items() if k not in measured}


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise point runs (not even ``except Exception``)."""


def _kill_on_call(monkeypatch, module, name: str, call: int) -> None:
    original, calls = getattr(module, name), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise Killed
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize("where,done", [
    ("after-checkpoint", 1),  # round 0 is checkpointed, rounds.jsonl not yet rewritten
    ("mid-round", 1),  # killed while selecting in round 1
    ("before-checkpoint", 1),  # round 1 finished and logged to TensorBoard, not checkpointed
    ("before-first-checkpoint", 0),
])
def test_resume_after_a_kill_equals_uninterrupted(tmp_path, data, monkeypatch, where, done):
    """Also TensorBoard: every round's events once, none lost and none twice."""
    cfg = tiny_config(strategy="bald")
    run(cfg, tmp_path / "whole", data=data)
    with monkeypatch.context() as patch:
        if where == "after-checkpoint":
            _kill_on_call(patch, runlog, "write_rounds", call=2)  # call 1 is the start-up rewrite
        elif where == "mid-round":
            _kill_on_call(patch, loop, "_validated", call=2)
        else:
            _kill_on_call(patch, runlog, "save_checkpoint", call=done + 1)
        with pytest.raises(Killed):
            run(cfg, tmp_path / "killed", data=data)
    state = runlog.load_checkpoint(tmp_path / "killed")
    assert (state["next_round"] if state else 0) == done
    run(cfg, tmp_path / "killed", data=data)
    assert _records(tmp_path / "killed") == _records(tmp_path / "whole")
    assert _tb_steps(tmp_path / "killed") == _tb_steps(tmp_path / "whole") == [8, 12, 16]


def test_resume_of_a_finished_run_changes_nothing(tmp_path, data):
    cfg = tiny_config()
    first = run(cfg, tmp_path, data=data)
    before = _records(tmp_path)
    steps = {tag: _tb_steps(tmp_path, tag) for tag in ("test/acc", "test/auc", "seconds/train")}
    files = sorted((tmp_path / runlog.TENSORBOARD).iterdir())
    assert steps["test/acc"] == [8, 12, 16]
    again = run(cfg, tmp_path, data=data)
    assert _records(tmp_path) == before
    assert again == first
    # TensorBoard keeps every round: the last round's step is the final label count, which a purge
    # at the label count (what a resume of an unfinished run needs) would drop; and no new event file
    assert {tag: _tb_steps(tmp_path, tag) for tag in steps} == steps
    assert sorted((tmp_path / runlog.TENSORBOARD).iterdir()) == files


def test_warm_start_continues_last_rounds_model(tmp_path, data, monkeypatch):
    given, trained = [], []
    original = Learner.fit

    def fit(self, rows, seed, model=None, **kwargs):
        given.append(None if model is None else {k: v.clone() for k, v in model.state_dict().items()})
        result = original(self, rows, seed, model=model, **kwargs)
        trained.append({k: v.clone() for k, v in result.state_dict().items()})
        return result

    monkeypatch.setattr(Learner, "fit", fit)
    run(tiny_config(warm_start=True), tmp_path / "warm", data=data)
    assert given[0] is None and given[1] is not None and given[2] is not None
    for r in (1, 2):
        for key, value in trained[r - 1].items():
            assert torch.equal(given[r][key], value), key
    assert runlog.load_checkpoint(tmp_path / "warm")["model"] is not None

    given.clear()
    run(tiny_config(), tmp_path / "cold", data=data)
    assert given == [None, None, None]
    assert runlog.load_checkpoint(tmp_path / "cold")["model"] is None


@pytest.mark.parametrize("overrides,match", [
    (dict(budget=N_POOL + 1), "--budget 65 is larger than the pool"),
    (dict(init_size=N_POOL + 1), "--init-size 65 is larger than the pool"),
    (dict(rounds=15), r"need 68 samples but the pool has 64; use --rounds 14"),
    (dict(budget=30), r"use --rounds 1 or less"),
])
def test_sizes_that_exhaust_the_pool_raise(tmp_path, data, overrides, match):
    with pytest.raises(UserError, match=match):
        run(tiny_config(**overrides), tmp_path, data=data)
    assert not (tmp_path / runlog.CHECKPOINT).exists()


def test_sizes_that_use_the_whole_pool_work(tmp_path, data):
    cfg = tiny_config(budget=28, rounds=2, min_steps=2, epochs=1)
    summary = run(cfg, tmp_path, data=data)
    assert summary["labels"] == [8, 36, 64]
    queried = [i for r in runlog.read_rounds(tmp_path) for i in r["queried"]]
    assert len(set(queried)) == 56


def test_pool_subset_is_all_a_round_scores(tmp_path, data):
    """With a subset of exactly the budget every strategy must query the whole subset, so two
    opposite strategies query the same samples; over the whole pool they do not."""
    def queried(strategy: str, subset: int) -> list[list[int]]:
        run(tiny_config(strategy=strategy, pool_subset=subset), tmp_path / f"{strategy}{subset}", data=data)
        return [sorted(r["queried"]) for r in runlog.read_rounds(tmp_path / f"{strategy}{subset}")][:-1]

    assert queried("entropy", 4) == queried("kmeans", 4)
    assert queried("entropy", 0) != queried("kmeans", 0)


def test_scored_subset_is_a_seeded_sorted_subset():
    unlabeled = torch.arange(0, 200, 2)
    subset = loop.scored_subset(unlabeled, 30, seed=1)
    assert len(subset) == 30 and len(set(subset.tolist())) == 30
    assert set(subset.tolist()) <= set(unlabeled.tolist())
    assert torch.equal(subset, subset.sort().values)
    assert torch.equal(subset, loop.scored_subset(unlabeled, 30, seed=1))
    assert not torch.equal(subset, loop.scored_subset(unlabeled, 30, seed=2))
    assert torch.equal(loop.scored_subset(unlabeled, 0, seed=1), unlabeled)
    assert torch.equal(loop.scored_subset(unlabeled, 500, seed=1), unlabeled)


def test_pool_subset_below_the_budget_is_refused(tmp_path, data):
    with pytest.raises(UserError, match="--pool-subset 3 is smaller than --budget 4"):
        run(tiny_config(pool_subset=3), tmp_path, data=data)


@pytest.mark.parametrize("labels,accs,expected", [
    ([10, 20, 30], [0.5, 0.7, 0.9], 0.7),  # (10*0.6 + 10*0.8) / 20
    ([10, 20, 40], [0.2, 0.4, 0.4], (10 * 0.3 + 20 * 0.4) / 30),  # uneven steps
    ([10, 20], [1.0, 1.0], 1.0),
    ([10, 20], [0.0, 0.0], 0.0),
    ([5], [0.42], 0.42),  # one point: its accuracy
])
def test_aubc_known_values(labels, accs, expected):
    assert runlog.aubc(labels, accs) == pytest.approx(expected)


def test_aubc_of_nothing_is_nan():
    assert runlog.aubc([], []) != runlog.aubc([], [])


def test_progress_reports_every_phase_of_the_task_model(tmp_path):
    seen: dict[str, set[int]] = {}

    def on_progress(phase: str, done: int, total: int) -> None:
        assert 0 <= done < total
        seen.setdefault(phase, set()).add(total)

    run(tiny_config(rounds=1), tmp_path, data=make_dataset(), on_progress=on_progress)
    assert set(seen) == {"train", "evaluate", "infer"}
    assert seen["evaluate"] == {32} and seen["infer"] == {64 - 8}  # test split; unlabeled pool


def test_run_refuses_one_mc_sample_before_making_the_folder(tmp_path, data):
    """The sweep runner calls run() directly: the loop checks --mc-samples too, before anything is written."""
    with pytest.raises(UserError, match="--strategy bald uses MC-dropout samples.*--mc-samples 2 or more"):
        run(tiny_config(strategy="bald", mc_samples=1), tmp_path / "run", data=data)
    assert not (tmp_path / "run").exists()
