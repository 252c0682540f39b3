"""AutoAL: a SearchNet learns per-sample weights over the candidate strategies (see DESIGN.md).

Per round, on the labeled set L:
  1. L is split into L_tr (plays "labeled") and L_val (plays "unlabeled pool"); the split is a fixed
     random bit per pool index, so L_tr only grows from round to round and FitNet, which has only
     ever trained on L_tr, can continue from last round's weights.
  2. FitNet trains on L_tr to competence, with the task model's own recipe (``Learner.fit``).
     Candidate columns on L_val come from FitNet through the same PoolOutputs path as the real pool.
  3. Every column has one form, the paper's "selected at ratio r": mass r * N on the samples the
     candidate would pick first (``selected_columns``), with r the pool's budget ratio on L_val too.
  4. SearchNet gives w_ik = sigmoid(logit_ik) and positive scales lambda_k; s_i = sum_k lambda_k w_ik A_ik;
     a K-component mixture fitted to s gives the threshold, sel_i = sigmoid((s_i - theta) / tau).
  5. ``search_epochs`` epochs over L_val optimise SearchNet for the chosen objective (``MODES``).
  6. Query: s on the unlabeled pool, A from the task model's outputs, the top ``budget`` with random ties.

SearchNet reads each sample's predictive distribution (its sorted class probabilities), not its
pixels. That is what makes its weights transferable: during the search the distribution is FitNet's,
at query time the task model's, and "how sure the model is about this sample" means the same thing
for both (an image network would meet the task model's pool images only at query time). It has no
normalisation or dropout layers, so training and evaluation mode give the same w, and its pool
input is already in the round's one inference pass (``probs``), so querying costs no second pass.

SearchNet, lambda, the loss module, their optimiser and FitNet's weights are the selector's state,
checkpointed with the run.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import higher
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoal.errors import UserError
from autoal.learner import Learner, accuracy
from autoal.models import initialised
from autoal.methods.relaxation import (
    PUBLISHED_SLOPE,
    count_penalty,
    gmm_threshold,
    ranking_loss,
    soft_selection,
)
from autoal.outputs import PoolOutputs
from autoal.registry import candidate_choice, get_candidate, needs_of, parse_candidates, top_k_rows
from autoal.rng import derive_seed, generator
from autoal.selectors import RoundContext, Selection, Selector, register_selector

log = logging.getLogger(__name__)

#: The search objectives (``--search-mode``):
#: first-order  SearchNet maximises the sel-weighted loss of the FitNet trained on L_tr (selects what
#:              FitNet finds hard; FitNet's response to the selection is ignored).
#: unrolled     the paper's bi-level objective, unrolled: SearchNet maximises FitNet's sel-weighted loss
#:              after k differentiable FitNet steps on the sel-weighted loss (``higher``).
#: heldout      SearchNet minimises FitNet's loss on held-out L_val samples after k differentiable steps
#:              on what it selected: the value of labelling a sample, not its difficulty.
#: influence    the first-order objective with the value of labelling in place of hardness: SearchNet
#:              maximises the sel-weighted ``heldout_value`` of each L_val sample, how much one SGD step
#:              on it lowers FitNet's loss on the other L_val samples (``heldout`` in closed form, for
#:              FitNet's last layer and one step; no unrolling, so it costs what first-order costs).
#: published    the published code's choices (slope 1e11, a float count penalty, the ranking loss
#:              dropped) on the first-order objective, to show its zero gradient side by side.
MODES = ("first-order", "unrolled", "heldout", "influence", "published")
UNROLLED = ("unrolled", "heldout")


# --- candidate columns ------------------------------------------------------------------------

def selected_column(rows: Tensor, n: int, mass: float) -> Tensor:
    """The paper's "selected at ratio r" column (N,) with total ``mass`` = r * N.

    ``rows`` are the candidate's picks, best first (at least ceil(mass) of them). The floor(mass)
    best get 1 and the next gets the fractional rest, so every column has the same sum however small
    L_val is: with 10 L_val samples and r = 0.008 a column is one sample marked 0.08, which is the
    expected number of L_val samples the strategy would pick at the pool's ratio.
    """
    column = torch.zeros(n, dtype=torch.float32, device=rows.device)
    whole = min(int(math.floor(mass + 1e-9)), n)
    column[rows[:whole]] = 1.0
    rest = mass - whole
    if rest > 1e-9 and whole < n:
        column[rows[whole]] = rest
    return column


def selected_columns(names: list[str], outputs: PoolOutputs, mass: float, seed: int) -> Tensor:
    """A (N, K): for every candidate, the column of the ``ceil(mass)`` samples it would pick first.

    One form for every candidate: a set-valued one (k-means) picks ceil(mass) samples and is shuffled
    (its set has no order) before the fractional one is chosen; ties in scores are broken at random.
    """
    count = min(max(1, math.ceil(mass - 1e-9)), outputs.n)
    columns = []
    for name in names:
        gen = generator(seed, "column", name)
        rows = candidate_choice(name, outputs, budget=count, generator=gen).to(torch.long)
        if get_candidate(name).kind == "set":
            rows = rows[torch.randperm(len(rows), generator=gen).to(rows.device)]
        columns.append(selected_column(rows, outputs.n, mass))
    return torch.stack(columns, dim=1)


def hardness(probs: Tensor, labels: Tensor) -> Tensor:
    """How hard each sample is for the model, 1 - p(true class), shape (N,), in [0, 1].

    The per-sample loss_i of the search. Bounded on purpose: FitNet trains to near-zero loss on a few
    dozen samples, so the cross-entropy of its rare confident mistakes reaches 5-9 nats and one such
    sample, which a random column hits as often as any, outweighs every uncertain sample a good
    strategy marks (measured on the planted pool: with CE the search ends on a noise column).
    """
    return 1.0 - probs.gather(1, labels[:, None]).squeeze(1)


def heldout_value(probs: Tensor, labels: Tensor, head_features: Tensor) -> Tensor:
    """How much one SGD step on each sample lowers the model's loss on the others, as ranks in [0, 1], (N,).

    For the last linear layer (weights and bias) sample i's cross-entropy gradient is
    g_i = (p_i - onehot(y_i)) outer [h_i, 1], so a step -eta * g_i changes sample j's loss by
    -eta * <g_i, g_j> = -eta * <p_i - y_i, p_j - y_j> * (<h_i, h_j> + 1): v_i = mean_{j != i} <g_i, g_j>
    is the drop in the others' mean loss per unit step, the one-step, last-layer closed form of the
    ``heldout`` objective's hypergradient. It is large for a sample that FitNet gets wrong in the same
    way as many others near it (labelling it fixes them too) and small for a confident sample (g ~ 0)
    or an outlier whose gradient points where no other sample's does. Ranked (ties averaged) and
    scaled to [0, 1] for the reason ``hardness`` is bounded: a few confidently wrong samples have
    gradients many times the rest and would otherwise decide the whole search.
    """
    n = len(labels)
    if n < 2:
        return torch.full((n,), 0.5, device=probs.device)
    e = probs.float() - F.one_hot(labels, probs.shape[1]).float()  # (N, C)
    h = head_features.float()
    gram = (e @ e.T) * (h @ h.T + 1.0)  # (N, N): <g_i, g_j>
    value = (gram.sum(dim=1) - gram.diagonal()) / (n - 1)
    return average_ranks(value) / (n - 1)


def average_ranks(x: Tensor) -> Tensor:
    """0-based ranks of x (N,), ties given their mean rank, so equal values get equal targets."""
    order = x.argsort()
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=x.dtype, device=x.device)
    uniq, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=x.dtype, device=x.device).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(uniq), dtype=x.dtype, device=x.device).index_add_(0, inverse, torch.ones_like(x))
    return (sums / counts)[inverse]


def descriptors(probs: Tensor) -> Tensor:
    """SearchNet's input (N, C): each sample's class probabilities, sorted in decreasing order."""
    return probs.float().sort(dim=1, descending=True).values


# --- SearchNet --------------------------------------------------------------------------------

class SearchNet(nn.Module):
    """Descriptor (B, C) -> K strategy weights, K positive scales and a loss prediction.

    body: two ReLU layers -> feats (B, H); head: feats -> logits (B, K), w = sigmoid(logits);
    lambda = softplus(rho) (K,), starting at 1; loss_head: feats -> predicted loss (B,).
    No normalisation or dropout layers: ``train()`` and ``eval()`` compute the same function.
    """

    def __init__(self, n_inputs: int, k: int, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, k)
        self.rho = nn.Parameter(torch.full((k,), math.log(math.e - 1.0)))  # softplus(rho) = 1
        self.loss_head = nn.Linear(hidden, 1)

    @property
    def scales(self) -> Tensor:
        return F.softplus(self.rho)  # (K,), lambda_k > 0

    def search_parameters(self) -> list[nn.Parameter]:
        """The parameters that produce the strategy weights (not the loss-prediction head)."""
        return [*self.body.parameters(), *self.head.parameters(), self.rho]

    def forward(self, d: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.body(d)  # (B, H)
        return torch.sigmoid(self.head(feats)), feats  # w (B, K), feats (B, H)

    def scores(self, w: Tensor, a: Tensor) -> Tensor:
        """s_i = sum_k lambda_k w_ik A_ik, shape (B,)."""
        return (self.scales * w * a).sum(dim=1)

    def predict_loss(self, feats: Tensor) -> Tensor:
        return self.loss_head(feats).squeeze(1)  # (B,)


class SearchEnsemble(nn.Module):
    """The mean of several fitted SearchNets: the weight lambda_k w_ik it applies is the nets' mean
    lambda_k^b w_ik^b, written as scales (the mean lambda_k^b) times w (the lambda-weighted mean of
    the w_ik^b, in [0, 1]), so ``scales * w`` and every record keep their single-net meaning."""

    def __init__(self, nets: list[SearchNet]):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    @property
    def scales(self) -> Tensor:
        return torch.stack([net.scales for net in self.nets]).mean(dim=0)  # (K,)

    def forward(self, d: Tensor) -> tuple[Tensor, None]:
        weighted = torch.stack([net.scales * net(d)[0] for net in self.nets]).mean(dim=0)  # (B, K)
        return weighted / self.scales, None

    def scores(self, w: Tensor, a: Tensor) -> Tensor:
        return (self.scales * w * a).sum(dim=1)


def bootstrap(memory: list[dict[str, Any]], gen: torch.Generator) -> list[dict[str, Any]]:
    """Every simulation with its L_val samples resampled with replacement (rows, A, descriptors, losses)."""
    out = []
    for sim in memory:
        idx = torch.randint(len(sim["loss"]), (len(sim["loss"]),), generator=gen)
        out.append({**sim, **{key: sim[key][idx] for key in ("rows", "a", "d", "loss")}})
    return out


def grad_norm(params: list[nn.Parameter]) -> float:
    grads = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


# --- objectives -------------------------------------------------------------------------------

def first_order_objective(sel: Tensor, loss_i: Tensor) -> Tensor:
    """-mean(sel_i * loss_i): SearchNet learns to select the samples FitNet finds hard (loss_i detached)."""
    return -(sel * loss_i.detach()).mean()


def _inner_loss(fmodel: nn.Module, sel: Tensor, selectable: tuple[Tensor, Tensor],
                train: tuple[Tensor, Tensor]) -> Tensor:
    """FitNet's training loss in the simulation: CE on the L_tr batch + the sel-weighted CE on L_val."""
    x_s, y_s = selectable
    x_t, y_t = train
    return F.cross_entropy(fmodel(x_t), y_t) + (sel * F.cross_entropy(fmodel(x_s), y_s, reduction="none")).mean()


def _unrolled(fitnet: nn.Module, inner_opt: torch.optim.Optimizer, then):
    """Run ``then(fmodel, diffopt)`` inside higher's differentiable copy of FitNet, in eval mode.

    Eval mode: BatchNorm uses its running statistics and dropout is off, so the unrolled function is
    deterministic and higher never writes BN buffers in place. ``copy_initial_weights=True``: no
    gradient flows into FitNet's own weights.
    """
    was_training = fitnet.training
    fitnet.eval()
    try:
        with higher.innerloop_ctx(fitnet, inner_opt, copy_initial_weights=True,
                                  track_higher_grads=True) as (fmodel, diffopt):
            return then(fmodel, diffopt)
    finally:
        fitnet.train(was_training)


def unrolled_selected_loss(fitnet: nn.Module, inner_opt: torch.optim.Optimizer, sel: Tensor,
                           selectable: tuple[Tensor, Tensor], train: tuple[Tensor, Tensor], steps: int) -> Tensor:
    """The paper's objective, unrolled: -mean(sel_i * CE_i) of FitNet AFTER ``steps`` differentiable SGD
    steps on the sel-weighted loss (minimised by SearchNet, i.e. the selected samples' loss is maximised).

    SearchNet selects what FitNet finds hard even after FitNet has trained on it, and the gradient
    sees both routes: the direct weight sel_i on the loss and sel's effect on FitNet's update.
    """
    def then(fmodel, diffopt):
        for _ in range(steps):
            diffopt.step(_inner_loss(fmodel, sel, selectable, train))
        x_s, y_s = selectable
        return -(sel * F.cross_entropy(fmodel(x_s), y_s, reduction="none")).mean()

    return _unrolled(fitnet, inner_opt, then)


def unrolled_heldout_loss(fitnet: nn.Module, inner_opt: torch.optim.Optimizer, sel: Tensor,
                          selectable: tuple[Tensor, Tensor], train: tuple[Tensor, Tensor],
                          heldout: tuple[Tensor, Tensor], steps: int) -> Tensor:
    """FitNet's mean CE on ``heldout`` after ``steps`` differentiable SGD steps, as a function of sel.

    Each inner step minimises CE on the L_tr batch ``train`` plus the sel-weighted CE on ``selectable``.
    The hypergradient d L_heldout / d sel_i is (for one step) -lr * <grad CE_heldout, grad CE_i> / B_s:
    how much training on sample i lowers FitNet's loss on samples it has not trained on, the value of
    labelling sample i. Not the paper's objective (that is ``unrolled_selected_loss``).
    """
    def then(fmodel, diffopt):
        for _ in range(steps):
            diffopt.step(_inner_loss(fmodel, sel, selectable, train))
        x_h, y_h = heldout
        return F.cross_entropy(fmodel(x_h), y_h)

    return _unrolled(fitnet, inner_opt, then)


def aligned_batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> list[Tensor]:
    """``steps`` batches of positions 0..n-1: one fresh permutation per pass, cut into
    max(1, n // batch_size) near-equal pieces, so no batch has fewer than 2 samples when n >= 2.
    The same batch indexes descriptors, labels, A and FitNet's losses."""
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


def labeled_folds(labeled: Tensor, fold_ids: Tensor, k_folds: int) -> list[tuple[Tensor, Tensor]]:
    """The round's simulations as (L_tr, L_val) pairs, from a fixed random fold id per pool index.

    ``k_folds`` = 1: the paper's single split (``split_labeled``, fold 1 is L_val). 2: that split and
    its mirror image, so every labeled sample is in one L_val. K > 2: fold k is L_val, the rest L_tr.
    Fold ids are fixed per pool index, so each fold's L_tr only grows from round to round and its
    FitNet, warm-started from last round's FitNet of the same fold, has never trained on its L_val.
    """
    if k_folds <= 2:
        l_tr, l_val = split_labeled(labeled, fold_ids)
        return [(l_tr, l_val)] if k_folds == 1 else [(l_tr, l_val), (l_val, l_tr)]
    folds = [labeled[fold_ids[labeled] == k] for k in range(k_folds)]
    if min(len(f) for f in folds) < 2 <= len(labeled) // k_folds:  # tiny sets only: deal round-robin
        order = labeled[torch.argsort(fold_ids[labeled], stable=True)]
        folds = [order[k::k_folds] for k in range(k_folds)]
    return [(torch.cat([f for j, f in enumerate(folds) if j != k]).sort().values, folds[k]) for k in range(k_folds)]


def fold_ids(n_pool: int, k_folds: int, seed: int) -> Tensor:
    """A fixed random fold per pool index; for 1 or 2 folds the same bits as the paper's single split."""
    if k_folds <= 2:
        return torch.randint(2, (n_pool,), generator=generator(seed, "autoal-split"))
    return torch.randint(k_folds, (n_pool,), generator=generator(seed, "autoal-folds"))


def _index_key(fold: int) -> tuple[int, ...]:
    """Seed keys of fold or bag i (FitNet, inference, columns, SearchNet): 0 keeps the single split's and single net's seeds."""
    return () if fold == 0 else (fold,)


def per_pick_contribution(scales: Tensor, w: Tensor, a: Tensor) -> Tensor:
    """(K,): the mean over picks of each strategy's fraction lambda_k w_ik A_ik / sum_k(...) of the pick's
    score. Sums to 1; unlike an argmax it splits a pick that several strategies wanted."""
    parts = scales * w * a  # (b, K)
    total = parts.sum(dim=1, keepdim=True)
    return (parts / total.clamp_min(1e-12)).mean(dim=0) if len(parts) else parts.sum(dim=0)


def pick_shares(scales: Tensor, w: Tensor, a: Tensor, names: list[str]) -> list[dict[str, float]]:
    """Per pick, each strategy's fraction of its score (as in ``per_pick_contribution``), strategies with
    no share left out: what the human oracle's batch shows next to each image (who wanted it)."""
    parts = (scales * w * a).cpu()  # (b, K)
    shares = parts / parts.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return [{n: float(x) for n, x in zip(names, row) if x > 0} for row in shares]


# --- the selector -----------------------------------------------------------------------------

class AutoALSelector(Selector):
    name = "autoal"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.candidates = parse_candidates(cfg.candidates)
        if (cfg.search_epochs < 0 or cfg.search_batch_size < 2 or cfg.unroll_steps < 1 or cfg.tau_scale <= 0
                or cfg.count_penalty < 0 or cfg.rank_weight < 0 or not cfg.search_lr > 0 or not cfg.unroll_lr > 0
                or cfg.search_folds < 1 or cfg.search_bags < 1):
            raise UserError("AutoAL needs --search-epochs >= 0, --search-batch-size >= 2, --unroll-steps >= 1, "
                            "--search-folds >= 1, --search-bags >= 1, "
                            "--tau-scale > 0, positive --search-lr and --unroll-lr, and non-negative "
                            "--count-penalty and --rank-weight")
        self.needs = needs_of(self.candidates) | {"probs"}
        # influence's target multiplies each L_val sample's last-layer gradient factors (probs, head features):
        # FitNet's L_val pass needs them, the pool's does not
        self.val_needs = self.needs | ({"head_features"} if cfg.search_mode == "influence" else set())
        self.searchnet: SearchNet | SearchEnsemble | None = None  # this round's, fitted by _search
        self.optimizer: torch.optim.Optimizer | None = None
        self.fitnet_states: dict[int, dict[str, Tensor]] = {}  # by fold: each fold's FitNet of last round
        self.memory: list[dict[str, Any]] = []  # every round's L_val simulation (see _search)
        self._layout_writer: Any = None

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # SearchNet is refitted every round from the memory, so the memory and FitNet are the whole state
        return {"fitnets": self.fitnet_states, "memory": self.memory}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        old = state.get("fitnet")  # checkpoints from before cross-fitting held one FitNet
        self.fitnet_states = dict(state.get("fitnets", {0: old} if old is not None else {}))
        self.memory = list(state.get("memory", []))

    def _new_searchnet(self, learner: Learner, round_: int, bag: int = 0) -> tuple[SearchNet, torch.optim.Optimizer]:
        """A fresh SearchNet that starts as the equal-weight mix: w_ik = 1/2 (zero head) and lambda_k = 1."""
        net = initialised(lambda: SearchNet(learner.data.n_classes, len(self.candidates)),
                          generator(self.cfg.seed, "searchnet-init", round_, *_index_key(bag)))
        nn.init.zeros_(net.head.weight)
        nn.init.zeros_(net.head.bias)
        net = net.to(learner.device)
        return net, torch.optim.Adam(net.parameters(), lr=self.cfg.search_lr)

    # -- one round ------------------------------------------------------------------------
    def select(self, ctx: RoundContext) -> Selection:
        tick = time.perf_counter()
        r = ctx.budget / max(len(ctx.unlabeled), 1)  # the pool's budget ratio, used on L_val too
        self.searchnet, self.optimizer = self._new_searchnet(ctx.learner, ctx.round)  # the equal-weight mix
        stats = self._search(ctx, r)
        search_seconds = time.perf_counter() - tick

        a = selected_columns(self.candidates, ctx.outputs, float(ctx.budget),
                             derive_seed(ctx.seed, "pool-columns")).to(ctx.learner.device)  # (N, K), b ones each
        with torch.inference_mode():
            w = self.searchnet(descriptors(ctx.outputs.require("probs")).to(ctx.learner.device))[0]  # (N, K)
            s = self.searchnet.scores(w, a)
        rows = top_k_rows(s, ctx.budget, generator=ctx.generator)
        info = self._round_info(w, a, s, rows, r)
        info.update(stats, search_seconds=round(search_seconds, 4))
        with torch.inference_mode():  # per pick, for a person labeling the batch (the loop keeps it out of records)
            info["pick_contributions"] = pick_shares(self.searchnet.scales.detach(), w[rows], a[rows], self.candidates)
        self._log_tensorboard(ctx, info, w)
        return Selection(ctx.unlabeled[rows.cpu()], info)

    def _search(self, ctx: RoundContext, r: float) -> dict[str, Any]:
        """Each fold's simulation (FitNet on L_tr; A and FitNet's losses on L_val), then ``search_epochs``
        epochs of a fresh SearchNet over every simulation so far."""
        cfg, learner = self.cfg, ctx.learner
        splits = labeled_folds(ctx.labeled.cpu(), fold_ids(len(learner.data.train), cfg.search_folds, cfg.seed),
                               cfg.search_folds)
        out: dict[str, Any] = {"n_tr": len(splits[0][0]), "n_val": sum(len(v) for _, v in splits),
                               "val_mass": round(r * sum(len(v) for _, v in splits), 4)}
        skipped = {"grad_norm": 0.0, "loss_search": None, "loss_rank": None, "fitnet_val_acc": None}
        if min(min(len(t), len(v)) for t, v in splits) < 2:
            return {**out, **skipped, "search_skipped": "fewer than 2 samples in L_tr or L_val"}

        fitnets = [self._simulate(ctx, fold, l_tr, l_val, r) for fold, (l_tr, l_val) in enumerate(splits)]
        sims = self.memory[-len(splits):]
        losses, columns = torch.cat([m["loss"] for m in sims]), torch.cat([m["a"] for m in sims])
        out["fitnet_val_acc"] = float(torch.cat([m["correct"] for m in sims]).float().mean())
        # how hard (influence: how valuable) each candidate's L_val picks are: the evidence the search learns from
        out["column_target"] = {n: float((columns[:, k] * losses).sum() / columns[:, k].sum().clamp_min(1e-12))
                                  for k, n in enumerate(self.candidates)}
        if cfg.search_epochs == 0:
            return {**out, **{k: v for k, v in skipped.items() if k != "fitnet_val_acc"},
                    "search_skipped": "--search-epochs 0"}
        fitted = {fold: (net, splits[fold][0]) for fold, net in enumerate(fitnets)}
        out.update(self._fit_searchnets(learner, fitted, ctx.seed, ctx.round))
        return out

    def _fit_searchnets(self, learner: Learner, fitnets: dict[int, tuple[nn.Module, Tensor]] | None,
                        seed: int, round_: int) -> dict[str, float]:
        """This round's SearchNet (``self.searchnet``): one fitted to the whole memory, or with
        ``search_bags`` > 1 the mean of nets fitted to bootstrap resamples of it.

        Why bags: with little evidence (r * n_val < 1 pick per column and round) a fit goes to one
        corner, one candidate weighted and the rest near 0 (the objective is linear in the selection),
        and which corner is decided by a few samples. Where the evidence is clear every resample picks
        the same candidates; where it is not, the mean hedges among the ones the resamples favour.
        """
        if self.cfg.search_bags == 1:
            self.searchnet, self.optimizer = self._new_searchnet(learner, round_)
            return self._fit(learner, fitnets, generator(seed, "search-order"), self.memory)
        nets, stats = [], []
        for bag in range(self.cfg.search_bags):
            self.searchnet, self.optimizer = self._new_searchnet(learner, round_, bag)
            memory = bootstrap(self.memory, generator(seed, "search-bag", bag))
            stats.append(self._fit(learner, fitnets, generator(seed, "search-order", bag), memory))
            nets.append(self.searchnet)
        self.searchnet = SearchEnsemble(nets)
        return {key: sum(st[key] for st in stats) / (1 if key == "search_steps" else len(stats)) for key in stats[0]}

    def _simulate(self, ctx: RoundContext, fold: int, l_tr: Tensor, l_val: Tensor, r: float) -> nn.Module:
        """One L_tr/L_val simulation, appended to the memory; returns its FitNet.

        Every simulation is kept with the A, descriptors and losses of its own FitNet, at its own ratio,
        and a fresh SearchNet is fitted to all of them. At low budgets one L_val holds under one expected
        pick per column (r * n_val = 0.09 on digits' first round), so the evidence is pooled over rounds
        (and over folds); refitting from the equal-weight start (rather than continuing last round's net)
        keeps the first rounds' noise from locking the weights in: a saturated sigmoid no longer has the
        gradient to move when later evidence disagrees.
        """
        learner, device = ctx.learner, ctx.learner.device
        fitnet = self._fitnet(ctx, l_tr, fold)
        # L_tr plays the labeled set: candidates that start from it (coreset, diversity) see its embeddings
        val_out = learner.infer(fitnet, l_val, self.val_needs, seed=derive_seed(ctx.seed, "fitnet-infer", *_index_key(fold)),
                                labeled_rows=l_tr)
        y_val = learner.data.train.labels[l_val].to(device)
        probs_val = val_out.probs.to(device)
        a_val = selected_columns(self.candidates, val_out, r * len(l_val),
                                 derive_seed(ctx.seed, "val-columns", *_index_key(fold))).to(device)  # (n_val, K)
        target = (heldout_value(probs_val, y_val, val_out.require("head_features").to(device))
                  if self.cfg.search_mode == "influence" else hardness(probs_val, y_val))
        self.memory.append({"rows": l_val, "a": a_val.cpu(), "d": descriptors(probs_val).cpu(),
                            "loss": target.cpu(), "r": r, "fold": fold,
                            "correct": (probs_val.argmax(1) == y_val).cpu()})
        return fitnet

    def _fit(self, learner: Learner | None, fitnets: dict[int, tuple[nn.Module, Tensor]] | None,
             order: torch.Generator, memory: list[dict[str, Any]]) -> dict[str, float]:
        """``search_epochs`` epochs of SearchNet over every simulation in ``memory``, in random order.
        The unrolled objectives also need the learner and each fold's FitNet with its L_tr (for images):
        a simulation's L_val rows are unrolled through the FitNet of its own fold, which never saw them."""
        cfg = self.cfg
        device = next(self.searchnet.parameters()).device
        unrolled = cfg.search_mode in UNROLLED
        inner_opts = ({fold: torch.optim.SGD(net.parameters(), lr=cfg.unroll_lr) for fold, (net, _) in fitnets.items()}
                      if unrolled else {})
        sums = {"grad_norm": 0.0, "loss_search": 0.0, "loss_rank": 0.0}
        steps = 0
        for _ in range(cfg.search_epochs):
            for m in torch.randperm(len(memory), generator=order).tolist():
                sim = memory[m]
                n = len(sim["loss"])
                fold = sim.get("fold", 0)
                fitnet, l_tr = fitnets[fold] if unrolled else (None, None)
                for vb in aligned_batches(n, cfg.search_batch_size, max(1, n // cfg.search_batch_size), order):
                    images = None
                    if unrolled:  # the unrolled objectives run FitNet on the batch's images
                        tb = torch.randperm(len(l_tr), generator=order)[:cfg.search_batch_size]
                        images = (learner.batch(learner.data.train, sim["rows"][vb]),
                                  learner.batch(learner.data.train, l_tr[tb]))
                    result = self._step(fitnet, inner_opts.get(fold), sim["d"][vb].to(device),
                                        sim["a"][vb].to(device), sim["loss"][vb].to(device), images, sim["r"])
                    steps += 1
                    for key in sums:
                        sums[key] += result[key]
        return {**{key: value / max(steps, 1) for key, value in sums.items()}, "search_steps": steps}

    def _fitnet(self, ctx: RoundContext, l_tr: Tensor, fold: int = 0) -> nn.Module:
        """The fold's FitNet trained to competence on L_tr with the task model's recipe, continuing from
        last round's FitNet of the fold (which trained only on earlier L_tr, a subset of this one: it has
        never seen this L_val)."""
        learner = ctx.learner
        fitnet = learner.new_model(derive_seed(self.cfg.seed, "fitnet-init", *_index_key(fold)))
        if fold in self.fitnet_states:
            fitnet.load_state_dict(self.fitnet_states[fold])
        fitnet = learner.fit(l_tr, derive_seed(ctx.seed, "fitnet", *_index_key(fold)), model=fitnet)
        self.fitnet_states[fold] = {k: v.detach().cpu().clone() for k, v in fitnet.state_dict().items()}
        return fitnet

    def _step(self, fitnet: nn.Module, inner_opt: torch.optim.Optimizer | None, d: Tensor, a: Tensor,
              loss_i: Tensor, images: tuple | None, r: float) -> dict[str, float]:
        """One SearchNet step on one L_val batch (descriptors, A rows, losses and images all from the batch)."""
        cfg, net = self.cfg, self.searchnet
        w, feats = net(d)  # (B, K), (B, H)
        s = net.scores(w, a)  # (B,)
        theta = gmm_threshold(s, len(self.candidates), r)
        published = cfg.search_mode == "published"
        sel = soft_selection(s, theta, cfg.tau_scale, slope=PUBLISHED_SLOPE if published else None)  # (B,)

        if cfg.search_mode == "unrolled":
            val, tr = images
            objective = unrolled_selected_loss(fitnet, inner_opt, sel, val, tr, cfg.unroll_steps)
        elif cfg.search_mode == "heldout":
            (x_v, y_v), tr = images
            half = x_v.shape[0] // 2  # first half: samples to select; second half: held out
            objective = unrolled_heldout_loss(fitnet, inner_opt, sel[:half], (x_v[:half], y_v[:half]), tr,
                                              (x_v[half:], y_v[half:]), cfg.unroll_steps)
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
        return {"grad_norm": norm, "loss_search": float(total.detach()), "loss_rank": float(rank.detach())}

    # -- records --------------------------------------------------------------------------
    def _round_info(self, w: Tensor, a: Tensor, s: Tensor, rows: Tensor, r: float) -> dict[str, Any]:
        with torch.inference_mode():
            scales = self.searchnet.scales.detach()
            contribution = per_pick_contribution(scales, w[rows], a[rows]).cpu()
            agreement = a[rows].mean(dim=0).cpu()  # the share of the picks each candidate would have made
            theta = gmm_threshold(s, len(self.candidates), r)
            by_name = lambda v: {n: float(x) for n, x in zip(self.candidates, v.cpu())}  # noqa: E731
            return {
                "weights": by_name(scales * w.mean(dim=0)),  # lambda_k * mean_i w_ik
                "scales": by_name(scales),
                "mean_w": by_name(w.mean(dim=0)),
                "w_spread": by_name(w.std(dim=0, unbiased=False)),  # across the pool's images
                "contribution": by_name(contribution),
                "agreement": by_name(agreement),
                "threshold": float(theta),
                "above_threshold": int((s > theta).sum()),  # how many the relaxed selection would take
            }

    def _log_tensorboard(self, ctx: RoundContext, info: dict[str, Any], w: Tensor) -> None:
        writer = ctx.writer
        if writer is None:
            return
        step = len(ctx.labeled)
        if self._layout_writer is not writer:  # once per writer
            charts = {title: ["Multiline", [f"autoal/{key}/{n}" for n in self.candidates]]
                      for key, title in (("weight", "strategy weights"), ("contribution", "share of the picks"))}
            writer.add_custom_scalars({"autoal": charts})
            self._layout_writer = writer
        for k, name in enumerate(self.candidates):
            writer.add_scalar(f"autoal/weight/{name}", info["weights"][name], step)
            writer.add_scalar(f"autoal/contribution/{name}", info["contribution"][name], step)
            writer.add_histogram(f"autoal/sample_weight/{name}", w[:, k].float().cpu(), step)
        if info.get("fitnet_val_acc") is not None:
            writer.add_scalar("autoal/fitnet_val_acc", info["fitnet_val_acc"], step)


@register_selector("autoal")
def make_autoal(cfg: Any) -> Selector:
    if cfg.search_mode not in MODES:
        raise UserError(f"--search-mode must be one of {', '.join(MODES)}, got {cfg.search_mode!r}")
    return AutoALSelector(cfg)
