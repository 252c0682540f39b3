"""Task models: a small CNN (CPU default) and ResNet-18 with a small-image stem (CUDA default).

Both expose ``embed(x) -> (B, D)`` features (the backbone's pooled output) and a ``head`` that
holds every dropout layer, so MC dropout resamples only the head: T samples cost one backbone
pass and T cheap head passes.
"""

from __future__ import annotations

import math
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)

BACKBONES = ("cnn", "resnet18")


class Classifier(nn.Module):
    """Backbone -> embedding (B, D) -> head -> logits (B, C).

    The head follows Gal, Islam and Ghahramani 2017's MNIST CNN (the network behind the published
    BALD curves): dropout after the convolutions, a hidden ReLU layer of 128 units, dropout before
    the last layer, at their rates 0.25 and 0.5 for ``dropout=0.5`` (first rate = dropout / 2).
    A single dropout in front of a linear layer (our earlier head) makes the T logit samples an
    affine function of one mask each; the hidden layer between two dropouts lets the samples
    disagree about the class, which is what BALD, variation ratio and mean STD measure. All
    dropout stays in the head, so T samples cost one backbone pass.
    """

    def __init__(self, backbone: nn.Module, embedding_dim: int, n_classes: int, dropout: float = 0.5,
                 hidden: int = 128):
        super().__init__()
        self.backbone = backbone
        self.embedding_dim = embedding_dim
        self.head = nn.Sequential(nn.Dropout(dropout / 2), nn.Linear(embedding_dim, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        #: Yoo & Kweon's loss-prediction module, attached by ``add_loss_module`` only for a run whose
        #: selector reads ``predicted_loss``; None leaves the model (and its state_dict) as it was.
        self.loss_module: LossPredictionModule | None = None

    def embed(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))

    def forward_with_levels(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits (B, C) and the loss module's input levels: the outputs of the backbone stages before
        the last (``level_modules``: (B, C_l, H_l, W_l) maps), the embedding (B, D) and the head's
        hidden layer (B, hidden), in that order. The same computation as ``forward``."""
        maps: list[Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _in, out: maps.append(out)) for m in level_modules(self.backbone)]
        try:
            emb = self.embed(x)
        finally:
            for handle in handles:
                handle.remove()
        hidden = self.head[:3](emb)  # dropout, linear, ReLU
        return self.head[3:](hidden), [*maps, emb, hidden]


def level_modules(backbone: nn.Module) -> list[nn.Module]:
    """The backbone modules whose outputs feed the loss module, besides the embedding itself.

    ResNet: layer1-3 (layer4's average-pooled output is the embedding), Yoo & Kweon's four blocks.
    The small CNN: the ReLUs of its first two stages (the third stage's map, pooled to 3x3, is the
    embedding). Another backbone: none (the embedding and the hidden layer only).
    """
    if all(hasattr(backbone, f"layer{i}") for i in (1, 2, 3, 4)):
        return [backbone.layer1, backbone.layer2, backbone.layer3]
    if isinstance(backbone, nn.Sequential):
        return [m for m in backbone if isinstance(m, nn.ReLU)][:-1]
    return []


class LossPredictionModule(nn.Module):
    """Yoo & Kweon 2019 ("Learning Loss for Active Learning"): each feature level is globally average
    pooled (a map; a vector stays as it is), mapped by FC(width) + ReLU, the levels concatenated and
    mapped by one FC to the predicted loss (B,). width = 128 as in the paper."""

    def __init__(self, level_dims: list[int], width: int = 128):
        super().__init__()
        self.levels = nn.ModuleList(nn.Linear(d, width) for d in level_dims)
        self.out = nn.Linear(width * len(level_dims), 1)

    def forward(self, levels: list[Tensor]) -> Tensor:
        pooled = [x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1) for x in levels]
        hidden = [F.relu(fc(x)) for fc, x in zip(self.levels, pooled)]
        return self.out(torch.cat(hidden, dim=1)).squeeze(1)


#: Yoo & Kweon's margin xi and loss weight lambda (both 1 in the paper).
LOSS_MARGIN = 1.0
LOSS_WEIGHT = 1.0
#: Fraction of a fit's steps after which the loss module's gradient no longer reaches the backbone
#: (the paper: after epoch 120 of 200), so it stops shaping the features the task loss needs.
LOSS_DETACH_AFTER = 0.6


def loss_ranking_loss(predicted: Tensor, target: Tensor, margin: float = LOSS_MARGIN) -> Tensor:
    """Yoo & Kweon's pairwise ranking loss over the pairs (i, B-1-i) of a batch:
    mean of max(0, -sign(l_i - l_j) * (lhat_i - lhat_j) + margin). ``target`` (the per-sample task
    losses) gets no gradient; a batch of one has no pair and gives 0."""
    half = predicted.shape[0] // 2
    if half == 0:
        return predicted.sum() * 0.0
    sign = torch.sign(target[:half] - target.flip(0)[:half]).detach()
    return torch.clamp(margin - sign * (predicted[:half] - predicted.flip(0)[:half]), min=0).mean()


def add_loss_module(model: Classifier, in_channels: int, image_size: int, generator: torch.Generator) -> Classifier:
    """``model`` with a loss-prediction module sized by one dry forward, its weights drawn from
    ``generator`` (a generator of its own, so the classifier's weights are those of a model without it)."""
    was_training = model.training
    probe = torch.zeros(2, in_channels, image_size, image_size, device=next(model.parameters()).device)
    with torch.no_grad():
        model.eval()
        _, levels = model.forward_with_levels(probe)
    model.train(was_training)
    dims = [x.shape[1] if x.dim() == 4 else x[0].numel() for x in levels]
    model.loss_module = initialised(lambda: LossPredictionModule(dims), generator).to(probe.device)
    return model


#: Side of the feature map the small CNN keeps (adaptive average pooling): 3x3 cells.
CNN_GRID = 3


def small_cnn(in_channels: int, image_size: int, width: int = 32) -> tuple[nn.Module, int]:
    """Three conv-BN-ReLU stages, max-pooling while the map is larger than 8x8, then average pooling
    to a 3x3 grid, flattened: D = 4 * width * 9 (1152).

    Works from 8x8 digits up to 224x224; the early pooling keeps larger images cheap on a CPU. The
    3x3 grid keeps where a stroke is: with few labels that is most of what separates the classes
    (MNIST, 100 random labels, 2 seeds: 0.85 test accuracy against 0.64 with global average pooling).
    """
    layers: list[nn.Module] = []
    channels, size = in_channels, image_size
    for stage, out in enumerate((width, 2 * width, 4 * width)):
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        # after stage 0 pool down to at most 16x16, after stage 1 to at most 8x8 (28 -> 14 -> 7)
        limit = (16, 8, size)[stage]
        while size > limit:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        channels = out
    layers += [nn.AdaptiveAvgPool2d(CNN_GRID), nn.Flatten()]
    return nn.Sequential(*layers), channels * CNN_GRID * CNN_GRID


def resnet18_small(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    """torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool (the CIFAR stem) for small images;
    images of 128 pixels and more keep the original 7x7/stride-2 stem and max-pool."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if image_size < 128:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


def build_backbone(name: str, in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    """A feature extractor (B, C, H, W) -> (B, D) and its D."""
    if name == "cnn":
        return small_cnn(in_channels, image_size)
    if name == "resnet18":
        return resnet18_small(in_channels, image_size)
    raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


def build_classifier(name: str, in_channels: int, image_size: int, n_classes: int,
                     dropout: float = 0.5, generator: torch.Generator | None = None) -> Classifier:
    """The task model; with ``generator`` its weights are drawn from it (see ``initialised``)."""
    def build() -> Classifier:
        backbone, dim = build_backbone(name, in_channels, image_size)
        return Classifier(backbone, dim, n_classes, dropout)

    return build() if generator is None else initialised(build, generator)


def initialised(build: Callable[[], M], generator: torch.Generator) -> M:
    """``build()`` with every weight drawn from ``generator``: reproducible without seeding torch.

    Module constructors draw their default initialisation from torch's global RNG; those draws are
    made inside fork_rng, so the caller's RNG state does not move, and then overwritten.
    """
    with torch.random.fork_rng(devices=[]):
        module = build()
    return init_weights(module, generator)


def init_weights(module: M, generator: torch.Generator) -> M:
    """Convolutions: He normal (fan_out, ReLU), as torchvision's ResNet; linear layers: PyTorch's
    default uniform; normalisation layers: weight 1, bias 0. Parameters of other module types are
    left as they are."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.in_features) if m.in_features else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            m.reset_parameters()  # deterministic
    return module


def resolve_backbone(name: str, device: torch.device) -> str:
    """``auto`` means ResNet-18 on CUDA and the small CNN on the CPU."""
    if name == "auto":
        return "resnet18" if device.type == "cuda" else "cnn"
    return name
