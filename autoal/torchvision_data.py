"""MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and SVHN through torchvision's own dataset classes.

``--data-root`` is torchvision's ``root``: the files sit where torchvision puts them
(``ROOT/MNIST/raw/``, ``ROOT/FashionMNIST/raw/``, ``ROOT/cifar-10-batches-py/``,
``ROOT/cifar-100-python/``, ``ROOT/train_32x32.mat``). Files that are there are read without the
network; missing ones are downloaded where a network exists. Offline, the error names the missing
files, their folder and the URL torchvision downloads from. torchvision's MD5 checks stay on:
CIFAR and SVHN files must be the official ones (MNIST's raw files are only checked for presence,
as torchvision does).

Splits: the official train split is the pool and the official test split is for evaluation (SVHN's
"extra" split is not used). The val split is empty: the published pools are the whole train
splits (CIFAR 50,000, SVHN 73,257, MNIST 60,000), and a labeled val set carved from the pool
would shrink it and hand out labels the budget never paid for. Whoever needs held-out data holds
out part of the labeled set.

Sizes: the images keep their native size (28 for the MNISTs, 32 for CIFAR and SVHN), the size the
papers train ResNet-18 on. ``--size`` is MedMNIST's flag; here it may stay at its default (28) or
name the native size, and anything else is refused: resizing would change the benchmark and, with
images kept as uint8 in memory, cost (size/32)^2 times the memory (CIFAR-10 at 224: 7.5 GB).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import torch

from autoal.data import ImageDataset, Split, _assemble
from autoal.errors import UserError

log = logging.getLogger(__name__)

#: --size's default (MedMNIST's native size); leaving the flag alone means "native size" here.
DEFAULT_SIZE = 28


@dataclass(frozen=True)
class TorchvisionSet:
    cls: str          # the class in torchvision.datasets
    n_classes: int    # fixed by the dataset, not by the labels seen
    size: int         # native image size


TORCHVISION_SETS: dict[str, TorchvisionSet] = {
    "mnist": TorchvisionSet("MNIST", 10, 28),
    "fashionmnist": TorchvisionSet("FashionMNIST", 10, 28),
    "cifar10": TorchvisionSet("CIFAR10", 10, 32),
    "cifar100": TorchvisionSet("CIFAR100", 100, 32),  # the 100 fine labels, as torchvision reads them
    "svhn": TorchvisionSet("SVHN", 10, 32),           # torchvision maps SVHN's label 10 (digit 0) to 0
}


def load_torchvision(name: str, data_root: str | Path, size: int = DEFAULT_SIZE) -> ImageDataset:
    """One of TORCHVISION_SETS as an ImageDataset; UserError (one line, with the fix) on bad input."""
    spec = TORCHVISION_SETS[name]
    if size not in (DEFAULT_SIZE, spec.size):
        raise UserError(f"{name} images are {spec.size}x{spec.size} and are not resized; "
                        f"drop --size or pass --size {spec.size}")
    root = Path(data_root).expanduser()
    cls = _dataset_class(spec)
    opened = _open(name, cls, root, train=True)
    train = _split(name, spec, opened)
    test = _split(name, spec, _open(name, cls, root, train=False))
    empty = Split(train.images[:0], train.labels[:0])
    names = getattr(opened, "classes", None)  # SVHN has none: its classes are the digits
    classes = tuple(names) if names and len(names) == spec.n_classes else None
    return _assemble(name, train, empty, test, spec.n_classes, classes)


def expected_files(name: str, root: Path) -> list[tuple[Path, str | None]]:
    """The files torchvision needs for ``name`` under ``root``, each with the MD5 it checks (None: presence only).

    Read from torchvision's class attributes at call time, so they follow the installed torchvision.
    """
    cls = _dataset_class(TORCHVISION_SETS[name])
    if name in ("mnist", "fashionmnist"):
        raw = root / cls.__name__ / "raw"  # torchvision keeps the extracted idx files, checks only that they exist
        return [(raw / Path(gz).stem, None) for gz, _ in cls.resources]
    if name in ("cifar10", "cifar100"):
        folder = root / cls.base_folder
        files = [(folder / f, md5) for f, md5 in cls.train_list + cls.test_list]
        return files + [(folder / cls.meta["filename"], cls.meta["md5"])]
    return [(root / cls.split_list[s][1], cls.split_list[s][2]) for s in ("train", "test")]


def problems(files: list[tuple[Path, str | None]]) -> list[Path | str]:
    """Missing files (their paths) and files whose MD5 differs (a note), in the given order."""
    from torchvision.datasets.utils import calculate_md5

    found: list[Path | str] = []
    for path, md5 in files:
        if not path.is_file():
            found.append(path)
        elif md5 is not None and calculate_md5(path) != md5:
            found.append(f"{path.name} (MD5 is not torchvision's {md5})")
    return found


def missing_message(name: str, root: Path, cause: BaseException | None) -> str:
    """One line: which files are missing or bad, the folder they go in, and how to get them."""
    issues = problems(expected_files(name, root))
    missing = [p for p in issues if isinstance(p, Path)]
    bad = [p for p in issues if isinstance(p, str)]
    folder = missing[0].parent if missing else expected_files(name, root)[0][0].parent
    what = []
    if missing:
        what.append(f"missing {', '.join(p.name for p in missing)} in {folder}")
    if bad:
        what.append(f"bad {', '.join(bad)} in {folder}: corrupt, partial or not the official files")
    if not what:  # the files check out but torchvision still refused them: say what it said
        what.append(f"torchvision cannot load it from {folder}")
    tried = ""
    if isinstance(cause, OSError) or "Error downloading" in str(cause):  # offline, unreachable, unwritable root
        tried = f"; downloading failed ({_one_line(cause)})"  # (torchvision wraps MNIST's URLErrors in RuntimeError)
    elif cause is not None:
        tried = f"; torchvision said: {_one_line(cause)}"
    return f"{name}: {'; '.join(what)}{tried}; {_how_to_get(name, root)}"


def _how_to_get(name: str, root: Path) -> str:
    cls = _dataset_class(TORCHVISION_SETS[name])
    again = f"or run once with a network and --data-root {root} (torchvision downloads them there)"
    if name in ("mnist", "fashionmnist"):
        raw = root / cls.__name__ / "raw"
        gz = ", ".join(f for f, _ in cls.resources)
        return f"put {gz} from {cls.mirrors[0]} into {raw} (they are extracted on the next run) {again}"
    if name in ("cifar10", "cifar100"):
        return f"download {cls.url} (MD5 {cls.tgz_md5}) into {root} (it is extracted on the next run) {again}"
    urls = " and ".join(cls.split_list[s][0] for s in ("train", "test"))
    return f"download {urls} into {root} {again}"


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """The cause in one short line. torchvision's MNIST error spans lines ("Error downloading F:",
    then "Tried MIRROR, got:" and the error, per mirror): keep only the distinct errors."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    errors = [ln for ln in lines if ln and not ln.startswith(("Error downloading", "Tried "))]
    text = "; ".join(dict.fromkeys(errors)) if errors and len(errors) < len(lines) else " ".join(lines)
    text = f"{type(exc).__name__}: {text}" if text == " ".join(lines) else text
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _dataset_class(spec: TorchvisionSet) -> Any:
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:
        raise UserError(f"torchvision is needed for this dataset ({exc}); pip install torchvision") from None
    return getattr(tvd, spec.cls)


def _construct(cls: Any, root: Path, train: bool, download: bool) -> Any:
    if cls.__name__ == "SVHN":  # SVHN takes a split name, the others a train flag
        return cls(str(root), split="train" if train else "test", download=download)
    return cls(str(root), train=train, download=download)


def _open(name: str, cls: Any, root: Path, train: bool) -> Any:
    """The torchvision dataset; reads local files first, downloads only when they are missing or bad."""
    try:
        try:
            return _construct(cls, root, train, download=False)  # no network when the files are there
        except RuntimeError:  # torchvision's "Dataset not found or corrupted"
            log.debug("%s: files missing under %s; trying torchvision's download", name, root)  # offline: only the error line
        try:
            return _construct(cls, root, train, download=True)
        except (URLError, OSError, RuntimeError) as exc:  # offline, unwritable root, bad checksum after download
            raise UserError(missing_message(name, root, exc)) from None
    except ImportError as exc:  # SVHN reads .mat files with scipy, an optional dependency of torchvision
        raise UserError(f"{name} needs {exc.name or 'scipy'} to read its files; pip install scipy") from None
    except UserError:
        raise
    except Exception as exc:  # present but unreadable (a truncated idx or .mat file): never a raw traceback
        folder = expected_files(name, root)[0][0].parent
        detail = _one_line(exc) if str(exc) else f"{type(exc).__name__}: a file is not in its format"
        raise UserError(f"{name}: cannot read the files in {folder} ({detail}); delete them and "
                        f"{_how_to_get(name, root)}") from None


def _split(name: str, spec: TorchvisionSet, ds: Any) -> Split:
    """torchvision's arrays -> uint8 (N, C, H, W) images and int64 labels."""
    data = ds.data
    if isinstance(data, torch.Tensor):  # MNIST, FashionMNIST: uint8 (N, H, W)
        images = data.unsqueeze(1).contiguous()
    else:
        array = np.asarray(data)
        if array.shape[-1] == 3:  # CIFAR: (N, H, W, C) -> (N, C, H, W); SVHN is (N, C, H, W) already
            array = array.transpose(0, 3, 1, 2)
        images = torch.from_numpy(np.ascontiguousarray(array))
    raw_labels = ds.targets if hasattr(ds, "targets") else ds.labels  # SVHN calls them labels
    labels = torch.as_tensor(np.asarray(raw_labels), dtype=torch.int64).reshape(-1)
    if images.dtype != torch.uint8 or images.shape[2:] != (spec.size, spec.size):
        raise UserError(f"{name}: torchvision gave images {tuple(images.shape)} {images.dtype}; expected uint8 "
                        f"{spec.size}x{spec.size}: re-download the official files")
    if labels.numel() and (labels.min() < 0 or labels.max() >= spec.n_classes):
        raise UserError(f"{name}: labels outside 0..{spec.n_classes - 1} (found {int(labels.min())}..{int(labels.max())}); "
                        f"re-download the official files")
    if labels.shape[0] != images.shape[0]:
        raise UserError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels; re-download the official files")
    return Split(images, labels)
