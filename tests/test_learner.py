"""Task-model training: the steps rule, the learning-rate schedule, augmentation inside fit."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from autoal.learner import Learner, TrainSettings, balanced_weights, learning_rate, train_steps
from conftest import make_dataset


def test_steps_rule_known_values():
    assert train_steps(20, 32, 80, 200) == 200  # one batch: the floor
    assert train_steps(100, 32, 80, 200) == 320  # 80 epochs of 4 batches
    assert train_steps(220, 32, 80, 200) == 560
    assert train_steps(220, 32, 50, 100) == 350  # the recipe before issue 8
    assert train_steps(0, 32, 80, 200) == 0


def test_default_steps_stay_within_twice_the_old_recipe():
    new, old = TrainSettings(), dict(epochs=50, min_steps=100)
    for n in range(20, 1001, 20):
        ratio = train_steps(n, new.batch_size, new.epochs, new.min_steps) / train_steps(n, 32, **old)
        assert 1.0 <= ratio <= 2.0, n


def test_cosine_schedule_known_values():
    steps, base = 100, 0.01
    assert learning_rate(0, steps, base, "cosine") == pytest.approx(base)
    assert learning_rate(50, steps, base, "cosine") == pytest.approx(base / 2)
    assert learning_rate(25, steps, base, "cosine") == pytest.approx(base * (1 + math.cos(math.pi / 4)) / 2)
    rates = [learning_rate(i, steps, base, "cosine") for i in range(steps)]
    assert all(a > b for a, b in zip(rates, rates[1:])) and 0 < rates[-1] < base / 1000


def test_constant_schedule_and_unknown_schedule():
    assert [learning_rate(i, 10, 0.1, "constant") for i in (0, 5, 9)] == [0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match="cosine"):
        learning_rate(0, 10, 0.1, "step")


def _recorded_fit(settings: TrainSettings, n: int = 20) -> list[float]:
    """The learning rate of every optimiser step of one fit."""
    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
    try:
        Learner(make_dataset(), settings, torch.device("cpu")).fit(torch.arange(n), seed=0)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_fit_takes_the_rule_steps_at_the_scheduled_rates(schedule):
    settings = TrainSettings(epochs=3, min_steps=4, batch_size=8, lr=0.01, schedule=schedule)
    seen = _recorded_fit(settings, n=20)  # 3 epochs of ceil(20 / 8) = 3 batches: 9 steps
    assert len(seen) == train_steps(20, 8, 3, 4) == 9
    assert seen == pytest.approx([learning_rate(i, 9, 0.01, schedule) for i in range(9)])


def test_augmentation_changes_training_and_is_seeded():
    def weights(augment: str, seed: int = 0) -> torch.Tensor:
        settings = TrainSettings(epochs=1, min_steps=5, batch_size=8, augment=augment)
        model = Learner(make_dataset(), settings, torch.device("cpu")).fit(torch.arange(16), seed=seed)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.testing.assert_close(weights("shift"), weights("shift"), rtol=0, atol=0)
    assert not torch.equal(weights("shift"), weights("none"))
    assert not torch.equal(weights("shift-flip"), weights("shift"))


def test_balanced_weights_known_values():
    w = balanced_weights(torch.tensor([0, 0, 0, 2]))  # class 1 absent: two classes share the weight
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    assert float(w.mean()) == pytest.approx(1.0)
    torch.testing.assert_close(balanced_weights(torch.tensor([1, 0, 1, 0])), torch.ones(4))


def test_balanced_class_weights_weight_the_loss_and_none_leaves_it_alone():
    """class_weights=balanced trains exactly as the explicit balanced sample weights do, and differs
    from plain training on a lopsided set; on a set with equal classes it changes nothing."""
    data = make_dataset()
    lopsided = torch.cat([(data.train.labels == 0).nonzero().squeeze(1)[:9],
                          (data.train.labels == 1).nonzero().squeeze(1)[:3]])

    def weights(class_weights: str, rows: torch.Tensor, sample_weight=None) -> torch.Tensor:
        settings = TrainSettings(epochs=1, min_steps=6, batch_size=4, class_weights=class_weights)
        model = Learner(data, settings, torch.device("cpu")).fit(rows, seed=0, sample_weight=sample_weight)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    explicit = balanced_weights(data.train.labels[lopsided])
    torch.testing.assert_close(weights("balanced", lopsided), weights("none", lopsided, explicit), rtol=0, atol=0)
    assert not torch.equal(weights("balanced", lopsided), weights("none", lopsided))
    even = torch.cat([(data.train.labels == c).nonzero().squeeze(1)[:3] for c in range(2)])
    torch.testing.assert_close(weights("balanced", even), weights("none", even), rtol=0, atol=1e-6)


def test_fit_reads_only_the_rows_it_is_given():
    """No peeking: training touches the pool rows it was handed, never the test split."""
    data = make_dataset()
    learner = Learner(data, TrainSettings(epochs=1, min_steps=3, batch_size=8), torch.device("cpu"))
    asked: list[torch.Tensor] = []
    batch = learner.batch

    def spy(split, rows):
        assert split is data.train
        asked.append(rows)
        return batch(split, rows)

    learner.batch = spy
    rows = torch.tensor([3, 7, 11, 19, 23, 30])
    learner.fit(rows, seed=0)
    assert asked and set(torch.cat(asked).tolist()) <= set(rows.tolist())


def test_the_run_setting_reaches_the_learner():
    from autoal.loop import make_learner
    from conftest import tiny_config

    learner = make_learner(tiny_config(class_weights="balanced"), make_dataset(), torch.device("cpu"))
    assert learner.settings.class_weights == "balanced"
