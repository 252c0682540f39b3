"""PoolOutputs: what one inference pass over the unlabeled pool produces, shared by all candidates."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

#: The quantities a candidate may ask for.
NEEDS = frozenset({"probs", "mc_probs", "embeddings", "labeled_embeddings", "head_features", "aug_probs",
                   "predicted_loss"})


@dataclass(frozen=True)
class PoolOutputs:
    """Model outputs over N pool samples; only the fields some strategy needs are filled.

    n:          N, the number of pool samples (known even when nothing else is computed)
    probs:      (N, C) softmax of the deterministic (eval-mode) pass
    mc_probs:   (T, N, C) softmax of T MC-dropout passes (dropout on, BatchNorm in eval)
    embeddings: (N, D) penultimate features
    labeled_embeddings: (L, D) the same features of the L labeled samples (not pool rows): the
                initial centres of core-set and diversity sampling. ``subset`` keeps them whole,
                and they are None where the caller gave no labeled rows (candidates then fall
                back to no labeled centres).
    head_features: (N, H) the input of the classifier's last linear layer (eval mode): what
                BADGE's last-layer gradient embedding multiplies by p - onehot(yhat)
    aug_probs:  (N, N_a, C) softmax (eval mode) of N_a augmented views of each image, drawn on the
                device from the round's generator (``autoal.augment``): what consistency-based
                embeddings measure the prediction variance over
    predicted_loss: (N,) the loss-prediction module's output (Yoo & Kweon 2019); only a model built
                with that module (``TrainSettings.loss_prediction``) has one
    """

    n: int
    probs: Tensor | None = None
    mc_probs: Tensor | None = None
    embeddings: Tensor | None = None
    labeled_embeddings: Tensor | None = None
    head_features: Tensor | None = None
    aug_probs: Tensor | None = None
    predicted_loss: Tensor | None = None

    def __post_init__(self) -> None:
        for name, size in (("probs", self.probs is not None and self.probs.shape[0]),
                           ("mc_probs", self.mc_probs is not None and self.mc_probs.shape[1]),
                           ("embeddings", self.embeddings is not None and self.embeddings.shape[0]),
                           ("head_features", self.head_features is not None and self.head_features.shape[0]),
                           ("aug_probs", self.aug_probs is not None and self.aug_probs.shape[0]),
                           ("predicted_loss", self.predicted_loss is not None and self.predicted_loss.shape[0])):
            if size is not False and size != self.n:
                raise ValueError(f"PoolOutputs.{name} covers {size} samples, expected n={self.n}")
        if (self.embeddings is not None and self.labeled_embeddings is not None
                and self.labeled_embeddings.shape[1:] != self.embeddings.shape[1:]):
            raise ValueError(f"PoolOutputs.labeled_embeddings have shape {tuple(self.labeled_embeddings.shape)}, "
                             f"the pool's embeddings {tuple(self.embeddings.shape)}: the feature sizes differ")

    def require(self, name: str) -> Tensor:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"PoolOutputs.{name} was not computed; declare it in the candidate's needs")
        return value

    def subset(self, rows: Tensor) -> PoolOutputs:
        """The outputs of the samples at ``rows`` (positions into this PoolOutputs); the labeled
        set's embeddings are not pool rows and stay as they are."""
        return PoolOutputs(
            n=len(rows),
            probs=None if self.probs is None else self.probs[rows],
            mc_probs=None if self.mc_probs is None else self.mc_probs[:, rows],
            embeddings=None if self.embeddings is None else self.embeddings[rows],
            labeled_embeddings=self.labeled_embeddings,
            head_features=None if self.head_features is None else self.head_features[rows],
            aug_probs=None if self.aug_probs is None else self.aug_probs[rows],
            predicted_loss=None if self.predicted_loss is None else self.predicted_loss[rows],
        )

    def to(self, device: torch.device | str) -> PoolOutputs:
        return PoolOutputs(n=self.n, **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                        for f in fields(self) if f.name != "n"})
