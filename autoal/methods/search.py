"""AutoAL: a SearchNet learns per-sample weights over the candidate strategies (see DESIGN.md).

Per round, on the labeled set L:
  1. L is split into L_tr (plays "labeled") and L_val (plays "unlabeled pool"); the split is a fixed
     random bit per pool index, so L_tr only grows from round to round and FitNet, which has only
     ever trained on L_tr, can continue from last round's weights (a cheap search).
  2. FitNet trains on L_tr; candidate values on L_val come from FitNet through the same PoolOutputs
     path as the real pool: A (|L_val|, K), each column normalised to [0, 1].
  3. SearchNet gives w_ik = sigmoid(logit_ik) and positive scales lambda_k; s_i = sum_k lambda_k w_ik A_ik.
  4. A K-component 1-D Gaussian mixture fitted to s gives the threshold theta at quantile 1 - r;
     sel_i = sigmoid((s_i - theta) / tau), tau = tau_scale * std(s).
  5. Alternating updates on aligned batches of L_val: FitNet, then SearchNet + loss-prediction module.
  6. Query: s on the real pool from the task model's PoolOutputs, top-budget.
SearchNet, lambda, the loss module, their optimiser and FitNet's pre-search weights are the
selector's state, checkpointed with the run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

import higher
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoal.errors import UserError
from autoal.learner import Learner
from autoal.models import build_backbone, initialised, resolve_backbone, small_cnn
from autoal.outputs import PoolOutputs
from autoal.registry import get_candidate, needs_of, run_candidate, top_k_rows
from autoal.rng import derive_seed, dropout_generator, generator
from autoal.selectors import RoundContext, Selection, Selector, register_selector

log = logging.getLogger(__name__)

RANK_MARGIN = 1.0  # Yoo & Kweon's margin
GMM_ITERS = 25  # EM from quantile starts: 20 reach the fixed point on a 0.8/0.2 mixture (tests)
PUBLISHED_SLOPE = 1e11  # the published code's selection slope: sigmoid saturates to exact 0/1
MODES = ("first-order", "unrolled", "published")


# --- candidate columns ------------------------------------------------------------------------

def rank_normalise(column: Tensor) -> Tensor:
    """Average ranks scaled to [0, 1], shape (N,); tied values share their mean rank."""
    n = column.shape[0]
    if n < 2:
        return torch.ones_like(column, dtype=torch.float32)
    values = column.float()
    ordered = values.sort().values
    lower = torch.searchsorted(ordered, values, right=False)  # rank of the first equal value
    upper = torch.searchsorted(ordered, values, right=True)  # one past the last equal value
    return ((lower + upper - 1).float() / 2) / (n - 1)


def top_share_column(column: Tensor, count: int) -> Tensor:
    """The paper's column: 1 for the ``count`` highest values, 0 elsewhere, shape (N,)."""
    out = torch.zeros(column.shape[0], dtype=torch.float32, device=column.device)
    out[top_k_rows(column, count)] = 1.0
    return out


def candidate_matrix(names: list[str], outputs: PoolOutputs, budget: int, seed: int, norm: str) -> Tensor:
    """A (N, K): every candidate's per-sample value on these outputs, columns in [0, 1].

    ``budget`` is the number of samples a strategy would pick from these N (ratio r times N): k-means
    clusters into that many centres and the ``selected`` norm marks that many ones.
    Set-valued candidates are already 0/1 columns and are kept as they are in both norms.
    """
    columns = []
    for name in names:
        value = run_candidate(name, outputs, budget=budget, generator=derive_seed(seed, "candidate", name)).float()
        if get_candidate(name).kind == "set":
            columns.append(value)
        elif norm == "rank":
            columns.append(rank_normalise(value))
        else:
            columns.append(top_share_column(value, budget))
    return torch.stack(columns, dim=1)


# --- relaxation: Gaussian mixture threshold and soft selection ---------------------------------

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


# --- networks ---------------------------------------------------------------------------------

class SearchNet(nn.Module):
    """Image -> K strategy logits, K positive scales and a loss prediction from the same features.

    backbone (B, C, H, W) -> feats (B, D); head: feats -> logits (B, K); w = sigmoid(logits);
    lambda = softplus(rho) (K,), starting at 1; loss_head: feats -> predicted loss (B,).
    """

    def __init__(self, backbone: nn.Module, dim: int, k: int, hidden: int = 64):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, k)
        self.rho = nn.Parameter(torch.full((k,), math.log(math.e - 1.0)))  # softplus(rho) = 1
        self.loss_head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    @property
    def scales(self) -> Tensor:
        return F.softplus(self.rho)  # (K,), lambda_k > 0

    def search_parameters(self) -> list[nn.Parameter]:
        """The parameters that produce the strategy weights (not the loss-prediction head)."""
        return [*self.backbone.parameters(), *self.head.parameters(), self.rho]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.backbone(x)  # (B, D)
        return torch.sigmoid(self.head(feats)), feats  # w (B, K), feats (B, D)

    def scores(self, w: Tensor, a: Tensor) -> Tensor:
        """s_i = sum_k lambda_k w_ik A_ik, shape (B,)."""
        return (self.scales * w * a).sum(dim=1)

    def predict_loss(self, feats: Tensor) -> Tensor:
        return self.loss_head(feats).squeeze(1)  # (B,)


def build_searchnet(name: str, width: int, in_channels: int, image_size: int, k: int) -> SearchNet:
    """SearchNet on the task model's backbone family; the small CNN gets its own (smaller) width."""
    if name == "cnn":
        backbone, dim = small_cnn(in_channels, image_size, width=width)
    else:
        backbone, dim = build_backbone(name, in_channels, image_size)
    return SearchNet(backbone, dim, k)


def grad_norm(params: list[nn.Parameter]) -> float:
    grads = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


# --- objectives -------------------------------------------------------------------------------

def first_order_objective(sel: Tensor, loss_i: Tensor) -> Tensor:
    """-mean(sel_i * loss_i): SearchNet learns to select the samples FitNet finds hard (loss_i detached)."""
    return -(sel * loss_i.detach()).mean()


def unrolled_heldout_loss(fitnet: nn.Module, inner_opt: torch.optim.Optimizer, sel: Tensor,
                          selectable: tuple[Tensor, Tensor], train: tuple[Tensor, Tensor],
                          heldout: tuple[Tensor, Tensor], steps: int) -> Tensor:
    """FitNet's mean CE on ``heldout`` after ``steps`` differentiable SGD steps, as a function of sel.

    Each inner step minimises CE on the L_tr batch ``train`` plus the sel-weighted CE on ``selectable``
    (B_s samples, sel (B_s,)). Why this objective: the hypergradient d L_heldout / d sel_i is (for one
    step) -lr * <grad CE_heldout, grad CE_i> / B_s, the amount by which training on sample i lowers
    FitNet's loss on samples it has not trained on, i.e. the value of labelling sample i, which is
    what an active learner wants. (Maximising the selected samples' own loss, as the first-order
    mode does, has no dependence on FitNet's update and so nothing to unroll.) The count penalty
    keeps SearchNet from simply raising every sel (more training data always helps).

    FitNet runs in eval mode: BatchNorm uses its running statistics and dropout is off, so the
    unrolled function is deterministic and higher never writes BN buffers in place.
    ``copy_initial_weights=True``: no gradient flows into FitNet's own weights.
    """
    was_training = fitnet.training
    fitnet.eval()
    try:
        with higher.innerloop_ctx(fitnet, inner_opt, copy_initial_weights=True,
                                  track_higher_grads=True) as (fmodel, diffopt):
            x_s, y_s = selectable
            x_t, y_t = train
            for _ in range(steps):
                inner = F.cross_entropy(fmodel(x_t), y_t) + (sel * F.cross_entropy(fmodel(x_s), y_s,
                                                                                    reduction="none")).mean()
                diffopt.step(inner)
            x_h, y_h = heldout
            return F.cross_entropy(fmodel(x_h), y_h)
    finally:
        fitnet.train(was_training)


def aligned_batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> list[Tensor]:
    """``steps`` batches of positions 0..n-1: one fresh permutation per pass, cut into
    max(1, n // batch_size) near-equal pieces, so no batch has fewer than 2 samples when n >= 2
    (BatchNorm cannot train on one). The same batch indexes images, labels, A and FitNet's losses."""
    pieces = max(1, n // batch_size)
    out: list[Tensor] = []
    while len(out) < steps:
        out.extend(torch.tensor_split(torch.randperm(n, generator=gen), pieces))
    return out[:steps]


def split_labeled(labeled: Tensor, bits: Tensor) -> tuple[Tensor, Tensor]:
    """(L_tr, L_val) from a fixed random bit per pool index; exact halves if either side has < 2.

    With fixed bits L_tr only grows as L grows, so a FitNet that trained on earlier L_tr has never
    seen this round's L_val. The fallback (tiny labeled sets only) may break that nesting.
    """
    side = bits[labeled]
    l_tr, l_val = labeled[side == 0], labeled[side == 1]
    if min(len(l_tr), len(l_val)) < 2 <= len(labeled) // 2:
        order = torch.argsort(bits[labeled].float() + torch.linspace(0, 0.5, len(labeled)), stable=True)
        l_tr, l_val = labeled[order[: len(labeled) // 2]], labeled[order[len(labeled) // 2:]]
    return l_tr, l_val


# --- the selector -----------------------------------------------------------------------------

class AutoALSelector(Selector):
    name = "autoal"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.candidates = [c.strip() for c in cfg.candidates.split(",") if c.strip()]
        if not self.candidates:
            raise UserError("--candidates is empty; name at least one candidate strategy")
        for name in self.candidates:
            try:
                get_candidate(name)
            except KeyError as exc:
                raise UserError(str(exc.args[0])) from None
        if (cfg.search_steps < 0 or cfg.search_batch_size < 2 or cfg.unroll_steps < 1 or cfg.tau_scale <= 0
                or cfg.fitnet_steps < 0 or cfg.searchnet_width < 1 or cfg.count_penalty < 0 or cfg.rank_weight < 0):
            raise UserError("AutoAL needs --search-steps >= 0, --search-batch-size >= 2, --unroll-steps >= 1, "
                            "--tau-scale > 0, --fitnet-steps >= 0, --searchnet-width >= 1 and non-negative "
                            "--count-penalty and --rank-weight")
        self.needs = needs_of(self.candidates)
        self.searchnet: SearchNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.fitnet_state: dict[str, Tensor] | None = None
        self._pending: dict[str, Any] | None = None
        self._layout_writer: Any = None

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.searchnet is None:
            return dict(self._pending or {})
        return {"searchnet": self.searchnet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "fitnet": self.fitnet_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state or None
        if self.searchnet is not None and self._pending:
            self._restore()

    def _restore(self) -> None:
        state, self._pending = self._pending, None
        self.searchnet.load_state_dict(state["searchnet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.fitnet_state = state["fitnet"]

    def _ensure_nets(self, learner: Learner) -> None:
        """Build SearchNet and its optimiser once (shapes are known only from the data), then restore."""
        if self.searchnet is not None:
            return
        data = learner.data
        name = self.cfg.searchnet_backbone
        name = learner.settings.backbone if name == "auto" else resolve_backbone(name, learner.device)
        net = initialised(lambda: build_searchnet(name, self.cfg.searchnet_width, data.channels, data.image_size,
                                                  len(self.candidates)),
                          generator(self.cfg.seed, "searchnet-init"))
        self.searchnet = net.to(learner.device)
        # created once, kept across steps and rounds (its moments are in the checkpoint)
        self.optimizer = torch.optim.Adam([{"params": self.searchnet.search_parameters()},
                                           {"params": self.searchnet.loss_head.parameters()}], lr=self.cfg.search_lr)
        if self._pending:
            self._restore()

    # -- one round ------------------------------------------------------------------------
    def select(self, ctx: RoundContext) -> Selection:
        self._ensure_nets(ctx.learner)
        tick = time.perf_counter()
        r = ctx.budget / max(len(ctx.unlabeled), 1)
        stats = self._search(ctx, r)
        search_seconds = time.perf_counter() - tick

        w, a, s = self._pool_scores(ctx)  # (N, K), (N, K), (N,)
        rows = top_k_rows(s, ctx.budget)
        info = self._round_info(ctx, w, a, s, rows, r)
        info.update(stats, search_seconds=round(search_seconds, 4))
        self._log_tensorboard(ctx, info["weights"], w)
        return Selection(ctx.unlabeled[rows.cpu()], info)

    def _search(self, ctx: RoundContext, r: float) -> dict[str, float]:
        """FitNet on L_tr, A on L_val from FitNet (once), then the alternating search steps."""
        cfg, learner = self.cfg, ctx.learner
        bits = torch.randint(2, (len(learner.data.train),), generator=generator(cfg.seed, "autoal-split"))
        l_tr, l_val = split_labeled(ctx.labeled.cpu(), bits)
        empty = {"grad_norm": 0.0, "loss_search": float("nan"), "loss_fit": float("nan"),
                 "loss_rank": float("nan"), "n_val": len(l_val)}
        if len(l_tr) < 2 or len(l_val) < 2 or cfg.search_steps == 0:
            return empty

        fitnet = self._fitnet(ctx, l_tr)
        # A on L_val from FitNet, computed ONCE per search. It goes stale as FitNet keeps training in
        # the steps below; that is the design (DESIGN.md: the search reuses A for all its steps),
        # and the cost of recomputing it every step would be a full candidate pass per step.
        val_budget = max(1, round(r * len(l_val)))
        outputs = learner.infer(fitnet, l_val, self.needs, seed=derive_seed(ctx.seed, "fitnet-infer"))
        a_val = candidate_matrix(self.candidates, outputs, val_budget, derive_seed(ctx.seed, "val-candidates"),
                                 self._column_norm).to(learner.device)  # (n_val, K)

        fit_opt = torch.optim.Adam(fitnet.parameters(), lr=cfg.fitnet_lr)  # once per search
        inner_opt = None  # the unrolled steps' plain SGD (stateless): higher turns it into a differentiable one
        if cfg.search_mode == "unrolled":
            inner_opt = torch.optim.SGD(fitnet.parameters(), lr=cfg.unroll_lr)
        order = generator(ctx.seed, "search-order")
        val_batches = aligned_batches(len(l_val), cfg.search_batch_size, cfg.search_steps, order)
        tr_batches = aligned_batches(len(l_tr), cfg.search_batch_size, cfg.search_steps, order)
        sums = {"grad_norm": 0.0, "loss_search": 0.0, "loss_fit": 0.0, "loss_rank": 0.0}
        with dropout_generator(fitnet, generator(ctx.seed, "search", device=learner.device)):  # FitNet's dropout
            for vb, tb in zip(val_batches, tr_batches):
                val = learner.batch(learner.data.train, l_val[vb])
                tr = learner.batch(learner.data.train, l_tr[tb])
                step = self._step(fitnet, fit_opt, inner_opt, val, a_val[vb.to(a_val.device)], tr, r)
                for key in sums:
                    sums[key] += step[key]
        out = {key: value / len(val_batches) for key, value in sums.items()}
        out["n_val"] = len(l_val)
        return out

    @property
    def _column_norm(self) -> str:
        return "selected" if self.cfg.search_mode == "published" else self.cfg.column_norm

    def _fitnet(self, ctx: RoundContext, l_tr: Tensor) -> nn.Module:
        """FitNet: last round's pre-search FitNet (trained only on earlier L_tr, a subset of this L_tr)
        trained ``fitnet_steps`` more steps on L_tr. Its weights at this point are kept for next round."""
        learner = ctx.learner
        settings = replace(learner.settings, epochs=1, min_steps=self.cfg.fitnet_steps, lr=self.cfg.fitnet_lr)
        fit_learner = Learner(learner.data, settings, learner.device)
        fitnet = learner.new_model(derive_seed(self.cfg.seed, "fitnet-init"))
        if self.fitnet_state is not None:
            fitnet.load_state_dict(self.fitnet_state)
        fitnet = fit_learner.fit(l_tr, derive_seed(ctx.seed, "fitnet"), model=fitnet)
        self.fitnet_state = {k: v.detach().cpu().clone() for k, v in fitnet.state_dict().items()}
        return fitnet

    def _step(self, fitnet: nn.Module, fit_opt: torch.optim.Optimizer, inner_opt: torch.optim.Optimizer | None,
              val: tuple[Tensor, Tensor], a: Tensor, tr: tuple[Tensor, Tensor], r: float) -> dict[str, float]:
        """One alternating step on one aligned L_val batch (images, labels, A rows all from ``vb``)."""
        cfg, net = self.cfg, self.searchnet
        (x_v, y_v), (x_t, y_t) = val, tr
        net.train()
        w, feats = net(x_v)  # (B, K), (B, D)
        s = net.scores(w, a)  # (B,)
        theta = gmm_threshold(s, len(self.candidates), r)
        published = cfg.search_mode == "published"
        sel = soft_selection(s, theta, cfg.tau_scale, slope=PUBLISHED_SLOPE if published else None)  # (B,)

        # FitNet: CE on L_tr + sel-weighted CE on L_val; sel is detached (FitNet does not steer SearchNet)
        fitnet.train()
        fit_loss = F.cross_entropy(fitnet(x_t), y_t) + (sel.detach() * F.cross_entropy(
            fitnet(x_v), y_v, reduction="none")).mean()
        fit_opt.zero_grad(set_to_none=True)
        fit_loss.backward()
        fit_opt.step()
        fitnet.eval()
        with torch.no_grad():
            loss_i = F.cross_entropy(fitnet(x_v), y_v, reduction="none")  # (B,), FitNet after its update

        if cfg.search_mode == "unrolled":
            half = x_v.shape[0] // 2  # first half: samples to select; second half: held out
            objective = unrolled_heldout_loss(fitnet, inner_opt, sel[:half], (x_v[:half], y_v[:half]),
                                              (x_t, y_t), (x_v[half:], y_v[half:]), cfg.unroll_steps)
        else:
            objective = first_order_objective(sel, loss_i)
        if published:  # the published code: a float-valued count penalty and the rank loss dropped
            penalty = s.new_tensor(float(count_penalty(sel.detach(), r)))
            rank = ranking_loss(net.predict_loss(feats), loss_i).detach()
        else:
            penalty = count_penalty(sel, r)
            rank = ranking_loss(net.predict_loss(feats), loss_i)
        total = objective + cfg.count_penalty * penalty + cfg.rank_weight * rank
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        norm = grad_norm(net.search_parameters())
        self.optimizer.step()
        return {"grad_norm": norm, "loss_search": float(total.detach()), "loss_fit": float(fit_loss.detach()),
                "loss_rank": float(rank.detach())}

    # -- query and records ----------------------------------------------------------------
    def _pool_scores(self, ctx: RoundContext) -> tuple[Tensor, Tensor, Tensor]:
        """w (N, K), A (N, K) and s (N,) over the unlabeled pool; A from the task model's outputs."""
        learner, net = ctx.learner, self.searchnet
        a = candidate_matrix(self.candidates, ctx.outputs, ctx.budget, derive_seed(ctx.seed, "pool-candidates"),
                             self._column_norm).to(learner.device)
        net.eval()
        rows = ctx.unlabeled.cpu()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(rows), learner.settings.eval_batch_size):
                x, _ = learner.batch(learner.data.train, rows[start:start + learner.settings.eval_batch_size])
                chunks.append(net(x)[0])
            w = torch.cat(chunks)  # (N, K)
            s = net.scores(w, a)
        return w, a, s

    def _round_info(self, ctx: RoundContext, w: Tensor, a: Tensor, s: Tensor, rows: Tensor,
                    r: float) -> dict[str, Any]:
        with torch.inference_mode():
            scales = self.searchnet.scales.detach()
            weights = (scales * w.mean(dim=0)).cpu()  # (K,): lambda_k * mean_i w_ik
            contribution = scales * w[rows] * a[rows]  # (b, K)
            share = torch.bincount(contribution.argmax(dim=1).cpu(), minlength=len(self.candidates)).float()
            share /= max(len(rows), 1)
        theta = gmm_threshold(s, len(self.candidates), r)
        return {
            "weights": {n: float(v) for n, v in zip(self.candidates, weights)},
            "selected_share": {n: float(v) for n, v in zip(self.candidates, share)},
            "threshold": float(theta),
            "above_threshold": int((s > theta).sum()),  # how many the relaxed selection would take
        }

    def _log_tensorboard(self, ctx: RoundContext, weights: dict[str, float], w: Tensor) -> None:
        writer = ctx.writer
        if writer is None:
            return
        step = len(ctx.labeled)
        if self._layout_writer is not writer:  # once per writer
            tags = [f"autoal/weight/{n}" for n in self.candidates]
            writer.add_custom_scalars({"autoal": {"strategy weights": ["Multiline", tags]}})
            self._layout_writer = writer
        for k, name in enumerate(self.candidates):
            writer.add_scalar(f"autoal/weight/{name}", weights[name], step)
            writer.add_histogram(f"autoal/sample_weight/{name}", w[:, k].float().cpu(), step)


@register_selector("autoal")
def make_autoal(cfg: Any) -> Selector:
    if cfg.search_mode not in MODES:
        raise UserError(f"--search-mode must be one of {', '.join(MODES)}, got {cfg.search_mode!r}")
    return AutoALSelector(cfg)
