"""Consistency-based embeddings (Buchert et al., "Diversity-Based Sampling in Semi-Supervised Active
Learning", seed 001, section IV-B, eq. 3-5), then k-center greedy on them.

    sigma^2_ic = V[p_c(s_i), p_c(s~_i1), ..., p_c(s~_iN_a)]      (3)  class-c variance over the image
                                                                        and its N_a augmented views
    g_i = (sum_c sigma^2_ic) * f_i                                (4)  f_i the penultimate features
    |g_i| = (sum_c sigma^2_ic) * |f_i|                            (5)

Diversity-based sampling (eq. 1-2) on g, at T -> 0 (k-center greedy), which the paper found best
(its Fig. 6): the sampler is the one ``diversity`` and ``coreset`` use (candidates/diversity.py).
Large |g| means inconsistent predictions on a sample with large features, and k-center spreads the
picks over g-space.

Deviations, each deliberate:

- The views come from ``autoal.augment``'s on-device augmentation of the dataset (shifts, and the
  flips its domain allows) instead of the paper's random crop + horizontal flip; a dataset trained
  without augmentation (digits) gets shifts for its views (``learner.view_augment``), since copies
  of the image itself have no variance. N_a = 50 by default (the paper's CIFAR-10 setting;
  ``--aug-views``).
- V is the population variance (divide by N_a + 1); the unbiased one only rescales every g by the
  same factor, which k-center greedy ignores.
- The initial centre is the origin g = 0, not the labeled set's g: the labeled set is what the
  model was trained on, so its predictions are consistent and its g near 0, and the origin stands
  for it without a second augmented pass over L. The first pick is therefore the row of largest
  |g| (ties drawn at random), as BADGE starts from its largest gradient.
- The paper trains the task model semi-supervised (MixMatch); here it is the supervised learner.

Memory: the variance is reduced in chunks of rows, so the working set is O(N*D + N*N_a*C), the
size of the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import Param, register_candidate
from candidates.diversity import CHUNK_ROWS, diversity_sample, euclidean_to_row

#: T of the sampler on g: 0 = k-center greedy (seed 001's choice for this query strategy).
CONSISTENCY_TEMPERATURE = 0.0


def prediction_variance(probs: Tensor, aug_probs: Tensor, chunk: int = CHUNK_ROWS) -> Tensor:
    """sum_c sigma^2_ic (N,): the class-wise variance of the predictions over the image (probs, (N, C))
    and its views (aug_probs, (N, N_a, C)), summed over classes (eq. 3). Population variance, float32."""
    out = []
    for start in range(0, probs.shape[0], chunk):
        views = torch.cat([probs[start:start + chunk, None], aug_probs[start:start + chunk]], dim=1).float()
        out.append(views.var(dim=1, unbiased=False).sum(dim=1))  # (chunk,)
    return torch.cat(out) if out else probs.new_zeros(0)


def consistency_embeddings(probs: Tensor, aug_probs: Tensor, embeddings: Tensor) -> Tensor:
    """g (N, D) = (sum_c sigma^2_ic) * f_i (eq. 4)."""
    return prediction_variance(probs, aug_probs).unsqueeze(1).to(embeddings.device) * embeddings.float()


@register_candidate("consistency", needs={"probs", "aug_probs", "embeddings"}, kind="set",
                    params={"T": Param(CONSISTENCY_TEMPERATURE, "temperature of the diversity sampling on g: "
                                                                "0 = k-center greedy (the paper's choice), "
                                                                "0.5 = k-means++", minimum=0.0)})
def consistency(out: PoolOutputs, *, budget: int, generator: torch.Generator,
                T: float = CONSISTENCY_TEMPERATURE) -> Tensor:  # noqa: N803 (the paper's symbol)
    """Consistency-based embeddings, Buchert et al. (seed 001, eq. 3-5): diversity sampling at T
    (default 0: k-center greedy) on g_i = (sum_c var of p_c over the image and N_a augmented views)
    * f_i, from the origin (the module docstring lists the deviations). N_a is the run's
    ``--aug-views`` (50), not a parameter of the candidate: the views are computed in the round's
    pass, before any candidate runs (as --mc-samples is for BALD)."""
    g = consistency_embeddings(out.require("probs"), out.require("aug_probs"), out.require("embeddings"))
    origin = (g * g).sum(dim=1)  # (N,) squared distance of every g to the initial centre g = 0
    return diversity_sample(euclidean_to_row(g), out.n, budget, T, generator, initial=origin)
