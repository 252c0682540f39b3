"""``--dataset folder:PATH``: a folder of PNG/JPEG/TIFF images as the pool, labeled or not.

    PATH/                  images of any size, in subfolders too (names relative to PATH, with /; hidden
                           folders and run folders, which hold config.json, are left out)
    PATH/labels.csv        optional: header file,label; the images already labeled (empty label = not yet)
    PATH/classes.txt       optional: one class name per line (else: the labels' names, sorted)
    PATH/test/             optional: images for evaluation, with test/labels.csv labeling every one
                           (file names relative to test/); without it accuracy is not measured

Every image is converted to ``size`` x ``size`` (squeezed, not cropped: a crop could cut away what
matters) and to grey (1 channel) or RGB (3); 16-bit and float images are scaled by their own range.
The decoded images are cached once in ``PATH/.autoal-cache/`` (a read-only PATH: ~/.cache/autoal or
$AUTOAL_CACHE_DIR) as an uncompressed .npy file, keyed by
size, channels and the image files' names, sizes and modification times, and memory-mapped on
every later load: a large folder is decoded once, not every round. The two other things that read
every file or pixel are remembered next to it: the grey-or-RGB decision of ``--channels 0`` and the
pool's channel statistics. Labels are not cached (editing labels.csv needs no decoding). Pool
images without a label have label -1.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autoal.data import ImageDataset, Split, channel_stats
from autoal.errors import UserError

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
LABELS = "labels.csv"
CLASSES = "classes.txt"
TEST = "test"
CACHE = ".autoal-cache"
CACHE_VERSION = 2  # bump when decoding changes: old cache files are then never read (2: JPEG draft)
#: The label a person gives to skip an image (autoal.oracle.SKIP): it cannot be a class name.
RESERVED = "unsure"
UNLABELED = -1


@dataclass(frozen=True, kw_only=True)  # keywords only: its fields follow ImageDataset's defaulted ``classes``
class FolderDataset(ImageDataset):
    """An ImageDataset that knows its class names (always) and the file of each pool image."""

    root: str
    pool_files: tuple[str, ...]  # relative to root, one per pool index

    def files_digest(self) -> str:
        """Identifies the pool's file list: a run refuses to continue on a folder whose pool changed."""
        return hashlib.sha1("\n".join(self.pool_files).encode()).hexdigest()


def load_folder(spec: str, size: int, channels: int) -> FolderDataset:
    """``spec`` is PATH of ``folder:PATH``; ``channels`` 1, 3, or 0 (1 if every image is grey, else 3)."""
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise UserError(f"--dataset folder:{spec}: {root} is not a folder; give a folder of PNG/JPEG/TIFF images")
    if not 8 <= size <= 1024:
        raise UserError(f"--size {size}: folder images are resized to --size x --size; use 8 to 1024")
    if channels not in (0, 1, 3):
        raise UserError(f"--channels {channels}: use 1 (grey), 3 (RGB) or 0 (grey when every image is)")
    pool_files = image_files(root, skip=(TEST,))
    if not pool_files:
        raise UserError(f"{root} holds no PNG/JPEG/TIFF images ({', '.join(EXTENSIONS)}); put the images to label there")
    test_root = root / TEST
    test_files = image_files(test_root) if test_root.is_dir() else []
    pool_labels = read_labels_csv(root / LABELS, set(pool_files), required=False)
    test_labels = read_labels_csv(test_root / LABELS, set(test_files), required=True) if test_files else {}
    classes = class_names(root, [*pool_labels.values(), *test_labels.values()])
    index = {c: k for k, c in enumerate(classes)}
    for where, labels in ((root / LABELS, pool_labels), (test_root / LABELS, test_labels)):
        for file, label in labels.items():
            if label not in index:
                raise UserError(f"{where}: {file} has label {label!r}, which is not in {root / CLASSES} "
                                f"({', '.join(classes)}); fix the label or add the class")
    paths = [root / f for f in pool_files] + [test_root / f for f in test_files]
    if channels == 0:
        channels = auto_channels(root, paths)
    images, cache = cached_images(root, paths, size, channels)  # (N_pool + N_test, C, H, W) uint8, memory-mapped
    pool = Split(images[:len(pool_files)],
                 torch.tensor([index[pool_labels[f]] if f in pool_labels else UNLABELED for f in pool_files]))
    test = Split(images[len(pool_files):],
                 torch.tensor([index[test_labels[f]] for f in test_files], dtype=torch.int64))
    val = Split(pool.images[:0], pool.labels[:0])
    mean, std = pool_stats(pool.images, cache)
    if not test_files:
        log.info("%s has no test/ folder with labels: accuracy is not measured", root)
    return FolderDataset(name=root.resolve().name, train=pool, val=val, test=test, n_classes=len(classes),
                         mean=mean, std=std, classes=tuple(classes), root=str(root), pool_files=tuple(pool_files))


def image_files(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Image files under ``root`` (relative, with /, sorted); hidden folders and ``skip`` at the top left out."""
    found = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (rel == Path(".") and d in skip)
                         and not _is_run_folder(Path(folder) / d))
        found += [(rel / f).as_posix() for f in files if f.lower().endswith(EXTENSIONS) and not f.startswith(".")]
    return sorted(found)


def _is_run_folder(path: Path) -> bool:
    """A run folder inside the image folder (--out there): its query PNGs are not pool images."""
    return (path / "config.json").is_file() or (path / "checkpoint.pt").is_file() or (path / "queries").is_dir()


def read_labels_csv(path: Path, files: set[str], required: bool) -> dict[str, str]:
    """{file: class name} from a labels.csv (header file,label); empty labels are left out unless ``required``."""
    if not path.is_file():
        if required:
            raise UserError(f"{path} is missing: the test images need a label each (header file,label)")
        return {}
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} ({exc}); save it as UTF-8 text with the header file,label") from None
    if not rows or [c.strip().lower() for c in rows[0]] != ["file", "label"]:
        raise UserError(f"{path}: the first line must be the header file,label")
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise UserError(f"{path} line {line}: expected 2 columns file,label, got {len(row)}")
        file, label = row[0].strip().replace("\\", "/"), row[1].strip()
        if file in seen:
            raise UserError(f"{path} line {line}: {file} is listed twice; keep one row per image")
        seen.add(file)
        if file not in files:
            raise UserError(f"{path} line {line}: no image {file} in {path.parent}; fix the name (relative to "
                            f"{path.parent}, with /) or remove the row")
        if label:
            labels[file] = label
        elif required:
            raise UserError(f"{path} line {line}: {file} has no label; every test image needs one")
    if required:
        missing = sorted(files - set(labels))
        if missing:
            raise UserError(f"{path}: {len(missing)} test images have no row (first: {missing[0]}); "
                            f"label every image of {path.parent}")
    return labels


def class_names(root: Path, labels: list[str]) -> list[str]:
    """classes.txt when present (its order gives the class indices), else the labels' names sorted."""
    path = root / CLASSES
    if path.is_file():
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path} ({exc}); save it as UTF-8 text, one class name per line") from None
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise UserError(f"{path}: class {doubled[0]!r} is listed twice; list each class once")
    else:
        names = sorted(set(labels))
    if any(n.casefold() == RESERVED for n in names):
        raise UserError(f"{path if path.is_file() else root / LABELS}: {RESERVED!r} cannot be a class: it is the "
                        f"label that skips an image; rename the class")
    if len(names) < 2:
        found = f"found {len(names)} ({', '.join(names)})" if names else "found none"
        raise UserError(f"{root}: active learning needs at least 2 classes, {found}; write them one per line "
                        f"into {path}, or label images of 2 classes in {root / LABELS}")
    return names


def open_as_8bit(path: Path, at_least: int | None = None):  # -> PIL.Image.Image in mode L or RGB
    """The image at ``path`` as 8-bit grey (L) or RGB, upright (EXIF), at its own resolution; with
    ``at_least``, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale while both sides stay >= it (its
    DCT scaling: a large photo decodes several times faster, and is resized down anyway)."""
    from PIL import Image, ImageOps

    image = Image.open(path)
    if at_least is not None and image.format == "JPEG":
        image.draft(image.mode, (at_least, at_least))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16-bit / float: scale by the image's range
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
    if image.mode in ("1", "L", "LA", "P") and not _palette_has_colour(image):
        return image.convert("L")
    return image.convert("RGB")


def _palette_has_colour(image) -> bool:
    if image.mode != "P":
        return False
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def auto_channels(root: Path, paths: list[Path]) -> int:
    """1 when every image is grey, else 3; remembered in the cache folder (it opens every file)."""
    name = f"channels-{cache_key(paths, 0, 0)}.txt"
    for folder in cache_dirs(root):
        try:
            return int((folder / name).read_text())
        except (OSError, ValueError):
            pass
    channels = 1 if all(_is_grey(p) for p in paths) else 3
    folder = _writable_cache_dir(root)
    if folder is not None:
        for old in folder.glob("channels-*.txt"):  # of earlier versions of the folder
            old.unlink(missing_ok=True)
        _remember(folder / name, str(channels))
    return channels


def pool_stats(images: torch.Tensor, cache: Path | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """channel_stats of the pool, remembered next to the cache (they read every pixel)."""
    note = cache.with_name(f"{cache.stem}-stats-{len(images)}.json") if cache is not None else None
    if note is not None and note.is_file():
        try:
            saved = json.loads(note.read_text())
            return tuple(saved["mean"]), tuple(saved["std"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    mean, std = channel_stats(images)
    if note is not None:
        _remember(note, json.dumps({"mean": mean, "std": std}))
    return mean, std


def _remember(path: Path, text: str) -> None:
    """Write a small cache note atomically; an unwritable folder only costs the work next time."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _is_grey(path: Path) -> bool:
    """From the header alone where it can tell (no decoding); unreadable files fail here, by name."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode == "P":
                return not _palette_has_colour(image)
            return image.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I;16N", "I", "F")
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise UserError(f"cannot read {path} as an image ({_reason(exc)}); replace or remove the file") from None


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """(C, size, size) uint8 of one file."""
    from PIL import Image

    try:
        image = open_as_8bit(path, at_least=size)
        image = image.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.LANCZOS)
        array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated files raise OSError on load; bad TIFF tags others
        raise UserError(f"cannot read {path} as an image ({_reason(exc)}); replace or remove the file") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def cache_key(paths: list[Path], size: int, channels: int) -> str:
    """Changes when any file is added, removed, renamed, rewritten (size or mtime) or the conversion changes."""
    digest = hashlib.sha1(f"v{CACHE_VERSION} size={size} channels={channels}\n".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_dirs(root: Path) -> list[Path]:
    """Where the cache may live: PATH/.autoal-cache, else (a read-only folder) the user's cache folder
    ($AUTOAL_CACHE_DIR, default ~/.cache/autoal, as for npz files), in a subfolder named by PATH."""
    from autoal.data import CACHE_ENV, _user_cache_root

    user = _user_cache_root() / ("folder-" + hashlib.blake2b(str(root.resolve()).encode(), digest_size=8).hexdigest())
    return [user] if os.environ.get(CACHE_ENV) else [root / CACHE, user]


def _writable_cache_dir(root: Path) -> Path | None:
    from autoal.data import _may_write_in

    for folder in cache_dirs(root):
        if _may_write_in(folder):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                return folder
            except OSError:
                continue
    return None


def cached_images(root: Path, paths: list[Path], size: int, channels: int) -> tuple[torch.Tensor, Path | None]:
    """(N, C, size, size) uint8 of ``paths`` and the cache file: from the cache when it is current, else
    decoded and cached (no cache file: None).

    The cache is decoded into a temp file (named by the process: two runs decoding at once do not
    mix) and renamed, so a killed decode leaves no half cache. With no writable cache folder at all
    the images are decoded into memory, and the log says so.
    """
    name = f"images-{cache_key(paths, size, channels)}-{size}px-{channels}ch.npy"
    shape = (len(paths), channels, size, size)
    for folder in cache_dirs(root):
        cache = folder / name
        if cache.is_file():
            try:
                array = np.load(cache, mmap_mode="c")  # copy-on-write: a writable view, pages read lazily
                if array.shape == shape and array.dtype == np.uint8:
                    return torch.from_numpy(array), cache
            except (OSError, ValueError):
                pass
            log.warning("ignoring the damaged cache %s", cache)
    folder = _writable_cache_dir(root)
    array = None
    if folder is not None:
        cache = folder / name
        tmp = folder / f"{name}.{os.getpid()}.tmp"
        try:
            for old in [*folder.glob(f"images-*-{size}px-{channels}ch.npy"),  # stale: the files changed since
                        *folder.glob(f"images-*-{size}px-{channels}ch-stats-*.json")]:
                old.unlink(missing_ok=True)
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        except OSError as exc:
            log.warning("cannot cache the decoded images in %s (%s)", folder, exc.strerror or exc)
    if array is None:
        log.warning("no writable cache folder for %s (set $AUTOAL_CACHE_DIR): decoding into memory every run", root)
        return torch.from_numpy(np.stack([decode(p, size, channels) for p in paths])), None
    try:
        log.info("decoding %d images of %s once (cache: %s)", len(paths), root, cache)
        # Pillow releases the GIL while it decodes and resizes: threads use every core
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            for i, image in enumerate(pool.map(lambda p: decode(p, size, channels), paths)):
                array[i] = image
        finally:  # an unreadable file stops the decoding at once, not after the whole folder
            pool.shutdown(wait=True, cancel_futures=True)
        array.flush()
        del array
        os.replace(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)
    return torch.from_numpy(np.load(cache, mmap_mode="c")), cache
