"""GPO with the Savage loss."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("gpo_savage", family="loss-shape", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="scale of the log-ratio margin ρ = β z")},
                    paper="Tang et al. 2024, "
                          "'Generalized Preference Optimization: A Unified Approach to Offline Alignment', "
                          "arXiv 2402.05749")
def gpo_savage(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """GPO (Savage): 1/(1 + e^(β z))² = σ(−β z)², z as in DPO (summed response log-ratios).

    The Savage loss is bounded (in (0, 1)) and non-convex: badly misranked pairs saturate at 1 and stop
    contributing gradient, which makes it robust to flipped labels. 1/4 at policy = reference.
    Rewards are β·Δ. Default β = 0.1 (the paper sweeps β; no single default).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    return ObjectiveOutput(torch.sigmoid(-beta * (delta_w - delta_l)) ** 2, beta * delta_w, beta * delta_l)
