"""Learning loss (Yoo & Kweon 2019, "Learning Loss for Active Learning", CVPR).

A loss-prediction module rides on the task model: each feature level is globally average pooled,
mapped by FC(128) + ReLU, the levels concatenated and mapped by one FC to a scalar, the predicted
loss. It is trained with the task model on every labeled batch by the pairwise ranking loss
(pairs (i, B-1-i), margin xi = 1, weight lambda = 1):

    L = CE + lambda * mean_pairs max(0, -sign(l_i - l_j) * (lhat_i - lhat_j) + xi)

and the query is the samples of the highest predicted loss. The module and its training are in
``autoal.models`` (``LossPredictionModule``, ``loss_ranking_loss``) and ``autoal.learner``
(``TrainSettings.loss_prediction``); the model gets the module only in a run whose selector needs
``predicted_loss``, so no other strategy's training changes.

Deviations, each deliberate:

- The levels: the paper reads ResNet-18's four blocks. Here: ResNet's layer1-3 and its embedding
  (layer4, average pooled, is the same thing), plus the head's hidden layer; the small CNN's first
  two conv stages, its embedding (the third stage pooled to 3x3, flattened) and the hidden layer.
- The optimiser is the task model's (Adam, the learner's schedule), not the paper's SGD at 0.1;
  the module's gradient into the features is stopped after 60% of each fit's steps (the paper: after
  epoch 120 of 200), as the paper does.
- The paper scores a random subset of 10,000 unlabeled samples per cycle; by default here the whole
  pool (one forward of the module per batch in the round's inference pass), and ``--pool-subset
  10000`` gives the paper's protocol.
"""

from __future__ import annotations

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import register_candidate


@register_candidate("learning_loss", needs={"predicted_loss"})
def learning_loss(out: PoolOutputs, *, budget: int, generator: torch.Generator) -> Tensor:
    """Learning loss, Yoo & Kweon 2019: the loss-prediction module's predicted loss (N,); higher
    = query first."""
    return out.require("predicted_loss").float().clone()
