"""AutoAL's relaxation: a Gaussian-mixture threshold and a soft selection that keeps gradients alive,
the count penalty, and the loss-prediction module's ranking loss (DESIGN.md, AutoAL steps 4-6).

Pure functions of tensors, so each is tested on known values on its own.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from autoal.models import loss_ranking_loss

GMM_ITERS = 25  # EM from quantile starts: 20 reach the fixed point on a 0.8/0.2 mixture (tests)
PUBLISHED_SLOPE = 1e11  # the published code's selection slope: sigmoid saturates to exact 0/1


def fit_gmm_1d(x: Tensor, k: int, iters: int = GMM_ITERS) -> tuple[Tensor, Tensor, Tensor]:
    """EM for a k-component 1-D Gaussian mixture on x (N,), in float64, no gradient.

    Deterministic: means start at the (j + 0.5) / k quantiles, equal weights, a shared variance.
    Returns (weights, means, stds), each (k,). The arithmetic is numpy's: the arrays have a few
    dozen entries and the search fits a mixture every step, so per-operation overhead is the cost
    (torch's was 3/4 of a search step).
    """
    weights, means, stds = _fit_gmm_1d(x.detach().double().cpu().reshape(-1).numpy(), k, iters)
    return torch.from_numpy(weights), torch.from_numpy(means), torch.from_numpy(stds)


def _fit_gmm_1d(x: np.ndarray, k: int, iters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eps = 1e-12
    total_var = x.var()
    floor = max(total_var * 1e-4, eps)  # keeps a component from collapsing onto one point
    means = np.quantile(x, (np.arange(k) + 0.5) / k)
    variances = np.full(k, max(total_var / k, floor))
    weights = np.full(k, 1.0 / k)
    for _ in range(iters):
        diff = x[:, None] - means  # (N, k)
        # weights and variances are floored (eps, floor): every log below is finite
        log_p = np.log(np.maximum(weights, eps)) - 0.5 * np.log(2 * math.pi * variances) - diff ** 2 / (2 * variances)
        resp = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        resp /= resp.sum(axis=1, keepdims=True)  # (N, k), the softmax over components
        nk = resp.sum(axis=0)  # (k,)
        alive = nk > 1e-8  # an emptied component keeps its parameters (its weight is ~0 anyway)
        weights = np.maximum(nk / x.shape[0], eps)
        means = np.where(alive, (resp * x[:, None]).sum(axis=0) / np.maximum(nk, 1e-8), means)
        spread = (resp * (x[:, None] - means) ** 2).sum(axis=0) / np.maximum(nk, 1e-8)
        variances = np.maximum(np.where(alive, spread, variances), floor)
    return weights / weights.sum(), means, np.sqrt(variances)


def mixture_quantile(weights: Tensor, means: Tensor, stds: Tensor, q: float, iters: int = 40) -> float:
    """x with mixture CDF(x) = q, by bisection (the CDF is monotone, so this is deterministic).
    40 halvings of a 20-std bracket leave an error below 1e-10 std."""
    from scipy.special import ndtr  # scipy comes with scikit-learn, a dependency

    w, m, sd = (np.asarray(v, dtype=np.float64) for v in (weights, means, stds))
    lo, hi = float((m - 10 * sd).min()), float((m + 10 * sd).max())
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if float(w @ ndtr((mid - m) / sd)) < q:
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


def ranking_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Yoo & Kweon's pairwise loss-prediction loss, as the task model's loss module is trained by
    (``autoal.models.loss_ranking_loss``, margin 1): SearchNet's loss head uses the same loss."""
    return loss_ranking_loss(predicted, target)
