"""FocalPO: DPO scaled by a focal factor that favours pairs the model already ranks correctly."""

import torch
import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("focalpo", family="dpo", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="DPO inverse temperature"),
                            "gamma": Param(0.05, ge=0, doc="γ, exponent of the focal factor σ(βz)^γ")},
                    paper="Liu, Yu, Zhou, Gu & Tresp 2025, 'FocalPO: Enhancing Preference Optimizing by Focusing "
                          "on Correct Preference Rankings', arXiv 2501.06645")
def focalpo(stats: PairLogProbs, *, beta: float, gamma: float) -> ObjectiveOutput:
    """FocalPO: −σ(βz)^γ · log σ(βz), z as in DPO (summed response log-ratios).

    p = σ(βz) is the model's probability that the pair is ranked correctly. Focal loss multiplies the
    log-loss by (1 − p)^γ to emphasise hard examples; FocalPO uses p^γ instead, down-weighting misranked pairs
    (small p), which DPO's gradient emphasises but rarely fixes. The factor is part of the loss (not detached),
    as in focal loss. γ = 0 is exactly DPO. Computed as −exp(γ·log p)·log p from log σ, stable for any z.
    Defaults β = 0.1 (the DPO default) and γ = 0.05, a small exponent (p^γ ∈ [0.97, 1] for p ≥ ½); the paper
    keeps one γ fixed across all its experiments.
    """
    delta_w, delta_l = log_ratio_margin(stats)
    log_p = F.logsigmoid(beta * (delta_w - delta_l))
    return ObjectiveOutput(-torch.exp(gamma * log_p) * log_p, beta * delta_w, beta * delta_l)
