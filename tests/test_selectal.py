"""SelectAL-style selector: the regime decision as a pure function, split sizes, a run in the loop."""

from __future__ import annotations

import pytest
import torch

from autoal import runlog
from autoal.errors import UserError
from autoal.loop import run
from autoal.methods.selectal import SelectAL, decide_regime, split_sizes
from conftest import make_dataset, tiny_config


@pytest.mark.parametrize("accs,expected", [
    ({"typiclust": 0.60, "margin": 0.80, "random": 0.78}, "low"),   # removing typical points hurts most
    ({"typiclust": 0.79, "margin": 0.70, "random": 0.78}, "high"),  # removing uncertain points hurts most
    ({"typiclust": 0.80, "margin": 0.81, "random": 0.70}, "mid"),   # random removal hurts most
    ({"typiclust": 0.70, "margin": 0.70, "random": 0.80}, "mid"),   # a tie between the two: no signal
    ({"typiclust": 0.75, "margin": 0.75, "random": 0.75}, "mid"),   # nothing matters
    ({"typiclust": 0.70, "margin": 0.75, "random": 0.80}, "low"),   # both hurt, typical more
])
def test_decide_regime(accs, expected):
    assert decide_regime(accs, high="margin") == expected


def test_decide_regime_tolerance_and_other_uncertainty_name():
    accs = {"typiclust": 0.76, "entropy": 0.79, "random": 0.78}
    assert decide_regime(accs, high="entropy") == "low"
    assert decide_regime(accs, high="entropy", tolerance=0.05) == "mid"  # 0.02 is within the noise allowed


def test_split_sizes():
    assert split_sizes(20, holdout=0.25, removal=0.1) == (5, 2)
    assert split_sizes(8, holdout=0.25, removal=0.1) == (2, 1)
    assert split_sizes(2, holdout=0.25, removal=0.1) == (0, 0)  # too small to test: no split


def test_bad_settings_are_rejected():
    with pytest.raises(UserError):
        SelectAL(uncertainty="kmeans")  # a set candidate has no ranking to remove by
    with pytest.raises(UserError):
        SelectAL(uncertainty="no_such_strategy")
    with pytest.raises(UserError):
        SelectAL(removal=0.0)
    with pytest.raises(UserError):
        SelectAL(repeats=0)


def test_needs_cover_typiclust_and_the_uncertainty_strategy():
    assert SelectAL(uncertainty="bald").needs >= {"embeddings", "mc_probs", "probs"}


def test_selectal_runs_in_the_loop_and_records_its_decision(tmp_path):
    cfg = tiny_config(strategy="selectal", rounds=2, selectal_repeats=1, selectal_probe_epochs=1,
                      selectal_probe_min_steps=3)
    summary = run(cfg, tmp_path, data=make_dataset())
    assert summary["query_rounds"] == 2
    records = runlog.read_rounds(tmp_path)
    strategy_of = {"low": "typiclust", "mid": "random", "high": "margin"}
    for rec in records[:-1]:
        info = rec["selector"]
        assert info["regime"] in strategy_of and info["strategy"] == strategy_of[info["regime"]]
        assert set(info["removal_acc"]) == {"typiclust", "margin", "random"}
        assert all(0.0 <= a <= 1.0 for a in info["removal_acc"].values())
        assert info["regime"] == decide_regime(info["removal_acc"], high="margin")
        assert len(set(rec["queried"])) == cfg.budget


def test_selectal_is_reproducible(tmp_path):
    cfg = tiny_config(strategy="selectal", rounds=1, selectal_repeats=1, selectal_probe_epochs=1,
                      selectal_probe_min_steps=3)
    a = run(cfg, tmp_path / "a", data=make_dataset())
    b = run(cfg, tmp_path / "b", data=make_dataset())
    assert a["acc"] == b["acc"]
    assert runlog.read_rounds(tmp_path / "a")[0]["queried"] == runlog.read_rounds(tmp_path / "b")[0]["queried"]
    assert torch.equal(runlog.load_checkpoint(tmp_path / "a")["labeled"], runlog.load_checkpoint(tmp_path / "b")["labeled"])


@pytest.mark.parametrize("regime", ["low", "mid", "high"])
def test_every_regime_queries_budget_distinct_unlabeled_points(tmp_path, monkeypatch, regime):
    import autoal.methods.selectal as selectal

    monkeypatch.setattr(selectal, "decide_regime", lambda *args, **kwargs: regime)
    cfg = tiny_config(strategy="selectal", rounds=1, selectal_repeats=1, selectal_probe_epochs=1,
                      selectal_probe_min_steps=3)
    run(cfg, tmp_path, data=make_dataset())  # the loop itself rejects repeated or labeled picks
    info = runlog.read_rounds(tmp_path)[0]["selector"]
    assert info["regime"] == regime
    assert info["strategy"] == {"low": "typiclust", "mid": "random", "high": "margin"}[regime]
