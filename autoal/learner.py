"""Training, pool inference and evaluation of the task model, bound to one dataset and device.

Selectors that need models of their own (AutoAL's FitNet, SelectAL's probes) go through the same
Learner, so their candidate values come from exactly the path the real pool uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoal.accel import autocast, channels_last, check_precision, grad_scaler, prepare_model, resident_copy, to_device
from autoal.augment import augment_batch, resolve_augment
from autoal.data import ImageDataset, Split
from autoal.models import LOSS_DETACH_AFTER, LOSS_WEIGHT, Classifier, add_loss_module, build_classifier, loss_ranking_loss
from autoal.outputs import PoolOutputs
from autoal.rng import derive_seed, dropout_generator

log = logging.getLogger(__name__)


SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainSettings:
    backbone: str = "cnn"
    epochs: int = 80
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    dropout: float = 0.5
    min_steps: int = 200  # tiny labeled sets still get enough optimiser steps to fit
    eval_batch_size: int = 512
    mc_samples: int = 20
    augment: str = "auto"  # see autoal.augment: auto | none | shift | shift-hflip | shift-flip
    schedule: str = "cosine"  # learning rate over the steps of one fit: cosine (to 0) or constant
    class_weights: str = "none"  # none | balanced (balanced_weights: every labeled class weighs the same)
    precision: str = "fp32"  # autocast of training and inference forwards: fp32, bf16 or fp16 (autoal.accel)
    # Yoo & Kweon's loss-prediction module on the task model, trained with it (ranking loss); only
    # for a run whose selector reads ``predicted_loss`` (learning_loss): off, training is untouched
    loss_prediction: bool = False
    aug_views: int = 50  # N_a augmented views per image for ``aug_probs`` (seed 001: 50 on CIFAR-10)


def train_steps(n: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """Optimiser steps of one fit on ``n`` labeled samples: max(epochs * ceil(n / batch), min_steps).

    Proportional to the labeled set once it spans more than min_steps / epochs batches (the
    ordinary "E epochs" rule), and a floor below that: 20 labels are one batch, and 80 epochs of
    one batch do not fit a network from scratch. With the defaults (80 epochs, floor 200, batch 32)
    20 labels get 200 steps, 100 labels 320 and 220 labels 560: 1.6-2x the earlier recipe's steps
    (50 epochs, floor 100), inside the 2x cost limit of issue 8 with room for a loaded machine.
    """
    return max(epochs * math.ceil(n / batch_size), min_steps) if n > 0 else 0


def balanced_weights(labels: Tensor) -> Tensor:
    """Per-sample loss weights (n,) that give every class present in ``labels`` the same total weight,
    with mean 1 (so the learning rate means what it did): w_i = n / (K * n_{y_i}), K the number of
    classes present. An active learner's labeled set is lopsided by design (BALD on MNIST: 28 zeros
    and 2 fives in 100 labels), and a model trained on it inherits that prior: its test accuracy fell
    to 0.63 while its AUC stayed 0.98. Weighted, the same 100 labels gave 0.83; over 5 seeds BALD's
    sets went from 0.811 to 0.878 and random's from 0.887 to 0.902 (experiments/results/class-weights/)."""
    labels = labels.long()
    counts = torch.bincount(labels)
    present = int((counts > 0).sum())
    return (len(labels) / (present * counts[labels].float())).float()


def learning_rate(step: int, steps: int, base: float, schedule: str) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``steps``.

    cosine: base * (1 + cos(pi * step / steps)) / 2, from base at the first step towards 0 at the
    last; the low-rate end settles the weights of a model that must be compared across rounds
    (its last-step noise would otherwise show in every acquisition score). constant: base.
    """
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * step / max(steps, 1)))
    raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")


#: Progress callback: (phase, done, total), e.g. ("train", 120, 400); the CLI draws it as a bar.
Progress = Callable[[str, int, int], None]


class Learner:
    def __init__(self, data: ImageDataset, settings: TrainSettings, device: torch.device,
                 progress: Progress | None = None):
        check_precision(settings.precision, device)
        self.data = data
        self.settings = settings
        self.device = device
        self.progress = progress
        # id(split) -> (split, its images on the GPU or None): decided once per split (autoal.accel)
        self._resident: dict[int, tuple[Split, Tensor | None]] = {}

    # -- models ---------------------------------------------------------------------------
    def new_model(self, seed: int) -> Classifier:
        model = build_classifier(self.settings.backbone, self.data.channels, self.data.image_size,
                                 self.data.n_classes, self.settings.dropout, generator=torch.Generator().manual_seed(seed))
        if self.settings.loss_prediction:  # its own generator: the classifier's weights stay those without it
            add_loss_module(model, self.data.channels, self.data.image_size,
                            torch.Generator().manual_seed(derive_seed(seed, "loss-module")))
        return prepare_model(model, self.device)  # initialised on the CPU: the same weights on every device

    def batch(self, split: Split, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised images (B, C, H, W) and labels (B,) of ``rows`` of a split, on the device.

        Only the batch's rows are read (the images may be memory-mapped); on CUDA they come from
        the split's GPU copy when it fits, else through pinned memory without blocking."""
        on_device = self._on_device(split)
        if on_device is not None:
            images = on_device[rows.to(self.device)]
        else:
            images = to_device(split.images[rows], self.device)
        return channels_last(self.data.normalise(images), self.device), to_device(split.labels[rows], self.device)

    def _on_device(self, split: Split) -> Tensor | None:
        """The GPU copy of the dataset's own splits, made on first use when it fits; None otherwise."""
        if self.device.type != "cuda" or not any(split is s for s in (self.data.train, self.data.val, self.data.test)):
            return None
        if id(split) not in self._resident:
            self._resident[id(split)] = (split, resident_copy(split.images, self.device))
        return self._resident[id(split)][1]

    def fit(self, rows: Tensor, seed: int, model: Classifier | None = None,
            split: Split | None = None, sample_weight: Tensor | None = None) -> Classifier:
        """Train on ``rows`` of the pool (or of ``split``) with cross-entropy; a fresh model unless given.

        ``train_steps`` steps of Adam, the learning rate following ``learning_rate``, each batch
        augmented on the device (``autoal.augment``; ``augment="auto"`` picks the dataset's mode).
        Shuffling, augmentation and dropout are seeded by ``seed``. No early stopping: nothing of
        the labeled set is held out and the test split is never looked at. A model with a loss
        module (``loss_prediction``) adds LOSS_WEIGHT x its ranking loss against the per-sample
        losses, and after LOSS_DETACH_AFTER of the steps its gradient stops at the features.
        """
        split = split or self.data.train
        s = self.settings
        rows = rows.cpu()
        if model is None:
            model = self.new_model(seed)
        if len(rows) == 0:
            return model
        n = len(rows)
        if s.class_weights == "balanced":
            balanced = balanced_weights(split.labels[rows])
            sample_weight = balanced if sample_weight is None else sample_weight * balanced
        steps = train_steps(n, s.batch_size, s.epochs, s.min_steps)
        mode = resolve_augment(s.augment, self.data.name)
        opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        scaler = grad_scaler(self.device, s.precision)
        order_gen = torch.Generator().manual_seed(seed)
        augment_gen = torch.Generator(device=self.device).manual_seed(derive_seed(seed, "augment"))
        model.train()
        with dropout_generator(model, torch.Generator(device=self.device).manual_seed(seed + 1)):
            order = torch.empty(0, dtype=torch.long)
            for step in range(steps):
                if self.progress is not None:
                    self.progress("train", step, steps)
                if len(order) == 0:
                    order = torch.randperm(n, generator=order_gen)
                take, order = order[:s.batch_size], order[s.batch_size:]
                if len(take) == 1 and n > 1:  # BatchNorm cannot train on a batch of one
                    take = torch.cat([take, torch.randperm(n, generator=order_gen)[:1]])
                x, y = self.batch(split, rows[take])
                x = augment_batch(x, mode, augment_gen)
                with autocast(self.device, s.precision):  # the network only; losses from float logits
                    if getattr(model, "loss_module", None) is None:
                        loss = F.cross_entropy(model(x).float(), y, reduction="none")
                        rank = None
                    else:
                        logits, levels = model.forward_with_levels(x)
                        loss = F.cross_entropy(logits.float(), y, reduction="none")
                        if step >= LOSS_DETACH_AFTER * steps:
                            levels = [level.detach() for level in levels]
                        rank = loss_ranking_loss(model.loss_module(levels).float(), loss.detach())
                if sample_weight is not None:
                    loss = loss * sample_weight[take].to(self.device)
                if rank is not None:  # added to the batch mean below: mean(loss) + lambda * rank
                    loss = loss + LOSS_WEIGHT * rank
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step, steps, s.lr, s.schedule)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss.mean()).backward()
                scaler.step(opt)  # opt.step(), skipped when fp16 gradients overflowed
                scaler.update()
        model.eval()
        return model

    # -- inference ------------------------------------------------------------------------
    def infer(self, model: nn.Module, rows: Tensor, needs: frozenset[str], seed: int,
              split: Split | None = None, phase: str = "infer",
              labeled_rows: Tensor | None = None) -> PoolOutputs:
        """One batched pass over ``rows``: only the outputs in ``needs`` (probs always cheap).

        ``labeled_rows`` (rows of the same split) are the set that plays "labeled": when ``needs``
        holds ``labeled_embeddings``, their embeddings ride along in the same call (a deterministic
        eval-mode pass over L more rows, embeddings only). Without ``labeled_rows`` that field
        stays None and core-set / diversity sampling start without labeled centres.
        """
        split = split or self.data.train
        total = len(rows) + (len(labeled_rows) if labeled_rows is not None and "labeled_embeddings" in needs else 0)
        loaded = 0

        def load(batch_rows: Tensor) -> Tensor:
            nonlocal loaded
            if self.progress is not None:
                self.progress(phase, loaded, total)
            loaded += len(batch_rows)
            return self.batch(split, batch_rows)[0]

        settings = dict(mc_samples=self.settings.mc_samples, batch_size=self.settings.eval_batch_size,
                        seed=seed, device=self.device, precision=self.settings.precision)
        out = infer_pool(model, load, rows.cpu(), needs, **settings, aug_views=self.settings.aug_views,
                         augment=view_augment(self.settings.augment, self.data.name))
        if "labeled_embeddings" in needs and labeled_rows is not None:
            labeled = infer_pool(model, load, labeled_rows.cpu(), frozenset({"embeddings"}), **settings)
            out = dataclasses.replace(out, labeled_embeddings=labeled.embeddings)
        return out

    def evaluate(self, model: nn.Module, split: Split | None = None) -> tuple[float, float]:
        """(ACC, AUC) on a split (the test split by default), MedMNIST conventions."""
        split = split or self.data.test
        rows = torch.arange(len(split))
        probs = self.infer(model, rows, frozenset({"probs"}), seed=0, split=split, phase="evaluate").probs.cpu()
        return accuracy(probs, split.labels), auc(probs, split.labels, self.data.n_classes)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextlib.contextmanager
def training_flags_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's own ``training`` flag on exit (``model.train(flag)`` would overwrite
    per-module choices such as a frozen BatchNorm)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def mc_dropout(model: nn.Module) -> Iterator[None]:
    """Eval mode with only the dropout layers switched on: BatchNorm statistics stay untouched."""
    with training_flags_kept(model):
        model.eval()
        for m in dropout_modules(model):
            m.train()
        yield


def mc_full_passes(model: nn.Module, x: Tensor, mc_samples: int, max_batch: int) -> Tensor:
    """Logits (T, B, C) of T full stochastic passes over the batch ``x`` (B, ...), batched.

    The batch is repeated T times along the batch axis and goes through the model in one forward
    (in chunks of at most ``max_batch`` rows), so each dropout layer draws the T copies' masks in
    one call. Copy t of image i is row t * b + i of a chunk of b images. Dropout must be on and
    BatchNorm in eval mode (``mc_dropout``): in train mode BatchNorm would mix the copies.
    """
    per_chunk = max(1, max_batch // mc_samples)  # images per forward, each repeated T times
    out = []
    for start in range(0, len(x), per_chunk):
        chunk = x[start:start + per_chunk]
        logits = model(chunk.repeat(mc_samples, *(1,) * (chunk.dim() - 1)))  # (T * b, C)
        out.append(logits.view(mc_samples, len(chunk), -1))
    return torch.cat(out, dim=1)


def view_augment(mode: str, dataset: str) -> str:
    """The augmentation of the views behind ``aug_probs``: the training mode, except that a dataset
    trained without augmentation (digits) gets ``shift``: N_a copies of the image itself would give
    every image zero prediction variance."""
    resolved = resolve_augment(mode, dataset)
    return "shift" if resolved == "none" else resolved


def infer_pool(model: nn.Module, load, rows: Tensor, needs: frozenset[str], *, mc_samples: int,
               batch_size: int, seed: int, device: torch.device, aug_views: int = 0,
               augment: str = "shift", precision: str = "fp32") -> PoolOutputs:
    """PoolOutputs over ``rows``; ``load(rows) -> images on device``. Memory is bounded by the batch.

    When dropout lives only in the head (our models), MC samples resample just the head on the
    batch's embeddings; otherwise the T samples are full passes, batched: T copies of
    ``batch_size // T`` images in one forward (``mc_full_passes``), so a forward never holds more
    rows than a plain batch. (On a CPU, forwards of T x batch_size rows measured 1.5x slower than
    a loop of T passes; on a GPU a larger ``batch_size`` fills the device.)

    ``aug_probs``: each batch's ``aug_views`` augmented views (mode ``augment``, drawn on the
    device from a generator seeded by ``seed``) go through the model in the same pass, eval mode,
    in forwards of at most ``batch_size`` rows. ``predicted_loss`` needs a model with a loss module.

    ``precision`` bf16/fp16 autocasts the forwards; every output is float32 (softmaxes of float
    logits), so candidates see the same dtypes at every precision.
    """
    want_mc = "mc_probs" in needs and mc_samples > 0
    want_emb = "embeddings" in needs
    want_head = "head_features" in needs
    want_aug = "aug_probs" in needs and aug_views > 0
    want_loss = "predicted_loss" in needs
    if want_loss and getattr(model, "loss_module", None) is None:
        raise ValueError("predicted_loss needs a model with a loss-prediction module "
                         "(a Learner with TrainSettings(loss_prediction=True))")
    head_only = isinstance(model, Classifier) and not dropout_modules(model.backbone)
    n = len(rows)
    # each output written into one (.., N, ..) tensor as its batches come: a list of batches joined
    # by torch.cat held every output twice at the end of the pass (1.5 GB of embeddings at 165k)
    probs, embs, heads, augs, losses = (RowsOut(n) for _ in range(5))
    mc = RowsOut(n, dim=1)  # (T, N, C)
    mc_gen = torch.Generator(device=device).manual_seed(seed)  # the MC-dropout masks
    aug_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "aug-views"))
    with training_flags_kept(model), torch.inference_mode(), dropout_generator(model, mc_gen), \
            autocast(device, precision):
        model.eval()
        for start in range(0, len(rows), batch_size):
            x = load(rows[start:start + batch_size])
            if want_loss:  # the same forward, with the intermediate levels the loss module reads
                logits, levels = model.forward_with_levels(x)
                emb = levels[-2]  # (B, D)
                probs.put(start, logits.float().softmax(dim=1))
                losses.put(start, model.loss_module(levels).float())
            elif isinstance(model, Classifier):
                emb = model.embed(x)  # (B, D)
                probs.put(start, model.head(emb).float().softmax(dim=1))
            else:
                emb = None
                probs.put(start, model(x).float().softmax(dim=1))
            if want_emb:
                embs.put(start, (emb if emb is not None else model.embed(x)).float())
            if want_head:
                heads.put(start, head_features(model, emb).float())
            if want_mc:
                with mc_dropout(model):
                    if head_only:  # one call: dropout draws independent masks for each of T copies
                        logits = model.head(emb.unsqueeze(0).expand(mc_samples, *emb.shape))  # (T, B, C)
                    else:  # forwards of at most batch_size rows (T copies of batch_size // T images)
                        logits = mc_full_passes(model, x, mc_samples, batch_size)
                mc.put(start, logits.float().softmax(dim=2))
            if want_aug:
                augs.put(start, augmented_view_probs(model, x, aug_views, batch_size, augment, aug_gen))
    return PoolOutputs(
        n=n,
        probs=probs.out,
        mc_probs=mc.out if want_mc else None,
        embeddings=embs.out if want_emb else None,
        head_features=heads.out if want_head else None,
        aug_probs=augs.out if want_aug else None,
        predicted_loss=losses.out if want_loss else None,
    )


class RowsOut:
    """One output of a pass over N rows, filled batch by batch: ``put(start, value)`` copies a
    batch (its rows along ``dim``) into place; ``out`` is allocated at the first batch, with that
    batch's dtype and device, and stays None when no batch came."""

    def __init__(self, n: int, dim: int = 0):
        self.n, self.dim = n, dim
        self.out: Tensor | None = None

    def put(self, start: int, value: Tensor) -> None:
        if self.out is None:
            shape = list(value.shape)
            shape[self.dim] = self.n
            self.out = value.new_empty(shape)
        self.out.narrow(self.dim, start, value.shape[self.dim]).copy_(value)


def augmented_view_probs(model: nn.Module, x: Tensor, views: int, max_batch: int, mode: str,
                         gen: torch.Generator) -> Tensor:
    """Softmax (B, N_a, C) of N_a augmented views of each image of the batch ``x`` (B, ...), eval mode.

    Chunks of ``max_batch // N_a`` images are repeated N_a times along the batch axis and augmented
    in one call (each copy draws its own shift and flips), so a forward holds at most ``max_batch``
    rows; copy a of image i is row a * b + i of a chunk of b images.
    """
    per_chunk = max(1, max_batch // views)
    out = []
    for start in range(0, len(x), per_chunk):
        chunk = x[start:start + per_chunk]
        copies = augment_batch(chunk.repeat(views, *(1,) * (chunk.dim() - 1)), mode, gen)  # (N_a * b, ...)
        out.append(model(copies).float().softmax(dim=1).view(views, len(chunk), -1).transpose(0, 1))
    return torch.cat(out)


def head_features(model: nn.Module, emb: Tensor | None) -> Tensor:
    """The input (B, H) of the classifier's last linear layer, in the mode the model is in (eval:
    dropout off). Our head is dropout-linear-ReLU-dropout-linear, so this is the hidden layer."""
    head = getattr(model, "head", None)
    if emb is None or head is None:
        raise ValueError("head_features need a Classifier (backbone -> embedding -> head)")
    if isinstance(head, nn.Linear):
        return emb
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
        return head[:-1](emb)
    raise ValueError(f"head_features: the head {type(head).__name__} does not end in a linear layer")


def accuracy(probs: Tensor, labels: Tensor) -> float:
    return float((probs.argmax(dim=1) == labels).float().mean()) if len(labels) else float("nan")


def auc(probs: Tensor, labels: Tensor, n_classes: int) -> float:
    """MedMNIST's multi-class AUC: the mean over classes of one-vs-rest ROC AUC (binary: of class 1).

    Classes absent from the labels are skipped (their AUC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    y = labels.numpy()
    scores = probs.double().numpy()
    if n_classes == 2:
        return float(roc_auc_score(y, scores[:, 1])) if len(np.unique(y)) == 2 else float("nan")
    per_class = [roc_auc_score(y == c, scores[:, c]) for c in range(n_classes) if 0 < (y == c).sum() < len(y)]
    return float(np.mean(per_class)) if per_class else float("nan")
