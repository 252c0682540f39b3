"""Datasets: MedMNIST (official npz files), sklearn's bundled 8x8 digits, any npz in MedMNIST layout,
and torchvision's MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN (autoal/torchvision_data.py).

Images are kept as uint8 (N, C, H, W) and normalised per batch on the device, so even the
224-pixel sets cost one byte per pixel in memory. The train split is the pool, the test split
is for evaluation; the val split is there for whoever needs it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat as stat_module
import tempfile
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
    #: the class names, where the source has them (MedMNIST's INFO, torchvision's, a folder's): what a
    #: person labeling a batch chooses among; None shows the class indices
    classes: tuple[str, ...] | None = None

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

    return ["digits", *MEDMNIST_2D, *TORCHVISION_SETS, "npz:PATH", "folder:PATH"]


def load_dataset(name: str, data_root: str | Path = "data", size: int = 28, channels: int = 0) -> ImageDataset:
    """Load a dataset by its CLI name; raises UserError with the fix on bad input.

    ``channels`` applies to ``folder:PATH`` only (1 grey, 3 RGB, 0 grey when every image is)."""
    key = name.strip()
    if key == "digits":
        return _digits()
    if key.startswith("folder:"):
        from autoal.folder_data import load_folder  # Pillow only for folders

        return load_folder(key[len("folder:"):], size, channels)
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
    names = INFO[flag]["label"]  # {"0": "adipose", ...}
    return _from_npz(path, name=flag if size == 28 else f"{flag}_{size}", n_classes=len(names),
                     fix="re-download the official file", classes=tuple(names[str(k)] for k in range(len(names))))


def _from_npz(path: Path, name: str, n_classes: int | None = None,
              fix: str = "save integer class indices 0..C-1",
              classes: tuple[str, ...] | None = None) -> ImageDataset:
    """An npz in MedMNIST layout. ``n_classes`` None: the classes are 0..max label, all present in train.

    The archive is unpacked once into an uncompressed cache (``unpacked_npz``) and its images are
    memory-mapped from there: a 224-pixel pool is never read whole into memory, and a batch reads
    only its own rows. The checks of the archive (keys, declared sizes, shapes, dtypes) run when it
    is unpacked; the label checks run on every load (the labels are small).
    """
    if not path.is_file():
        raise UserError(f"no npz file at {path}; give --dataset npz:PATH with keys "
                        f"train_images, train_labels, test_images, test_labels (val_* optional)")
    splits = load_unpacked(unpacked_npz(path))
    if "val" not in splits:
        empty = splits["train"]
        splits["val"] = Split(empty.images[:0], empty.labels[:0])
    shapes = {s: tuple(sp.images.shape[1:]) for s, sp in splits.items() if len(sp)}
    if len(set(shapes.values())) > 1:
        raise UserError(f"{path}: splits have different image shapes {shapes}; all must match")
    n_classes = check_labels(path, name, splits, n_classes, fix)
    return _assemble(name, splits["train"], splits["val"], splits["test"], n_classes, classes)


# --- the unpacked cache of an npz ----------------------------------------------------------

#: Bumped when the cache's layout changes, so an old cache is never read as a new one.
CACHE_VERSION = 1
#: Where caches go when the data folder is read-only (default: $XDG_CACHE_HOME/autoal or ~/.cache/autoal).
CACHE_ENV = "AUTOAL_CACHE_DIR"
CACHE_FOLDER = ".autoal-cache"  # next to the npz, when that folder is writable
UNPACK_CHUNK_BYTES = 64 << 20  # rows are copied from the archive in pieces of about this size
#: OSErrors of writing the cache (not of reading the archive): the message names the cache's folder.
WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def unpacked_npz(path: Path) -> Path:
    """The folder holding ``path``'s arrays as plain .npy files, images in (N, C, H, W): built once.

    The folder's name carries the archive's size, mtime and inode, so a changed file gets a new
    cache. It is built in a temporary folder and renamed into place (atomic): a killed build
    leaves no half cache, and when two processes build at once the first rename wins and the
    other uses it. The cache sits in ``.autoal-cache/`` next to the file, or, when that folder is
    read-only, under $AUTOAL_CACHE_DIR (default ~/.cache/autoal).
    """
    stat = path.stat()
    entry_name = f"{path.name}-v{CACHE_VERSION}-{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ino}"
    refused = []  # why each folder could not take the cache
    for root in _cache_roots(path):
        entry = root / entry_name
        if entry.is_dir():
            return entry
        if not _may_write_in(root):
            refused.append(f"{root}: read-only")
            continue
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=root))
        except OSError as exc:  # a read-only data folder: try the next root
            refused.append(f"{root}: {exc.strerror or _first_line(exc)}")
            continue
        try:
            _unpack(path, tmp)
            (tmp / "source.json").write_text(json.dumps(
                {"source": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
            try:
                os.rename(tmp, entry)  # atomic; fails when another process got there first
            except OSError:
                if not entry.is_dir():
                    raise
        except OSError as exc:
            if exc.errno not in WRITE_ERRORS:  # the archive itself could not be read
                raise UserError(f"{path}: cannot read its arrays ({_first_line(exc)}); re-download or "
                                f"re-create it") from None
            raise UserError(f"cannot unpack {path} into {root} ({_first_line(exc)}); free space there, or set "
                            f"{CACHE_ENV} to a folder with room for the uncompressed arrays") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_stale(root, path.name, keep=entry)
        log.info("unpacked %s into %s (read memory-mapped from now on)", path, entry)
        return entry
    raise UserError(f"cannot write an unpacked copy of {path} ({'; '.join(refused)}); "
                    f"set {CACHE_ENV} to a writable folder")


def _user_cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autoal"


def _cache_roots(path: Path) -> list[Path]:
    """Next to the file first; else the user's cache folder, in a subfolder named by the file's absolute path."""
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    user = _user_cache_root() / digest
    return [user] if os.environ.get(CACHE_ENV) else [path.parent / CACHE_FOLDER, user]


def _may_write_in(root: Path) -> bool:
    """Whether a cache may be created at ``root``: its nearest existing folder is writable and has a
    write bit at all. The bits are checked as well because root may write anywhere: a folder made
    read-only (a shared data folder, mode 555) is left alone by every user, root included."""
    folder = root
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    mode = folder.stat().st_mode
    return os.access(folder, os.W_OK) and bool(mode & (stat_module.S_IWUSR | stat_module.S_IWGRP | stat_module.S_IWOTH))


def _remove_stale(root: Path, file_name: str, keep: Path) -> None:
    """Older caches of the same file, and temporary folders of builds whose process is gone."""
    for other in root.iterdir():
        if other == keep:
            continue
        if re.fullmatch(re.escape(file_name) + r"-v\d+-\d+-\d+-\d+", other.name):
            shutil.rmtree(other, ignore_errors=True)
        elif other.name.startswith(".tmp-") and not _pid_alive(other.name.split("-")[1]):
            shutil.rmtree(other, ignore_errors=True)


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _unpack(path: Path, out: Path) -> None:
    """Check the archive and write its arrays into ``out``: ``SPLIT_images.npy`` uint8 (N, C, H, W)
    and ``SPLIT_labels.npy`` int64 (N,). Images are streamed row-block by row-block, never held whole."""
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
            _check_declared_sizes(path, archive)  # before any member is read
            for split in SPLITS:
                if f"{split}_images" in archive.files:
                    n = _unpack_images(path, split, archive, out / f"{split}_images.npy")
                    labels = _checked_labels(path, split, archive[f"{split}_labels"], n)
                    np.save(out / f"{split}_labels.npy", labels)
        except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            # object arrays (np.load refuses them without pickle), corrupted members, bad CRCs
            raise UserError(f"{path}: cannot read its arrays ({_first_line(exc)}); re-download or re-create it, "
                            f"with plain uint8 images and integer labels") from None
        except MemoryError:
            raise UserError(f"{path}: its arrays do not fit in memory; use a smaller --size or a machine "
                            f"with more memory") from None


def _unpack_images(path: Path, split: str, archive: np.lib.npyio.NpzFile, target: Path) -> int:
    """Copy ``SPLIT_images`` from the archive into the .npy ``target`` as uint8 (N, C, H, W); returns N."""
    where = f"{path}: {split}"
    member_name = _member(archive, f"{split}_images")
    with archive.zip.open(member_name) as member:
        version = np.lib.format.read_magic(member)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(member) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(member))
        if len(shape) == 3:
            layout = "nhw"  # (N, H, W) -> (N, 1, H, W)
        elif len(shape) == 4 and shape[-1] in (1, 3):
            layout = "nhwc"  # (N, H, W, C) -> (N, C, H, W)
        else:
            raise UserError(f"{where}_images has shape {shape}; expected (N,H,W) or (N,H,W,3) uint8")
        if dtype != np.uint8:
            raise UserError(f"{where}_images has dtype {dtype}; expected uint8 pixels in 0..255")
        n = shape[0]
        channels = shape[3] if layout == "nhwc" else 1
        dest = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=(n, channels, shape[1], shape[2]))
        row_bytes = int(np.prod(shape[1:], dtype=np.int64))
        if fortran:  # column-major on disk (numpy never writes MedMNIST files this way): read it whole
            whole = np.lib.format.read_array(member).reshape(shape)
            dest[:] = whole[:, None] if layout == "nhw" else whole.transpose(0, 3, 1, 2)
        else:
            rows_per_chunk = max(1, UNPACK_CHUNK_BYTES // max(row_bytes, 1))
            for start in range(0, n, rows_per_chunk):
                count = min(rows_per_chunk, n - start)
                raw = member.read(count * row_bytes)
                if len(raw) != count * row_bytes:
                    raise EOFError(f"{split}_images ends after {start * row_bytes + len(raw):,} of "
                                   f"{n * row_bytes:,} bytes")
                block = np.frombuffer(raw, dtype=np.uint8).reshape(count, *shape[1:])
                dest[start:start + count] = block[:, None] if layout == "nhw" else block.transpose(0, 3, 1, 2)
            while member.read(1 << 20):  # to the end, so zipfile checks the member's CRC
                pass
        dest.flush()
        del dest
    return n


def _member(archive: np.lib.npyio.NpzFile, key: str) -> str:
    return key if key in archive.zip.namelist() else f"{key}.npy"


def _checked_labels(path: Path, split: str, labels: np.ndarray, n_images: int) -> np.ndarray:
    """Labels (N, 1) or (N,) as int64 (N,), checked: one class index per image, integers, none negative."""
    where = f"{path}: {split}"
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise UserError(f"{where}_labels has shape {labels.shape}: multi-label data is not supported yet; "
                        f"give one class index per image, shape (N,1)")
    labels = labels.reshape(-1)
    if labels.shape[0] != n_images:
        raise UserError(f"{where}: {n_images} images but {labels.shape[0]} labels; they must match")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise UserError(f"{where}_labels must be non-negative integer class indices (got dtype {labels.dtype})")
    return labels.astype(np.int64)


def load_unpacked(folder: Path) -> dict[str, Split]:
    """The splits of an unpacked cache; images memory-mapped copy-on-write (see below), labels in memory.

    Copy-on-write ("c"), not read-only: torch.from_numpy needs a writable array (a write into a
    read-only mapping would crash the process), and a write, which nothing here makes, would go
    to private memory, never into the cache file. Pages are read from the file when a batch
    touches them, and the kernel may drop them again under memory pressure.
    """
    splits = {}
    for split in SPLITS:
        images_file = folder / f"{split}_images.npy"
        if images_file.is_file():
            images = np.load(images_file, mmap_mode="c")  # (N, C, H, W) uint8, nothing read yet
            labels = np.load(folder / f"{split}_labels.npy")
            splits[split] = Split(torch.from_numpy(images), torch.from_numpy(labels))
    return splits


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


def _assemble(name: str, train: Split, val: Split, test: Split, n_classes: int,
              classes: tuple[str, ...] | None = None) -> ImageDataset:
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"dataset {name}: the train and test splits must not be empty")
    mean, std = channel_stats(train.images)  # statistics of the pool only
    return ImageDataset(name, train, val, test, n_classes, mean, std, classes)


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
