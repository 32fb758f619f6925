"""Hinge (SLiC) loss on the DPO log-ratio margin."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("hinge", family="loss-shape", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse margin: the loss is zero once z >= 1/β")},
                    paper="Zhao et al. 2023 (SLiC-HF), arXiv 2305.10425; Liu et al. 2024 (RSO), arXiv 2309.06657")
def hinge(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """Hinge: max(0, 1 − β z), z = Δ_w − Δ_l with Δ = S_θ − S_ref summed over response tokens.

    TRL's ``loss_type="hinge"``: the SLiC calibration hinge applied to the reference-normalised
    margin (RSO's form; SLiC-HF itself uses the policy's own log-likelihoods, no reference, plus an
    SFT term). The target margin is 1/β nats of summed log-ratio; past it the pair gives no
    gradient at all, unlike DPO's logistic loss. Equal to 1 when policy == reference. Rewards β·Δ.
    Default β = 0.1 (TRL's default; margin 10).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    losses = torch.relu(1 - beta * (delta_w - delta_l))
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
