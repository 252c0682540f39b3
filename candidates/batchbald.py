"""BatchBALD (Kirsch, van Amersfoort and Gal 2019): a batch of greedy picks that maximises the
mutual information between the batch's joint labels and the model parameters, over MC samples.

With MC samples p_t (T dropout masks standing in for posterior draws w_t), step n picks the row i
maximising

    a(i) = H(y_1..y_{n-1}, y_i) - sum_{j in batch + i} E_t H(y_j | w_t),

the joint entropy taken under p(y_1..y_n) = mean_t prod_j p_t(y_j). The joint is kept as a
(T, M) table P[t, m] = prod_j p_t(y_j = m_j) over M label configurations of the picks so far:
exact (all C^(n-1) configurations) while C^(n-1) <= ``max_configs``, then, as the paper does for
large batches, ``samples`` configurations drawn from the joint, the entropy estimated by importance
weighting: H = E_{m ~ p} [-sum_c p(m, c) / p(m) log p(m, c)]. Rows are scored in chunks so a chunk
holds at most ~2^22 (row, configuration, class) entries: memory O(T*N*C + T*M), never N x N.
"""

from __future__ import annotations

import torch
from torch import Tensor

from autoal.outputs import PoolOutputs
from autoal.registry import Param, register_candidate
from candidates.diversity import _d2_sample

MAX_CONFIGS = 4096  # the paper's exact computation stays below about this many joint configurations
SAMPLES = 1024  # sampled configurations beyond it (the paper's M)
CHUNK_ENTRIES = 1 << 22


def batchbald_select(mc: Tensor, budget: int, generator: torch.Generator, *, max_configs: int = MAX_CONFIGS,
                     samples: int = SAMPLES) -> Tensor:
    """The ``budget`` rows BatchBALD picks from MC probabilities ``mc`` (T, N, C), in pick order.

    Exact mode keeps P[t, m] = prod_j p_t(m_j) over every configuration. Sampled mode keeps, per
    drawn configuration s, post[t, s] = p(w_t | m_s) (columns sum to 1) and log p(m_s), so a batch
    of hundreds of picks never underflows a product of probabilities.
    """
    t_count, n, c = mc.shape
    cond = -torch.xlogy(mc.double(), mc.double()).sum(dim=2).mean(dim=0)  # (N,) E_t H(y_i | w_t)
    joint = torch.ones(t_count, 1, dtype=torch.float64, device=mc.device)  # exact: (T, M); sampled: post (T, S)
    log_pm = None  # sampled mode only: (S,) log p(m_s)
    taken = torch.zeros(n, dtype=torch.bool, device=mc.device)
    chosen: list[int] = []
    cond_sum = 0.0
    for _ in range(budget):
        if log_pm is None:
            h = joint_entropy_with_each_row(joint / t_count, mc)  # (N,) exact H(picks, y_i)
        else:  # H = E_s[-sum_c q log q] - E_s[log p(m_s)], q = p(y_i | m_s)
            h = joint_entropy_with_each_row(joint, mc) / joint.shape[1] - log_pm.mean()
        score = (h - cond - cond_sum).masked_fill(taken, float("-inf"))
        row = _d2_sample((score == score.max()).double(), generator)  # the best row, ties at random
        chosen.append(row)
        taken[row] = True
        cond_sum += float(cond[row])
        p_row = mc[:, row].double()  # (T, C)
        if log_pm is None:
            joint = (joint.unsqueeze(2) * p_row.unsqueeze(1)).reshape(t_count, -1)  # (T, M*C)
            if joint.shape[1] > max_configs:  # too many: draw configurations from the exact joint
                p_m = joint.mean(dim=0)  # (M,)
                picked = torch.multinomial(p_m.cpu(), samples, replacement=True, generator=generator).to(mc.device)
                joint, log_pm = joint[:, picked], p_m[picked].log()
                joint = joint / joint.sum(dim=0, keepdim=True)
        else:  # extend each configuration by a label drawn from p(y_row | m_s)
            p_next = (joint.T @ p_row).clamp_min(0)  # (S, C)
            labels = torch.multinomial(p_next.cpu(), 1, generator=generator).squeeze(1).to(mc.device)  # (S,)
            joint = joint * p_row[:, labels]  # (T, S) unnormalised p(w_t | m_s, y_row = label)
            norm = joint.sum(dim=0)  # (S,) p(label | m_s)
            log_pm = log_pm + norm.log()
            joint = joint / norm
    return torch.tensor(chosen, dtype=torch.long)


def joint_entropy_with_each_row(joint: Tensor, mc: Tensor) -> Tensor:
    """-sum_{m, c} q(m, c) log q(m, c) for every row i (N,), q(m, c) = sum_t joint[t, m] p_t(y_i = c):
    the joint entropy when ``joint`` is P / T over every configuration, and S times the mean
    conditional entropy when it is the sampled configurations' posterior."""
    _, n, c = mc.shape
    chunk = max(1, CHUNK_ENTRIES // (joint.shape[1] * c))
    out = []
    for start in range(0, n, chunk):
        q = torch.einsum("tm,tnc->nmc", joint, mc[:, start:start + chunk].double())  # (chunk, M, C)
        out.append(-torch.xlogy(q, q).sum(dim=(1, 2)))
    return torch.cat(out)


@register_candidate("batchbald", needs={"mc_probs"}, kind="set",
                    params={"samples": Param(SAMPLES, "label configurations sampled once the exact joint "
                                                      "outgrows max_configs (the paper's M)", minimum=1),
                            "max_configs": Param(MAX_CONFIGS, "joint label configurations kept exactly "
                                                              "before sampling", minimum=1)})
def batchbald(out: PoolOutputs, *, budget: int, generator: torch.Generator, samples: int = SAMPLES,
              max_configs: int = MAX_CONFIGS) -> Tensor:
    """BatchBALD, Kirsch et al. 2019: greedy joint mutual information over the MC-dropout samples;
    exact joint up to ``max_configs`` label configurations (MAX_CONFIGS), ``samples`` sampled
    configurations beyond (SAMPLES): ``batchbald:samples=4096``. The MC-dropout sample count T is
    the run's --mc-samples: every candidate reads the same pass."""
    return batchbald_select(out.require("mc_probs"), budget, generator, max_configs=max_configs, samples=samples)
