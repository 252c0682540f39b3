"""Shared fixtures: tiny synthetic data that a model can learn in a few steps, on the CPU."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from autoal.config import RunConfig
from autoal.data import ImageDataset, Split, _assemble

torch.set_num_threads(1)  # tests are many tiny ops: threads cost more than they give
# Deterministic algorithms on for the whole session (and in every tiny_config run): an op without a
# deterministic version fails a test here instead of making a GPU run vary.
torch.use_deterministic_algorithms(True)


def _install_planted_plugin() -> None:
    """The planted candidates (anti_margin, noise_a, noise_b in experiments/planted.py) as a third-party
    plug-in would arrive: an installed distribution's entry point in the ``autoal.candidates`` group,
    found by importlib.metadata on sys.path. The registry loads it with the built-ins."""
    root = Path(tempfile.mkdtemp(prefix="autoal-plugin-"))
    info = root / "autoal_planted-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autoal-planted\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[autoal.candidates]\nplanted = experiments.planted\n")
    sys.path.append(str(root))


_install_planted_plugin()


def synthetic_arrays(n: int, n_classes: int = 4, size: int = 8, channels: int = 1,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W[, 3]) and labels (N, 1): class c lights up its own quadrant, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    images = rng.integers(0, 60, size=(n, size, size, channels)).astype(np.float64)
    half = size // 2
    for i, c in enumerate(labels):
        r, q = divmod(int(c) % 4, 2)
        images[i, r * half:(r + 1) * half, q * half:(q + 1) * half] += 150 + 20 * (int(c) // 4)
    images = images.clip(0, 255).astype(np.uint8)
    if channels == 1:
        images = images[..., 0]
    return images, labels.reshape(-1, 1).astype(np.int64)


def write_medmnist_npz(path, n_train: int = 64, n_val: int = 16, n_test: int = 32, n_classes: int = 4,
                       size: int = 8, channels: int = 1, seed: int = 0):
    """An npz in the official MedMNIST layout (keys {train,val,test}_{images,labels})."""
    arrays = {}
    for i, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        images, labels = synthetic_arrays(n, n_classes, size, channels, seed + i)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    np.savez_compressed(path, **arrays)
    return path


def make_dataset(n_train: int = 64, n_test: int = 32, n_classes: int = 4, size: int = 8,
                 channels: int = 1, seed: int = 0) -> ImageDataset:
    def split(n: int, s: int) -> Split:
        images, labels = synthetic_arrays(n, n_classes, size, channels, s)
        images = images[:, None] if channels == 1 else images.transpose(0, 3, 1, 2)
        return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.reshape(-1)))

    return _assemble("synthetic", split(n_train, seed), split(16, seed + 1), split(n_test, seed + 2), n_classes)


@pytest.fixture
def tiny_dataset() -> ImageDataset:
    return make_dataset()


def tiny_config(**overrides) -> RunConfig:
    """A run that takes a second or two: 64-sample pool, 2 rounds, few steps."""
    settings = dict(dataset="synthetic", strategy="entropy", init_size=8, budget=4, rounds=2, epochs=2,
                    min_steps=10, batch_size=16, mc_samples=4, backbone="cnn", device="cpu", seed=0,
                    deterministic=True)
    settings.update(overrides)
    return RunConfig(**settings)


def hold_lock_in_another_process(folder, what: str = "run") -> subprocess.Popen:
    """A second process (a ``what``: run, sweep, labeling page) that holds ``folder``'s lock until it is
    killed (60 s at most)."""
    code = textwrap.dedent(f"""
        import time
        from autoal import runlog
        with runlog.hold_lock({str(folder)!r}, {what!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture(autouse=True)
def fresh_event_file_counter(monkeypatch):
    """Every test counts TensorBoard event files from 0, as a new process does.

    TensorBoard names a writer's file ``events.out.tfevents.<second>.<host>.<pid>.<n>`` with a counter n
    per process, and readers take a folder's files in name order. A resumed run adds a file. Within one
    second, after a long test session, files 9 and 10 sort as "10" < "9", and the reader then drops the
    newer file's events as purged: a test's own resumes would fail by the order the suite ran in. A
    person's resume is a new process, where n starts at 0 again.
    """
    try:
        from tensorboard.summary.writer import event_file_writer
    except ImportError:
        return
    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(0))
