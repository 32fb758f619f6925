"""Noise Contrastive Alignment (NCA), pairwise form."""

import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("nca_pair", family="anchored", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on each log-ratio")},
                    paper="Chen et al. 2024, 'Noise Contrastive Alignment of Language Models with Explicit Rewards', "
                          "arXiv 2402.05369")
def nca_pair(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """NCA: −log σ(β Δ_w) − ½ log σ(−β Δ_w) − ½ log σ(−β Δ_l), Δ = S_θ − S_ref summed over the response.

    The paper's NCA loss with K = 2 responses, the chosen one labelled best. Each response's
    log-ratio is judged on its own (absolute), not only through the margin, so NCA keeps raising
    the chosen likelihood until β Δ_w = log 2 and keeps lowering the rejected one, where DPO would
    let both fall as long as the margin grows. 2·log 2 when policy == reference. Rewards β·Δ.
    Default β = 0.1 (TRL's default).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    rw, rl = beta * delta_w, beta * delta_l
    losses = -F.logsigmoid(rw) - 0.5 * F.logsigmoid(-rw) - 0.5 * F.logsigmoid(-rl)
    return ObjectiveOutput(losses, rw, rl)
