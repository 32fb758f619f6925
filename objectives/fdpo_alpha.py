"""f-DPO with an α-divergence."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, link_preference_loss, register_objective


@register_objective("fdpo_alpha", family="divergence", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature (strength of the α-divergence)"),
                            "alpha": Param(0.5, gt=0, lt=1, doc="α of the divergence: → 0 reverse KL (DPO), "
                                                                 "→ 1 forward KL")},
                    paper="Wang, Jiang, Yang, Liu & Chen 2023, 'Beyond Reverse KL: Generalizing Direct Preference "
                          "Optimization with Diverse Divergence Constraints', arXiv 2309.16240")
def fdpo_alpha(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """f-DPO (α-divergence): −log σ(β f′(u_w) − β f′(u_l)), f′(u) = (1 − u^(−α))/α, u = π_θ/π_ref of the response.

    f(u) = (u^(1−α) − (1−α)u − α)/(α(α−1)), α ∈ (0, 1) as in the paper. With Δ = S_θ − S_ref summed over the
    response, f′ = −expm1(−αΔ)/α, which tends to Δ (DPO) as α → 0 and to 1 − e^(−Δ) (forward KL, fdpo_fkl up
    to a constant) as α → 1; the authors' code drops the constant 1/α, which cancels in the margin. The
    exponent is capped at 50 as in fdpo_fkl. Rewards are β·f′(u). Defaults β = 0.1, α = 0.5 (the paper sweeps
    α ∈ {0.1, 0.3, 0.5, 0.7, 0.9}).
    """
    return link_preference_loss(stats, beta, lambda delta: -torch.expm1((-alpha * delta).clamp(max=50.0)) / alpha)
