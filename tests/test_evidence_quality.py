"""The evidence probe (experiments/evidence_quality.py) compares AutoAL's evidence with the truth only
if it reads the evidence exactly as an AutoAL run computes it on the same labeled set, and reads the
pool's evidence from the round's own task model on the candidate's own batch."""

import math

import pytest
import torch

from autoal import runlog
from autoal.loop import first_labeled, make_learner, run
from autoal.methods.search import hardness
from autoal.rng import derive_seed
from conftest import make_dataset, tiny_config
from experiments.evidence_quality import NAME, spearman

CANDIDATES = "margin,random,entropy"


def test_spearman_is_the_rank_correlation_over_common_candidates():
    a = {"x": 0.1, "y": 0.5, "z": 0.9}
    assert spearman(a, {"x": 1.0, "y": 2.0, "z": 30.0}) == pytest.approx(1.0)
    assert spearman(a, {"x": 3.0, "y": 2.0, "z": 1.0, "extra": 9.0}) == pytest.approx(-1.0)
    assert spearman(a, {"x": 1.0, "y": 1.0, "z": 2.0}) == pytest.approx(math.sqrt(3) / 2)  # a tie: mean ranks
    assert math.isnan(spearman(a, {"x": 1.0, "y": 1.0, "z": 1.0}))


def test_the_probe_records_autoals_own_evidence_and_the_round_models_hardness_of_each_batch(tmp_path):
    data = make_dataset(n_train=120, n_test=48, n_classes=6, seed=2)
    probe_cfg = tiny_config(strategy=NAME, candidates=CANDIDATES, init_size=12, budget=6, rounds=1)
    run(probe_cfg, tmp_path / "probe", data=data)
    first = runlog.read_rounds(tmp_path / "probe")[0]
    info = first["selector"]

    # round 0's labeled set is every method's, so an AutoAL run's evidence there must be the probe's
    for mode in ("first-order", "influence"):
        autoal_cfg = tiny_config(strategy="autoal", candidates=CANDIDATES, init_size=12, budget=6, rounds=1,
                                 search_mode=mode, search_epochs=0)
        run(autoal_cfg, tmp_path / mode, data=data)
        assert runlog.read_rounds(tmp_path / mode)[0]["selector"]["column_target"] == info["evidence"][mode]

    # the probe queries margin's batch, and its pool hardness for margin is that batch's mean hardness
    # under round 0's task model, with the true labels
    labeled = first_labeled(probe_cfg, data)
    learner = make_learner(probe_cfg, data, torch.device("cpu"))
    model = learner.fit(labeled, derive_seed(probe_cfg.seed, "train", 0))
    queried = torch.tensor(first["queried"])
    probs = learner.infer(model, queried, frozenset({"probs"}), seed=0).probs
    expected = float(hardness(probs, data.train.labels[queried]).mean())
    assert abs(info["pool_evidence"]["hardness"]["margin"] - expected) < 1e-5, (info["pool_evidence"], expected)
    assert set(info["truth"]) == set(info["truth_repeat"]) == set(CANDIDATES.split(","))
    assert info["truth"] != info["truth_repeat"]  # another training seed: the truth's own noise is measurable
