"""Anchored Preference Optimization, APO-down."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("apo_down", family="anchored", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratios")},
                    paper="D'Oosterlinck et al. 2024, 'Anchored Preference Optimization and Contrastive Revisions', "
                          "arXiv 2408.06266")
def apo_down(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """APO-down: σ(β Δ_w) + (1 − σ(β (Δ_w − Δ_l))), Δ = S_θ − S_ref summed over response tokens.

    The paper's Eq. 8: for data whose chosen responses are *worse* than the model's own outputs,
    it lowers the chosen likelihood and the rejected one more (the margin term still rises). At
    policy == reference the two terms' gradients on the chosen log-prob cancel exactly (only the
    rejected one is pushed down); once the rejected log-ratio is below zero, the chosen one is
    pushed down too. Bounded in (0, 2); 1 when policy == reference. Rewards β·Δ.
    Default β = 0.1 (TRL's default).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    rw, rl = beta * delta_w, beta * delta_l
    losses = torch.sigmoid(rw) + torch.sigmoid(rl - rw)   # 1 − σ(x) = σ(−x), without the cancellation
    return ObjectiveOutput(losses, rw, rl)
