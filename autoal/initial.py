"""The initial labeled set: ``--init-strategy random`` (uniform) or ``diverse`` (Buchert et al., seed 001,
section IV-A: diversity-based initial dataset selection on a self-supervised representation).

``diverse`` has two steps:

1. Representation. A RotNet (Gidaris et al. 2018) is trained on the unlabeled pool: the task
   model's architecture (``--backbone``) with a 4-way head predicts whether an image was rotated
   by 0, 90, 180 or 270 degrees; every image of a batch is shown in all four rotations, as RotNet
   does. No label is read. Its pooled backbone features of the upright images are the
   representation (``RotNetSettings.representation``).
2. Sampling. Diversity-based sampling at T = 0.5 (k-means++ seeding: each pick drawn with
   probability proportional to the squared distance to the nearest pick so far, the first uniform)
   chooses ``--init-size`` pool images, as the paper does.

The set depends only on the seed, the pool's images and these settings (and the device the RotNet
trained on): every strategy of a comparison starts from the same one. The representation is
cached per pool fingerprint, seed, settings and device type (``cache_dir``), written to a
temporary file and renamed into place under a lock, so a sweep trains it once and two workers
never read a half-written file.

Deviations from the paper, named: the paper trains RotNet's own network (NIN) to convergence and
takes the second block's activations, average-pooled to 192 values; here the task model's backbone
trains for a fixed, CPU-sized number of steps (``RotNetSettings.steps``) and its last feature map is
average-pooled. The paper's task model then trains semi-supervised (MixMatch); ours does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoal.data import ImageDataset, Split
from autoal.learner import Progress, learning_rate
from autoal.models import Classifier, build_classifier, resolve_backbone
from autoal.rng import generator

log = logging.getLogger(__name__)

INIT_STRATEGIES = ("random", "diverse")
#: T of the sampling step: seed 001's choice for initial sets (k-means++ seeding).
INIT_TEMPERATURE = 0.5
ROTATIONS = 4  # 0, 90, 180, 270 degrees
#: Where caches go: $AUTOAL_CACHE_DIR, else $XDG_CACHE_HOME/autoal, else ~/.cache/autoal (as the npz cache).
CACHE_ENV = "AUTOAL_CACHE_DIR"
#: Bumped whenever the representation a setting produces changes, so an old cache is never reused.
CACHE_VERSION = 1


@dataclass(frozen=True)
class RotNetSettings:
    """The self-supervised training of ``diverse``: short enough for a CPU (300 steps of 16 images in
    4 rotations; measured in experiments/results/init-set/)."""

    steps: int = 300
    batch_images: int = 16  # images per step, each in all four rotations (64 rows)
    lr: float = 1e-3
    weight_decay: float = 5e-4
    #: "pooled": the backbone's last feature map averaged over space (the small CNN's 128 channels of
    #: its 3x3 grid; ResNet-18's 512 are pooled already), as the paper average-pools RotNet's maps;
    #: "embedding": the backbone's output as the candidates see it (the CNN's 1,152 grid values).
    representation: str = "pooled"
    eval_batch_size: int = 512


# --- the strategies --------------------------------------------------------------------------

def random_initial(n_pool: int, init_size: int, seed: int) -> Tensor:
    """The seeded uniform initial set (sorted pool indices): depends only on the seed and the sizes."""
    return torch.randperm(n_pool, generator=generator(seed, "initial-set"))[:init_size].sort().values


def diverse_initial(representation: Tensor, init_size: int, seed: int) -> Tensor:
    """``init_size`` sorted pool indices by diversity sampling at T = 0.5 on ``representation`` (N, D)."""
    from candidates.diversity import diversity_sample, euclidean_to_row

    x = representation.float()
    rows = diversity_sample(euclidean_to_row(x), x.shape[0], init_size, INIT_TEMPERATURE,
                            generator(seed, "initial-set", "diverse"))
    return rows.sort().values


#: The settings runs use (a module attribute, so tests can shorten the training).
DEFAULT_ROTNET = RotNetSettings()


def initial_set(cfg: Any, data: ImageDataset, device: torch.device | None = None,
                progress: Progress | None = None, settings: RotNetSettings | None = None) -> Tensor:
    """The run's initial labeled set (sorted pool indices) as ``cfg.init_strategy`` says.

    ``cfg`` needs init_strategy, init_size, seed, backbone and device (a RunConfig). ``device``
    defaults to the one ``cfg.device`` names, ``settings`` to DEFAULT_ROTNET.
    """
    n_pool = len(data.train)
    strategy = getattr(cfg, "init_strategy", "random")
    if strategy == "random":
        return random_initial(n_pool, cfg.init_size, cfg.seed)
    if strategy != "diverse":
        raise ValueError(f"unknown initial-set strategy {strategy!r}; known: {', '.join(INIT_STRATEGIES)}")
    if device is None:
        from autoal.loop import resolve_device  # here: loop imports this module

        device = resolve_device(cfg.device)
    backbone = resolve_backbone(cfg.backbone, device)
    rep = rotnet_representation(data, backbone, cfg.seed, device, settings or DEFAULT_ROTNET, progress)
    return diverse_initial(rep, cfg.init_size, cfg.seed)


# --- the RotNet representation ----------------------------------------------------------------

def rotate_batch(x: Tensor) -> tuple[Tensor, Tensor]:
    """Every image of ``x`` (B, C, H, W) in all four rotations (4B, C, H, W) and the rotation labels (4B,)."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation prediction needs square images, got {tuple(x.shape[-2:])}")
    views = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(ROTATIONS)])
    labels = torch.arange(ROTATIONS, device=x.device).repeat_interleave(len(x))
    return views, labels


def train_rotnet(data: ImageDataset, backbone: str, seed: int, device: torch.device,
                 settings: RotNetSettings = RotNetSettings(),
                 progress: Progress | None = None) -> tuple[Classifier, float]:
    """A RotNet on the pool's images (labels never read): Adam, cosine learning rate, seeded.

    Returns the model and its rotation accuracy over the last tenth of the steps (each batch scored
    before the step that trains on it: a held-out estimate of how well it learned the pretext task).
    """
    pool = data.train
    model = build_classifier(backbone, data.channels, data.image_size, ROTATIONS, dropout=0.0,
                             generator=generator(seed, "rotnet", "init")).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    order_gen = generator(seed, "rotnet", "order")
    order = torch.empty(0, dtype=torch.long)
    model.train()
    last = max(1, settings.steps // 10)
    correct = seen = 0
    for step in range(settings.steps):
        if progress is not None:
            progress("rotnet", step, settings.steps)
        if len(order) < min(settings.batch_images, len(pool)):
            order = torch.cat([order, torch.randperm(len(pool), generator=order_gen)])
        take, order = order[:settings.batch_images], order[settings.batch_images:]
        x, y = rotate_batch(data.normalise(pool.images[take].to(device)))
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, settings.steps, settings.lr, "cosine")
        logits = model(x)
        if step >= settings.steps - last:
            correct += int((logits.argmax(dim=1) == y).sum())
            seen += len(y)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(logits, y).backward()
        opt.step()
    model.eval()
    return model, correct / max(seen, 1)


def pooled_features(model: Classifier, x: Tensor, representation: str) -> Tensor:
    """The representation of a batch (B, D): see ``RotNetSettings.representation``."""
    if representation == "embedding":
        return model.embed(x)
    if representation != "pooled":
        raise ValueError(f"unknown representation {representation!r}; known: pooled, embedding")
    backbone = model.backbone
    if isinstance(backbone, nn.Sequential) and isinstance(backbone[-1], nn.Flatten) \
            and isinstance(backbone[-2], nn.AdaptiveAvgPool2d):  # the small CNN: pool its map globally
        return backbone[:-2](x).mean(dim=(2, 3))
    return model.embed(x)  # ResNet-18 pools globally already


def representation_of(model: Classifier, pool: Split, data: ImageDataset, device: torch.device,
                      settings: RotNetSettings) -> Tensor:
    """The representation (N, D) float32 of every pool image, upright, in eval mode, on the CPU."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(pool), settings.eval_batch_size):
            x = data.normalise(pool.images[start:start + settings.eval_batch_size].to(device))
            out.append(pooled_features(model, x, settings.representation).float().cpu())
    return torch.cat(out)


def pool_fingerprint(pool: Split, chunk_rows: int = 4096) -> str:
    """A digest of the pool's images (shape and bytes; labels are not part of it: RotNet never reads
    them), read in row blocks so a memory-mapped pool is never copied whole."""
    h = hashlib.blake2b(repr((tuple(pool.images.shape), str(pool.images.dtype))).encode(), digest_size=16)
    for start in range(0, len(pool), chunk_rows):
        h.update(np.ascontiguousarray(pool.images[start:start + chunk_rows].numpy()).tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "rotnet"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autoal" / "rotnet"


def cache_key(fingerprint: str, backbone: str, seed: int, device: torch.device, settings: RotNetSettings) -> str:
    """What the representation depends on, hashed; the device type too (a CUDA-trained RotNet differs
    numerically from a CPU-trained one)."""
    what = {"version": CACHE_VERSION, "pool": fingerprint, "backbone": backbone, "seed": seed,
            "device": device.type, "torch": torch.__version__.split("+")[0], **asdict(settings)}
    return hashlib.blake2b(json.dumps(what, sort_keys=True).encode(), digest_size=12).hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a lock file) while the block runs; none where fcntl is missing or
    the file cannot be opened (the rename in ``_write`` still keeps readers from half-written files)."""
    try:
        import fcntl

        handle = open(path, "a")
    except (ImportError, OSError):  # Windows, or a read-only folder: two workers may both train
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rotnet_representation(data: ImageDataset, backbone: str, seed: int, device: torch.device,
                          settings: RotNetSettings = RotNetSettings(), progress: Progress | None = None,
                          cache: Path | None = None) -> Tensor:
    """The pool's RotNet representation (N, D): from the cache, or trained, cached, and returned.

    Under the key's lock: a second process asking for the same key waits and then reads the file the
    first one wrote. An unwritable cache folder only costs the caching (logged), never the run.
    """
    fingerprint = pool_fingerprint(data.train)
    key = cache_key(fingerprint, backbone, seed, device, settings)
    folder = cache or cache_dir()
    path = folder / f"{key}.npy"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot create the representation cache %s (%s): training without it", folder, exc)
    with _locked(folder / f"{key}.lock"):
        cached = _read(path, len(data.train))
        if cached is not None:
            log.info("initial set: RotNet representation from the cache %s", path)
            return cached
        tick = time.perf_counter()
        model, rotation_acc = train_rotnet(data, backbone, seed, device, settings, progress)
        rep = representation_of(model, data.train, data, device, settings)
        seconds = time.perf_counter() - tick
        log.info("initial set: RotNet trained on %d pool images in %.1f s (%d steps, rotation accuracy %.3f)",
                 len(data.train), seconds, settings.steps, rotation_acc)
        _write(path, rep, {"dataset": data.name, "backbone": backbone, "seed": seed, "device": device.type,
                           "pool": fingerprint, "settings": asdict(settings), "rotation_accuracy": rotation_acc,
                           "seconds": round(seconds, 2)})
        return rep


def _read(path: Path, n: int) -> Tensor | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:  # a damaged file: train again and replace it
        log.warning("ignoring the unreadable cache file %s (%s)", path, exc)
        return None
    if array.ndim != 2 or array.shape[0] != n or not np.isfinite(array).all():
        log.warning("ignoring the cache file %s: shape %s, expected %d rows of finite values", path, array.shape, n)
        return None
    return torch.from_numpy(array)


def _write(path: Path, rep: Tensor, meta: dict[str, Any]) -> None:
    """``rep`` as ``path`` (.npy) and its description beside it, each written to a temporary file and
    renamed into place: a reader sees the old file or the whole new one, never part of one."""
    try:
        for target, write in ((path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=1).encode())),
                              (path, lambda f: np.save(f, rep.numpy(), allow_pickle=False))):
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    write(handle)
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared cache from other users
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except OSError as exc:
        log.warning("could not cache the RotNet representation at %s (%s); the run goes on", path, exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def class_distribution_distance(labels: Tensor, pool_labels: Tensor, n_classes: int) -> dict[str, float]:
    """How far the set's class proportions are from the pool's: the paper's d = max_c |p~_c - p_c|
    (Buchert et al. eq. 6), the total variation 1/2 sum_c |p~_c - p_c|, and KL(p~ || p) in nats."""
    p_set = torch.bincount(labels, minlength=n_classes).double() / max(len(labels), 1)
    p_pool = torch.bincount(pool_labels, minlength=n_classes).double() / len(pool_labels)
    gap = (p_set - p_pool).abs()
    kl = float(torch.where(p_set > 0, p_set * (p_set / p_pool).log(), torch.zeros_like(p_set)).sum())
    return {"max": float(gap.max()), "tv": float(gap.sum() / 2), "kl": kl}


def mean_pairwise_distance(x: Tensor) -> float:
    """The average L2 distance over the pairs of rows of x (K, D) (the paper's batch diversity); K is an
    initial set, small, so the K x K matrix is fine here."""
    k = x.shape[0]
    if k < 2:
        return 0.0
    d = torch.cdist(x.double(), x.double())
    return float(d.sum() / (k * (k - 1)))


__all__ = ["INIT_STRATEGIES", "RotNetSettings", "class_distribution_distance", "diverse_initial", "initial_set",
           "mean_pairwise_distance", "random_initial", "rotnet_representation", "train_rotnet"]
