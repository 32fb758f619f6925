"""Kahneman-Tversky Optimization (KTO): single responses labelled desirable or undesirable."""

import torch

from prefbench.registry import ObjectiveOutput, Param, UnpairedLogProbs, register_objective


@register_objective("kto", family="unpaired", data="unpaired", span="response", needs_reference=True,
                    batch_level=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature of the implicit reward β·Δ"),
                            "desirable_weight": Param(1.0, gt=0, doc="λ_D, the weight of a desirable example's loss"),
                            "undesirable_weight": Param(1.0, gt=0,
                                                        doc="λ_U, the weight of an undesirable example's loss")},
                    paper="Ethayarajh et al. 2024, 'KTO: Model Alignment as Prospect Theoretic Optimization', "
                          "arXiv 2402.01306")
def kto(stats: UnpairedLogProbs, *, beta: float, desirable_weight: float, undesirable_weight: float
        ) -> ObjectiveOutput:
    """KTO: λ_D (1 − σ(β (Δ − z_ref))) for a desirable example, λ_U (1 − σ(β (z_ref − Δ))) for an undesirable one.

    Δ = S_θ(y|x) − S_ref(y|x), summed over the response tokens. z_ref, the reference point, is the
    batch's estimate of KL(π_θ ‖ π_ref): the mean over the batch of S_θ(y'|x) − S_ref(y'|x) for
    mismatched sequences (each example's prompt x with another example's response y'), clamped at 0
    and detached, so no gradient flows through it (paper §3.2 and eq. 7; TRL 1.16's KTOTrainer,
    ``loss_type="kto"``, computes the same). The losses therefore depend on the whole batch
    (batch-level). Without mismatched sequences z_ref = 0. Paired data gives each pair's chosen
    response as desirable and its rejected one as undesirable (paper §4), so λ_D = λ_U balances them;
    the paper recommends λ_D n_D / (λ_U n_U) in [1, 4/3] for unbalanced data. Rewards β·Δ; the
    reference point β·z_ref is returned as ``rejected_rewards``. Defaults β = 0.1, λ_D = λ_U = 1.
    λ/2 per example when policy == reference and z_ref = 0.
    """
    z_ref = stats.kl_reference_point()
    delta = stats.logps - stats.ref_logps
    sign = torch.where(stats.desirable, 1.0, -1.0).to(delta)
    weight = torch.where(stats.desirable, delta.new_tensor(desirable_weight), delta.new_tensor(undesirable_weight))
    losses = weight * (1 - torch.sigmoid(sign * beta * (delta - z_ref)))
    return ObjectiveOutput(losses, beta * delta, (beta * z_ref).expand_as(delta))
