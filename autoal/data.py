"""Datasets: MedMNIST (official npz files), sklearn's bundled 8x8 digits, any npz in MedMNIST layout,
and torchvision's MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN (autoal/torchvision_data.py).

Images are kept as uint8 (N, C, H, W) and normalised per batch on the device, so even the
224-pixel sets cost one byte per pixel in memory. The train split is the pool, the test split
is for evaluation; the val split is there for whoever needs it.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from autoal.errors import UserError

log = logging.getLogger(__name__)

#: Single-label 2D MedMNIST sets this framework runs on.
MEDMNIST_2D = ("pathmnist", "organcmnist", "organamnist", "organsmnist", "tissuemnist", "bloodmnist",
               "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist")
MEDMNIST_SIZES = (28, 64, 128, 224)
UNSUPPORTED = {
    "chestmnist": "chestmnist is multi-label (14 findings per image); multi-label active learning is not supported yet",
}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    images: Tensor  # (N, C, H, W) uint8
    labels: Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class ImageDataset:
    name: str
    train: Split  # the pool
    val: Split
    test: Split
    n_classes: int
    mean: tuple[float, ...]  # per channel, of train images scaled to [0, 1]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[2]

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) on any device -> float32 standardised with the train statistics."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std


def known_datasets() -> list[str]:
    from autoal.torchvision_data import TORCHVISION_SETS  # here, not at the top: it imports this module

    return ["digits", *MEDMNIST_2D, *TORCHVISION_SETS, "npz:PATH"]


def load_dataset(name: str, data_root: str | Path = "data", size: int = 28) -> ImageDataset:
    """Load a dataset by its CLI name; raises UserError with the fix on bad input."""
    key = name.strip()
    if key == "digits":
        return _digits()
    if key.startswith("npz:"):
        path = Path(key[4:]).expanduser()
        return _from_npz(path, name=path.stem)
    lowered = key.lower()
    if lowered in UNSUPPORTED:
        raise UserError(f"{UNSUPPORTED[lowered]}; pick a single-label set: {', '.join(MEDMNIST_2D)}")
    if lowered.endswith("3d"):
        raise UserError(f"{lowered} is a 3D MedMNIST set; only 2D sets are supported: {', '.join(MEDMNIST_2D)}")
    if lowered in MEDMNIST_2D:
        return _medmnist(lowered, Path(data_root).expanduser(), size)
    from autoal.torchvision_data import TORCHVISION_SETS, load_torchvision

    if lowered in TORCHVISION_SETS:  # mnist, fashionmnist, cifar10, cifar100, svhn
        return load_torchvision(lowered, data_root, size)
    raise UserError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")


def medmnist_file(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _medmnist(flag: str, root: Path, size: int) -> ImageDataset:
    from medmnist import INFO

    if size not in MEDMNIST_SIZES:
        raise UserError(f"--size {size} is not a MedMNIST size; use one of {', '.join(map(str, MEDMNIST_SIZES))}")
    path = root / medmnist_file(flag, size)
    if not path.is_file():
        suffix = "" if size == 28 else f"_{size}"
        info = INFO[flag]
        url = info[f"url{suffix}"].removesuffix("?download=1")
        raise UserError(f"missing {path}: download {url} (MD5 {info[f'MD5{suffix}']}) into {root} "
                        f"or pass --data-root DIR holding {path.name}")
    # the set's own class count: labels are checked against it, not inferred from the largest one
    return _from_npz(path, name=flag if size == 28 else f"{flag}_{size}", n_classes=len(INFO[flag]["label"]),
                     fix="re-download the official file")


def _from_npz(path: Path, name: str, n_classes: int | None = None,
              fix: str = "save integer class indices 0..C-1") -> ImageDataset:
    """An npz in MedMNIST layout. ``n_classes`` None: the classes are 0..max label, all present in train."""
    if not path.is_file():
        raise UserError(f"no npz file at {path}; give --dataset npz:PATH with keys "
                        f"train_images, train_labels, test_images, test_labels (val_* optional)")
    try:
        archive = np.load(path)  # allow_pickle stays False: an object array inside is refused, never run
    except Exception as exc:  # corrupt or not an npz at all
        raise UserError(f"cannot read {path} as an npz file ({exc}); re-download or re-create it") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array renamed .npz
        raise UserError(f"{path} is a single .npy array, not an npz archive; save it with numpy.savez "
                        f"under the keys train_images, train_labels, test_images, test_labels")
    with archive:
        required = ["train_images", "train_labels", "test_images", "test_labels"]
        required += [f"val_{k}" for k in ("images", "labels") if "val_images" in archive.files or "val_labels" in archive.files]
        missing = [k for k in required if k not in archive.files]
        if missing:
            raise UserError(f"{path} lacks keys {', '.join(missing)}; MedMNIST layout has "
                            f"{{train,val,test}}_images and {{train,val,test}}_labels (found: {', '.join(archive.files)})")
        try:
            _check_declared_sizes(path, archive)  # before any member is read whole
            splits = {s: _split(path, s, archive[f"{s}_images"], archive[f"{s}_labels"])
                      for s in SPLITS if f"{s}_images" in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            # object arrays (np.load refuses them without pickle), corrupted members, bad CRCs
            raise UserError(f"{path}: cannot read its arrays ({_first_line(exc)}); re-download or re-create it, "
                            f"with plain uint8 images and integer labels") from None
        except MemoryError:
            raise UserError(f"{path}: its arrays do not fit in memory; use a smaller --size or a machine "
                            f"with more memory") from None
    if "val" not in splits:
        empty = splits["train"]
        splits["val"] = Split(empty.images[:0], empty.labels[:0])
    shapes = {s: tuple(sp.images.shape[1:]) for s, sp in splits.items() if len(sp)}
    if len(set(shapes.values())) > 1:
        raise UserError(f"{path}: splits have different image shapes {shapes}; all must match")
    n_classes = check_labels(path, name, splits, n_classes, fix)
    return _assemble(name, splits["train"], splits["val"], splits["test"], n_classes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_declared_sizes(path: Path, archive: np.lib.npyio.NpzFile) -> None:
    """Each member's .npy header must not declare more bytes than the member holds.

    A crafted or damaged header (say a 10^13-byte array) otherwise makes numpy allocate it
    before noticing the data is not there: a MemoryError, or a machine brought to its knees.
    """
    for info in archive.zip.infolist():
        with archive.zip.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(member) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(member))
            except ValueError as exc:
                raise UserError(f"{path}: member {info.filename} is not an .npy array ({_first_line(exc)}); "
                                f"re-download or re-create the file") from None
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            held = info.file_size - member.tell()
        if not dtype.hasobject and declared > held:
            raise UserError(f"{path}: member {info.filename} declares a {shape} {dtype} array ({declared:,} bytes) "
                            f"but holds {held:,} bytes; the file is corrupt, re-download or re-create it")


def check_labels(path: Path, name: str, splits: dict[str, Split], n_classes: int | None, fix: str) -> int:
    """The class count, after checking every label is a class index and the pool has two classes at least.

    Without a declared count the classes are 0..max label and each must occur in the train split:
    a stray 255 among ten digits would otherwise make a 256-class model (and 10^9 a 512 GB one).
    """
    if not len(splits["train"]) or not len(splits["test"]):
        raise UserError(f"{path}: the train and test splits must not be empty")
    present = {s: torch.unique(sp.labels) for s, sp in splits.items() if len(sp)}
    top = max(int(u.max()) for u in present.values())
    if n_classes is not None:
        for s, u in present.items():
            if int(u.max()) >= n_classes:
                raise UserError(f"{path}: {s}_labels has label {int(u.max())} but {name} has {n_classes} classes "
                                f"(0..{n_classes - 1}); {fix}")
    else:
        n_classes = top + 1
        absent = sorted(set(range(min(n_classes, len(present["train"]) + 6))) - set(present["train"].tolist()))
        n_absent = n_classes - len(present["train"])
        if n_absent > 0:
            shown = ", ".join(map(str, absent[:5])) + (", ..." if n_absent > 5 else "")
            raise UserError(f"{path}: labels go up to {top}, but {n_absent} of the classes 0..{top} never occur "
                            f"in train_labels ({shown}); class indices must be 0..C-1 with every class in the pool")
    if len(present["train"]) < 2:
        only = present["train"].tolist()
        raise UserError(f"{path}: train_labels hold a single class ({only[0]}); active learning needs at least "
                        f"2 classes in the pool")
    return n_classes


def _split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> Split:
    where = f"{path}: {split}"
    if images.ndim == 3:
        images = images[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    else:
        raise UserError(f"{where}_images has shape {images.shape}; expected (N,H,W) or (N,H,W,3) uint8")
    if images.dtype != np.uint8:
        raise UserError(f"{where}_images has dtype {images.dtype}; expected uint8 pixels in 0..255")
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise UserError(f"{where}_labels has shape {labels.shape}: multi-label data is not supported yet; "
                        f"give one class index per image, shape (N,1)")
    labels = labels.reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise UserError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels; they must match")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise UserError(f"{where}_labels must be non-negative integer class indices (got dtype {labels.dtype})")
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)))


def _assemble(name: str, train: Split, val: Split, test: Split, n_classes: int) -> ImageDataset:
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"dataset {name}: the train and test splits must not be empty")
    mean, std = channel_stats(train.images)  # statistics of the pool only
    return ImageDataset(name, train, val, test, n_classes, mean, std)


def channel_stats(images: Tensor, chunk: int = 2048) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0,1], in chunks (no float copy of the set)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].double().div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.pow(2).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-6).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _digits() -> ImageDataset:
    """sklearn's 1,797 real 8x8 digits; a fixed 70/10/20 train/val/test split (seed 0, not the run seed)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    n_test, n_val = round(0.2 * len(labels)), round(0.1 * len(labels))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    split = {k: Split(torch.from_numpy(images[v]), torch.from_numpy(labels[v])) for k, v in parts.items()}
    return _assemble("digits", split["train"], split["val"], split["test"], 10)
