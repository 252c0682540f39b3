"""AutoAL's relaxation: a Gaussian-mixture threshold and a soft selection that keeps gradients alive,
the count penalty, and the loss-prediction module's ranking loss (DESIGN.md, AutoAL steps 4-6).

Pure functions of tensors, so each is tested on known values on its own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

RANK_MARGIN = 1.0  # Yoo & Kweon's margin
GMM_ITERS = 25  # EM from quantile starts: 20 reach the fixed point on a 0.8/0.2 mixture (tests)
PUBLISHED_SLOPE = 1e11  # the published code's selection slope: sigmoid saturates to exact 0/1


def fit_gmm_1d(x: Tensor, k: int, iters: int = GMM_ITERS) -> tuple[Tensor, Tensor, Tensor]:
    """EM for a k-component 1-D Gaussian mixture on x (N,), in float64 on the CPU, no gradient.

    Deterministic: means start at the (j + 0.5) / k quantiles, equal weights, a shared variance.
    Returns (weights, means, stds), each (k,).
    """
    x = x.detach().double().cpu().reshape(-1)
    total_var = x.var(unbiased=False)
    floor = (total_var * 1e-4).clamp_min(1e-12)  # keeps a component from collapsing onto one point
    means = torch.quantile(x, (torch.arange(k, dtype=torch.float64) + 0.5) / k)
    variances = (total_var / k).clamp_min(floor).expand(k).clone()
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    for _ in range(iters):
        diff = x[:, None] - means  # (N, k)
        log_norm = weights.clamp_min(1e-12).log() - 0.5 * torch.log(2 * math.pi * variances.clamp_min(floor))
        log_p = log_norm - diff ** 2 / (2 * variances)  # (N, k) log of weight * density
        resp = log_p.softmax(dim=1)  # (N, k)
        nk = resp.sum(dim=0)  # (k,)
        alive = nk > 1e-8  # an emptied component keeps its parameters (its weight is ~0 anyway)
        weights = (nk / x.shape[0]).clamp_min(1e-12)
        means = torch.where(alive, (resp * x[:, None]).sum(dim=0) / nk.clamp_min(1e-8), means)
        spread = (resp * (x[:, None] - means) ** 2).sum(dim=0) / nk.clamp_min(1e-8)
        variances = torch.where(alive, spread, variances).clamp_min(floor)
    return weights / weights.sum(), means, variances.sqrt()


def mixture_quantile(weights: Tensor, means: Tensor, stds: Tensor, q: float, iters: int = 60) -> float:
    """x with mixture CDF(x) = q, by bisection (the CDF is monotone, so this is deterministic)."""
    lo, hi = float((means - 10 * stds).min()), float((means + 10 * stds).max())
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = float((weights * torch.special.ndtr((mid - means) / stds)).sum())
        if cdf < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def gmm_threshold(s: Tensor, k: int, r: float) -> Tensor:
    """theta: the (1 - r) quantile of a k-component mixture fitted to s (N,); a detached scalar."""
    if s.numel() < 2 or float(s.detach().max() - s.detach().min()) == 0.0:
        return s.detach().max().clone()
    weights, means, stds = fit_gmm_1d(s, min(k, s.numel()))
    return torch.tensor(mixture_quantile(weights, means, stds, 1.0 - r), dtype=s.dtype, device=s.device)


def soft_selection(s: Tensor, theta: Tensor, tau_scale: float, slope: float | None = None) -> Tensor:
    """sel_i = sigmoid((s_i - theta) / tau), shape (N,), with tau = tau_scale * std(s).

    The slope follows the spread of the scores so sel stays soft (a fixed huge slope, the published
    1e11, saturates sel to exact 0/1 and kills every gradient). ``slope`` overrides 1 / tau (only to
    reproduce the published choice).

    Gradients: the mixture fit is not differentiated, but the threshold is not a constant either.
    It is written as theta = mean(s) + std(s) * z, with only z (the threshold in standardised units,
    which the mixture's shape fixes) detached; tau moves with std(s) too. So sel depends on s only
    through (s - mean) / std, and SearchNet cannot change the selection by scaling or shifting every
    score at once: a detached theta let every weight drift up together (raising all s raises every
    sel above a fixed threshold) until the count penalty pulled them down again.
    """
    if slope is not None:
        return torch.sigmoid((s - theta) * slope)
    mean, std = s.mean(), s.std(unbiased=False).clamp_min(1e-6)
    z_theta = (theta.detach() - mean.detach()) / std.detach()  # forward value: theta exactly
    return torch.sigmoid(((s - mean) / std - z_theta) / tau_scale)


def count_penalty(sel: Tensor, r: float) -> Tensor:
    """(mean(sel) - r)^2 as a tensor, so it has a gradient (the published one was a Python float)."""
    return (sel.mean() - r) ** 2


def ranking_loss(predicted: Tensor, target: Tensor, margin: float = RANK_MARGIN) -> Tensor:
    """Yoo & Kweon's pairwise loss-prediction loss: pairs (i, B-1-i) of the batch,
    mean of max(0, -sign(l_i - l_j) * (lhat_i - lhat_j) + margin). ``target`` is detached."""
    half = predicted.shape[0] // 2
    if half == 0:
        return predicted.sum() * 0.0
    p_i, p_j = predicted[:half], predicted.flip(0)[:half]
    t_i, t_j = target[:half], target.flip(0)[:half]
    return torch.clamp(margin - torch.sign(t_i - t_j).detach() * (p_i - p_j), min=0).mean()
