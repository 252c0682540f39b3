"""torchvision sets (mnist, fashionmnist, cifar10, cifar100, svhn) from small files in each set's own on-disk format.

No test touches the network: urllib's urlopen, which every torchvision download goes through,
raises URLError here (and records that a download was tried). CIFAR and SVHN files are
MD5-checked by torchvision; the tests register the MD5s of the files they write in torchvision's
checksum tables (monkeypatched for the test only), so the real checks stay on for real users, and
one test shows the small files are refused under the real checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from autoal import runlog
from autoal.data import channel_stats, known_datasets, load_dataset
from autoal.errors import UserError
from autoal.torchvision_data import TORCHVISION_SETS
from autoal.train import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def offline(monkeypatch) -> list[str]:
    """Every urlopen fails as it does without a network; returns the URLs torchvision tried."""
    tried: list[str] = []

    def urlopen(request, *args, **kwargs):
        tried.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return tried


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- writers: each set's own on-disk format ----------------------------------------------------

def _idx(array: np.ndarray) -> bytes:
    """The idx (ubyte) format of the MNIST files: magic 0x0000 08 NDIM, big-endian int32 dims, then bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, cls: str = "MNIST", n_train: int = 30, n_test: int = 12, gz: bool = False) -> dict:
    raw = root / cls / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for i, (prefix, n) in enumerate((("train", n_train), ("t10k", n_test))):
        images = _rng(i).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) * 7 + i) % 10  # every digit, in a known order
        arrays[prefix] = (images, labels)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
            else:
                (raw / name).write_bytes(_idx(array))
    return arrays


def _pickle(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))  # the official batches are Python 2 pickles


def write_cifar10(root: Path, per_batch: int = 6, n_test: int = 10) -> tuple[np.ndarray, list, np.ndarray, list]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        data = _rng(b).integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = [int(v) for v in (np.arange(per_batch) + b) % 10]
        _pickle(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": labels,
                                             "data": data, "filenames": [f"img{b}_{i}.png" for i in range(per_batch)]})
        train_x.append(data)
        train_y += labels
    test_x = _rng(9).integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    test_y = [int(v) for v in np.arange(n_test) % 10]
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_y, "data": test_x,
                                    "filenames": [f"t{i}.png" for i in range(n_test)]})
    _pickle(folder / "batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                      "frog", "horse", "ship", "truck"],
                                      "num_cases_per_batch": per_batch, "num_vis": 3072})
    return np.concatenate(train_x), train_y, test_x, test_y


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 12) -> tuple[list, list]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = {"train": [int(v) for v in (np.arange(n_train) * 37) % 100], "test": [int(v) for v in np.arange(n_test) + 88]}
    for split, n in (("train", n_train), ("test", n_test)):
        _pickle(folder / split, {"filenames": [f"{split}{i}.png" for i in range(n)], "batch_label": split,
                                 "fine_labels": fine[split], "coarse_labels": [v // 5 for v in fine[split]],
                                 "data": _rng(n).integers(0, 256, size=(n, 3072), dtype=np.uint8)})
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return fine["train"], fine["test"]


def write_svhn(root: Path, n_train: int = 25, n_test: int = 11) -> dict:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _rng(n).integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # the .mat layout: (H, W, C, N)
        y = (np.arange(n) % 10 + 1).astype(np.uint8)[:, None]  # SVHN's labels: 1..10, 10 is the digit 0
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        arrays[split] = (x, y)
    return arrays


def register_md5s(monkeypatch, root: Path, name: str) -> None:
    """Put the MD5s of the files written under root into torchvision's checksum table (this test only)."""
    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        folder = root / cls.base_folder
        for attr in ("train_list", "test_list"):
            monkeypatch.setattr(cls, attr, [[f, _md5(folder / f)] for f, _ in getattr(cls, attr)])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})
    elif name == "svhn":
        table = {s: [url, f, _md5(root / f) if (root / f).is_file() else md5]
                 for s, (url, f, md5) in tvd.SVHN.split_list.items()}
        monkeypatch.setattr(tvd.SVHN, "split_list", table)
    else:
        raise ValueError(name)


WRITERS = {"mnist": lambda r: write_mnist(r, "MNIST"), "fashionmnist": lambda r: write_mnist(r, "FashionMNIST"),
           "cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn}


def _assert_contract(data, name: str, n_train: int, n_test: int, channels: int, size: int, n_classes: int) -> None:
    assert data.name == name and data.n_classes == n_classes
    assert data.train.images.shape == (n_train, channels, size, size) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (n_test, channels, size, size)
    assert data.train.labels.dtype == torch.int64 and data.train.labels.shape == (n_train,)
    assert len(data.val) == 0 and data.val.images.shape[1:] == (channels, size, size)
    assert (data.mean, data.std) == channel_stats(data.train.images)  # statistics of the pool only


# --- each set from its own files ---------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_family_from_idx_files(tmp_path, offline, name, cls):
    arrays = write_mnist(tmp_path, cls)
    data = load_dataset(name, tmp_path)
    _assert_contract(data, name, 30, 12, 1, 28, 10)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert data.train.labels.tolist() == arrays["train"][1].tolist()
    assert data.test.labels.tolist() == arrays["t10k"][1].tolist()
    assert data.classes == tuple(getattr(tvd, cls).classes)  # "0 - zero", ... or "T-shirt/top", ...
    assert offline == []  # files present: no download tried


def test_mnist_gz_files_are_extracted_without_network(tmp_path, offline, monkeypatch):
    """The official .gz files put into MNIST/raw by hand are used offline (torchvision extracts them)."""
    arrays = write_mnist(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    monkeypatch.setattr(tvd.MNIST, "resources", [(f, _md5(raw / f)) for f, _ in tvd.MNIST.resources])
    data = load_dataset("mnist", tmp_path)
    assert torch.equal(data.test.images[:, 0], torch.from_numpy(arrays["t10k"][0]))
    assert (raw / "train-images-idx3-ubyte").is_file() and offline == []


def test_cifar10_from_pickled_batches(tmp_path, offline, monkeypatch):
    train_x, train_y, test_x, test_y = write_cifar10(tmp_path)
    register_md5s(monkeypatch, tmp_path, "cifar10")
    data = load_dataset("cifar10", tmp_path)
    _assert_contract(data, "cifar10", 30, 10, 3, 32, 10)
    # a row is the R plane, then G, then B, each row-major: (N, 3072) -> (N, 3, 32, 32) is a reshape
    assert torch.equal(data.train.images, torch.from_numpy(train_x.reshape(-1, 3, 32, 32)))
    assert torch.equal(data.test.images, torch.from_numpy(test_x.reshape(-1, 3, 32, 32)))
    assert data.train.labels.tolist() == train_y and data.test.labels.tolist() == test_y  # batches 1..5 in order
    assert data.classes[:2] == ("airplane", "automobile") and len(data.classes) == 10  # batches.meta's names
    assert data.train.images.is_contiguous() and offline == []


def test_cifar100_uses_the_100_fine_labels(tmp_path, monkeypatch):
    fine_train, fine_test = write_cifar100(tmp_path)
    register_md5s(monkeypatch, tmp_path, "cifar100")
    data = load_dataset("cifar100", tmp_path)
    _assert_contract(data, "cifar100", 40, 12, 3, 32, 100)
    assert data.train.labels.tolist() == fine_train and data.test.labels.tolist() == fine_test
    assert int(data.test.labels.max()) == 99  # a coarse label never exceeds 19


def test_svhn_label_10_is_the_digit_0(tmp_path, monkeypatch):
    arrays = write_svhn(tmp_path)
    register_md5s(monkeypatch, tmp_path, "svhn")
    data = load_dataset("svhn", tmp_path)
    _assert_contract(data, "svhn", 25, 11, 3, 32, 10)
    x, y = arrays["train"]
    assert torch.equal(data.train.images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    expected = y[:, 0].astype(np.int64) % 10  # 1..9 stay, 10 -> 0
    assert data.train.labels.tolist() == expected.tolist()
    assert 0 in data.train.labels.tolist() and 10 not in data.train.labels.tolist()
    assert data.classes is None  # torchvision names no SVHN classes


def test_known_datasets_lists_them_and_names_are_case_insensitive(tmp_path):
    assert set(TORCHVISION_SETS) <= set(known_datasets())
    write_mnist(tmp_path)
    assert load_dataset("MNIST", tmp_path).name == "mnist"


# --- missing and bad files ---------------------------------------------------------------------

MISSING = {
    "mnist": (["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], "MNIST/raw", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashionmnist": (["train-labels-idx1-ubyte"], "FashionMNIST/raw", "fashion-mnist"),
    "cifar10": (["data_batch_1", "data_batch_5", "test_batch", "batches.meta"], "cifar-10-batches-py",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": (["train", "test", "meta"], "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "svhn": (["train_32x32.mat", "test_32x32.mat"], "", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat"),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_SETS))
def test_missing_files_offline_one_line_naming_files_folder_and_url(tmp_path, offline, name):
    root = tmp_path / "data"
    with pytest.raises(UserError) as info:
        load_dataset(name, root)
    message = str(info.value)
    files, folder, url = MISSING[name]
    assert "\n" not in message and message.startswith(f"{name}: missing ")
    assert all(f in message for f in files)
    assert f"in {root / folder}".rstrip("/") in message and url in message
    assert "run once with a network" in message and "offline (test)" in message
    assert offline, "the download should have been tried"


def test_only_the_missing_file_is_named(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    register_md5s(monkeypatch, tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserError, match=r"missing data_batch_3 in \S*cifar-10-batches-py;") as info:
        load_dataset("cifar10", tmp_path)
    assert "data_batch_1" not in str(info.value)


def test_small_files_fail_torchvision_real_md5_checks(tmp_path):
    """Without registering their MD5s the test files are not the official ones: torchvision's check is live."""
    write_svhn(tmp_path)
    with pytest.raises(UserError, match=r"bad train_32x32.mat \(MD5 is not torchvision's e26dedcc434d2e4c54c9b2d4a06d8373\), "
                                        r"test_32x32.mat .* not the official files") as info:
        load_dataset("svhn", tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content,error", [(b"\x00\x00\x08\x03trunc", "ValueError: invalid literal"),  # header cut short
                                           (b"junk", "AssertionError: a file is not in its format")])  # torchvision asserts
def test_unreadable_idx_file_is_one_line_not_a_traceback(tmp_path, content, error):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(content)
    with pytest.raises(UserError, match=rf"mnist: cannot read the files in \S*MNIST/raw \({error}.*\); delete them") as info:
        load_dataset("mnist", tmp_path)
    assert "\n" not in str(info.value)


def test_size_other_than_native_is_refused(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    register_md5s(monkeypatch, tmp_path, "cifar10")
    assert load_dataset("cifar10", tmp_path, size=32).image_size == 32
    assert load_dataset("cifar10", tmp_path, size=28).image_size == 32  # --size's default: native size
    with pytest.raises(UserError, match="cifar10 images are 32x32 and are not resized; drop --size or pass --size 32"):
        load_dataset("cifar10", tmp_path, size=64)


# --- through the command line ------------------------------------------------------------------

def _cli_args(root: Path, out: Path, dataset: str) -> list[str]:
    return [f"--dataset={dataset}", f"--data-root={root}", "--strategy=entropy", "--init-size=6", "--budget=4",
            "--rounds=1", "--epochs=1", "--min-steps=2", "--backbone=cnn", "--device=cpu", "--mc-samples=2",
            f"--out={out}", "--no-progress"]


def test_cli_tiny_run_on_cifar10(tmp_path, monkeypatch, offline, capsys):
    write_cifar10(tmp_path / "data")
    register_md5s(monkeypatch, tmp_path / "data", "cifar10")
    assert main(_cli_args(tmp_path / "data", tmp_path / "run", "cifar10")) == 0
    assert [r["labels"] for r in runlog.read_rounds(tmp_path / "run")] == [6, 10]
    assert runlog.read_json(tmp_path / "run" / runlog.CONFIG)["dataset"] == "cifar10" and offline == []


def test_cli_missing_files_exit_2_with_one_line(tmp_path, capsys):
    assert main(_cli_args(tmp_path / "data", tmp_path / "run", "cifar100")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cifar100: missing train, test, meta in ")
    assert str(tmp_path / "data" / "cifar-100-python") in lines[0] and not (tmp_path / "run").exists()


@pytest.mark.slow  # ~15 s on a loaded 2-core machine: importing torchvision in a fresh process
def test_python_m_autoal_train_offline_missing_svhn(tmp_path):
    """The real process boundary: exit code 2, one stderr line, no traceback (network cut by sitecustomize)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import urllib.error, urllib.request\n"
        "def _offline(*args, **kwargs):\n"
        "    raise urllib.error.URLError('offline (test)')\n"
        "urllib.request.urlopen = _offline\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "autoal.train", *_cli_args(tmp_path / "d", tmp_path / "run", "svhn")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: svhn: missing train_32x32.mat, test_32x32.mat in {tmp_path / 'd'}")
    assert "offline (test)" in lines[0] and "ufldl.stanford.edu/housenumbers/train_32x32.mat" in lines[0]
