"""LiPO-λ: listwise preference optimization with LambdaLoss pair weights."""

import math

import torch

from prefbench.registry import ListLogProbs, ObjectiveOutput, Param, register_objective


@register_objective("lipo", family="listwise", data="listwise", span="response", needs_reference=True,
                    aliases=("lipo_lambda",),
                    params={"beta": Param(0.05, gt=0, doc="inverse temperature of the scores s = β·Δ")},
                    paper="Liu et al. 2024, 'LiPO: Listwise Preference Optimization through Learning-to-Rank', "
                          "arXiv 2402.01878")
def lipo(stats: ListLogProbs, *, beta: float) -> ObjectiveOutput:
    """LiPO-λ: −Σ_{ψ_i>ψ_j} Δ_ij log σ(s_i − s_j), s = β·Δ, Δ_ij = |G_i − G_j|·|1/D(τ_i) − 1/D(τ_j)|.

    Δ = S_θ(y|x) − S_ref(y|x), summed over the response tokens; ψ the responses' scores (labels); the gain
    G = 2^ψ − 1 and the discount D(τ) = log₂(1 + τ) (NDCG's base; another base scales every weight by one
    constant), τ the 1-based rank of a response under the model's own scores s (the LambdaLoss weights of
    Wang et al. 2018); equal s keep their order in the list. The weights are constants of the step: the ranks
    are detached (a sort has no gradient) and ψ is data. The sum runs over every ordered pair of one list,
    unnormalised, as in the paper; lists are independent (nothing is shared across the batch). Ties in ψ form
    no pair. ψ is used as given: the paper's labels lie in [0, 1], and scores on a wider scale (UltraFeedback's
    1–10) grow the gains exponentially, so rescale them in the data. With two responses of labels 1 and 0 the
    weight is 1 − 1/log₂3 ≈ 0.369 at either order, so the loss is that constant times DPO's. Rewards β·Δ of
    each list's best- and worst-scored response. The authors released no code. Default β = 0.05, not
    confirmed against the paper's experimental settings (not readable here): pass β when reproducing them.
    """
    s = beta * (stats.logps - stats.ref_logps)
    valid = stats.mask
    k = s.shape[1]
    order = torch.sort(s.detach().masked_fill(~valid, -math.inf), dim=1, descending=True, stable=True).indices
    positions = torch.arange(1, k + 1, device=s.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions).to(s.dtype)
    gain = torch.pow(2.0, stats.scores.to(s.dtype)) - 1
    inverse_discount = 1 / torch.log2(1 + rank)
    weight = (gain[:, :, None] - gain[:, None, :]).abs() * \
        (inverse_discount[:, :, None] - inverse_discount[:, None, :]).abs()
    ordered = (stats.scores[:, :, None] > stats.scores[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    pair_losses = -weight * torch.nn.functional.logsigmoid(s[:, :, None] - s[:, None, :])
    losses = torch.where(ordered, pair_losses, torch.zeros_like(pair_losses)).sum((1, 2))
    return ObjectiveOutput(losses, *stats.best_and_worst(s))
