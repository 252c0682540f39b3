"""The initial labeled set: uniform and diverse (RotNet representation + k-means++ seeding), its cache,
its metrics, and its use by the loop."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from autoal import initial, runlog
from autoal.initial import (RotNetSettings, class_distribution_distance, diverse_initial, initial_set,
                            mean_pairwise_distance, random_initial, rotate_batch, rotnet_representation)
from autoal.loop import initial_labeled, run
from conftest import make_dataset, tiny_config

FAST = RotNetSettings(steps=4, batch_images=8, eval_batch_size=32)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets an empty cache of its own and the short RotNet recipe."""
    monkeypatch.setenv(initial.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(initial, "DEFAULT_ROTNET", FAST)


def test_random_initial_is_the_old_uniform_set():
    expected = torch.randperm(100, generator=initial.generator(3, "initial-set"))[:10].sort().values
    assert torch.equal(random_initial(100, 10, 3), expected)
    assert torch.equal(initial_labeled(100, 10, 3), expected)
    cfg = tiny_config(seed=3, init_size=10)
    assert torch.equal(initial_set(cfg, make_dataset(n_train=100)), expected)  # init_strategy random


def test_rotate_batch_gives_the_four_rotations_and_their_labels():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    views, labels = rotate_batch(torch.cat([x, x + 10]))
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert views[0].flatten().tolist() == [1, 2, 3, 4]
    assert views[2].flatten().tolist() == [2, 4, 1, 3]  # 90 degrees counter-clockwise
    assert views[4].flatten().tolist() == [4, 3, 2, 1]  # 180 degrees
    assert views[7].flatten().tolist() == [13, 11, 14, 12]  # 270 degrees, second image
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.zeros(1, 1, 2, 3))


def test_diverse_initial_covers_separated_clusters():
    """Four tight, far-apart clusters of 25: D^2 sampling of 4 takes one from each nearly always."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    x = (centres.repeat_interleave(25, dim=0) + 0.1 * torch.randn(100, 2, generator=g))
    covered = [len(set((diverse_initial(x, 4, seed) // 25).tolist())) for seed in range(20)]
    assert covered == [4] * 20
    picks = diverse_initial(x, 10, 5)
    assert torch.equal(picks, diverse_initial(x, 10, 5)) and len(picks.unique()) == 10
    assert torch.equal(picks, picks.sort().values)
    assert not torch.equal(picks, diverse_initial(x, 10, 6))


def test_diverse_set_depends_on_seed_and_pool_not_on_the_strategy():
    data = make_dataset(n_train=48)
    a = initial_set(tiny_config(init_strategy="diverse", strategy="entropy"), data)
    b = initial_set(tiny_config(init_strategy="diverse", strategy="margin", budget=6), data)
    assert torch.equal(a, b) and len(a) == 8 and len(a.unique()) == 8
    assert not torch.equal(a, initial_set(tiny_config(init_strategy="diverse", seed=1), data))
    assert not torch.equal(a, random_initial(48, 8, 0))


def test_the_representation_is_trained_once_then_read_from_the_cache(monkeypatch, tmp_path):
    data = make_dataset(n_train=40)
    calls = []
    real = initial.train_rotnet
    monkeypatch.setattr(initial, "train_rotnet", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = rotnet_representation(data, "cnn", 0, CPU, FAST)
    again = rotnet_representation(data, "cnn", 0, CPU, FAST)
    assert calls == [1] and torch.equal(first, again) and first.shape == (40, 128)
    rotnet_representation(data, "cnn", 1, CPU, FAST)  # another seed
    rotnet_representation(data, "cnn", 0, CPU, replace(FAST, steps=5))  # other settings
    other_pool = make_dataset(n_train=40, seed=3)
    rotnet_representation(other_pool, "cnn", 0, CPU, FAST)  # other images
    assert len(calls) == 4
    assert len(list((tmp_path / "cache" / "rotnet").glob("*.npy"))) == 4
    assert not list((tmp_path / "cache" / "rotnet").glob(".*"))  # no temporary file left behind


def test_a_damaged_cache_file_is_retrained_and_replaced(tmp_path):
    data = make_dataset(n_train=40)
    first = rotnet_representation(data, "cnn", 0, CPU, FAST)
    [path] = (tmp_path / "cache" / "rotnet").glob("*.npy")
    path.write_bytes(b"not an npy file")
    assert torch.equal(rotnet_representation(data, "cnn", 0, CPU, FAST), first)  # same seed: same training
    assert np.load(path).shape == (40, 128)


def test_two_workers_at_once_train_once(monkeypatch):
    """The second caller waits on the key's lock and reads what the first wrote."""
    data = make_dataset(n_train=40)
    calls = []
    real = initial.train_rotnet

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # long enough for the other thread to reach the lock
        return real(*args, **kwargs)

    monkeypatch.setattr(initial, "train_rotnet", slow)
    results = [None, None]

    def work(i):
        results[i] = rotnet_representation(data, "cnn", 0, CPU, FAST)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and torch.equal(results[0], results[1])


def test_an_unwritable_cache_costs_only_the_caching(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(initial.CACHE_ENV, str(blocker))  # a file where the folder should be
    rep = rotnet_representation(make_dataset(n_train=40), "cnn", 0, CPU, FAST)
    assert rep.shape == (40, 128)


def test_rotnet_learns_the_rotations():
    """Real digits (upright, unlike the synthetic quadrant images, whose rotations are other classes'
    images): 40 short steps tell the four rotations apart far above chance (0.25; measured 0.74)."""
    from autoal.data import load_dataset

    _, accuracy = initial.train_rotnet(load_dataset("digits"), "cnn", 0, CPU, RotNetSettings(steps=40, batch_images=8))
    assert accuracy > 0.5


def test_class_distribution_distance_known_values():
    pool = torch.tensor([0, 0, 1, 1])  # p = (0.5, 0.5)
    d = class_distribution_distance(torch.tensor([0, 0, 0, 1]), pool, 2)  # p~ = (0.75, 0.25)
    assert d["max"] == pytest.approx(0.25) and d["tv"] == pytest.approx(0.25)
    assert d["kl"] == pytest.approx(0.75 * np.log(1.5) + 0.25 * np.log(0.5))
    assert class_distribution_distance(torch.tensor([1, 0]), pool, 2) == {"max": 0.0, "tv": 0.0, "kl": 0.0}
    assert class_distribution_distance(torch.tensor([0, 0]), torch.tensor([0, 1, 2, 2]), 3)["max"] == \
        pytest.approx(0.75)


def test_mean_pairwise_distance_known_values():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # sides 3, 4, 5
    assert mean_pairwise_distance(x) == pytest.approx(4.0)
    assert mean_pairwise_distance(x[:1]) == 0.0


def test_the_loop_starts_from_the_diverse_set(tmp_path):
    data = make_dataset(n_train=64)
    cfg = tiny_config(init_strategy="diverse", rounds=1)
    phases = []
    run(cfg, tmp_path / "run", data=data, on_progress=lambda phase, done, total: phases.append(phase))
    assert "rotnet" in phases  # the RotNet's training draws a progress bar, not 30 silent seconds
    state = runlog.load_checkpoint(tmp_path / "run")
    queried = {i for r in state["records"] for i in r["queried"]}
    start = set(state["labeled"].nonzero().squeeze(1).tolist()) - queried
    assert start == set(initial_set(cfg, data).tolist())
    assert runlog.read_json(tmp_path / "run" / runlog.CONFIG)["init_strategy"] == "diverse"
