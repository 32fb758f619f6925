"""Anchored Preference Optimization, APO-zero."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("apo_zero", family="anchored", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on each log-ratio")},
                    paper="D'Oosterlinck et al. 2024, 'Anchored Preference Optimization and Contrastive Revisions', "
                          "arXiv 2408.06266")
def apo_zero(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """APO-zero: (1 − σ(β Δ_w)) + σ(β Δ_l), Δ = S_θ − S_ref summed over response tokens.

    The paper's Eq. 7: for data whose chosen responses are better than the model's own outputs,
    it anchors each response to the reference, always raising the chosen likelihood and lowering
    the rejected one (DPO only constrains their difference and may lower both). Bounded in (0, 2);
    1 when policy == reference. Rewards β·Δ. Default β = 0.1 (TRL's default).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    rw, rl = beta * delta_w, beta * delta_l
    losses = torch.sigmoid(-rw) + torch.sigmoid(rl)   # 1 − σ(x) = σ(−x), without the cancellation
    return ObjectiveOutput(losses, rw, rl)
