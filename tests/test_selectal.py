"""SelectAL-style selector: the regime decision as a pure function, split sizes, a run in the loop."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from autoal import runlog
from autoal.errors import UserError
from autoal.loop import run
from autoal.methods.selectal import SelectAL, decide_regime, split_sizes
from autoal.outputs import PoolOutputs
from autoal.selectors import RoundContext
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


def test_selectal_takes_learning_loss_as_its_uncertainty_strategy(tmp_path):
    """Its needs reach the learner: the task model carries the loss module SelectAL's high-budget
    strategy reads (a run without it would fail on the missing predicted_loss)."""
    cfg = tiny_config(strategy="selectal", rounds=2, selectal_repeats=1, selectal_probe_epochs=1,
                      selectal_probe_min_steps=3, selectal_uncertainty="learning_loss")
    assert run(cfg, tmp_path, data=make_dataset())["query_rounds"] == 2
    assert set(runlog.read_rounds(tmp_path)[0]["selector"]["removal_acc"]) == {"typiclust", "learning_loss", "random"}


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


# -- the removal test removes what each strategy values (issue 7 item 10) --------------------------
CLUSTERS, CORE, HALO = 3, 6, 6  # per cluster: a dense core and a sparse halo


def _planted_labeled_outputs(seed: int) -> tuple[PoolOutputs, set[int]]:
    """Outputs over a labeled set of 36: three far-apart clusters, rows c*12 .. c*12+5 a dense core
    (std 0.05), the next 6 a sparse halo (std 3); two-class probs with distinct margins, so
    margin's order is known. Returns the outputs and the core rows."""
    g = torch.Generator().manual_seed(seed)
    per = CORE + HALO
    spread = torch.tensor([0.05] * CORE + [3.0] * HALO).repeat(CLUSTERS).unsqueeze(1)  # (36, 1)
    centres = torch.tensor([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]]).repeat_interleave(per, dim=0)
    embeddings = centres + spread * torch.randn(CLUSTERS * per, 2, generator=g)
    n = CLUSTERS * per
    delta = torch.randperm(n, generator=g).double() / (2 * n)  # distinct margins 2 * delta
    probs = torch.stack([0.5 + delta, 0.5 - delta], dim=1).float()
    core = {c * per + i for c in range(CLUSTERS) for i in range(CORE)}
    return PoolOutputs(n=n, probs=probs, embeddings=embeddings), core


class _RecordingLearner:
    """Stands in for the Learner: records the rows each probe trains on; predicts class 0."""

    def __init__(self, n: int):
        self.data = SimpleNamespace(train=SimpleNamespace(labels=torch.zeros(n, dtype=torch.long)))
        self.fits: list[torch.Tensor] = []

    def fit(self, rows, seed, **kwargs):
        self.fits.append(rows.clone())
        return None

    def infer(self, model, rows, needs, seed, **kwargs):
        return PoolOutputs(n=len(rows), probs=torch.tensor([[1.0, 0.0]]).repeat(len(rows), 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_typiclust_and_margin_removals_are_theirs_not_random(seed):
    """Each probe trains on L' minus one strategy's removal: TypiClust's removal is one core point
    of each cluster (the most typical), margin's the smallest margins of L'. Random removals
    would hit halos or repeat a cluster (all three right by chance: ~3 %), and miss margin's rows."""
    out, core = _planted_labeled_outputs(seed)
    learner = _RecordingLearner(out.n)
    selectal = SelectAL(removal=0.1, repeats=2)  # L' = 27 rows, 3 removed
    ctx = RoundContext(round=0, budget=3, outputs=out, unlabeled=torch.arange(0), labeled=torch.arange(out.n),
                       model=None, learner=learner, seed=seed, generator=torch.Generator().manual_seed(seed))
    accs, n_hold, n_remove = selectal.removal_test(ctx, out)
    assert (n_hold, n_remove) == (9, 3) and len(learner.fits) == 3 * 2
    margin = (out.probs[:, 0] - out.probs[:, 1])
    for rep in range(2):
        fits = dict(zip(["typiclust", "margin", "random"], learner.fits[3 * rep:3 * rep + 3]))
        train = set().union(*(set(rows.tolist()) for rows in fits.values()))  # L': every row some probe kept
        removed = {name: train - set(rows.tolist()) for name, rows in fits.items()}
        assert all(len(r) == n_remove for r in removed.values())
        typical = removed["typiclust"]
        assert typical <= core and len({row // (CORE + HALO) for row in typical}) == CLUSTERS
        smallest = sorted(train, key=lambda row: float(margin[row]))[:n_remove]
        assert removed["margin"] == set(smallest)


def test_probes_train_with_the_task_models_recipe():
    from autoal.learner import Learner, TrainSettings

    task = Learner(make_dataset(), TrainSettings(epochs=7, min_steps=33), torch.device("cpu"))
    assert SelectAL().probe_learner(task) is task  # default: the task model's own learner and recipe
    quick = SelectAL(probe_epochs=1, probe_min_steps=3).probe_learner(task)
    assert (quick.settings.epochs, quick.settings.min_steps) == (1, 3)
    assert quick.settings.augment == task.settings.augment and quick.settings.lr == task.settings.lr
