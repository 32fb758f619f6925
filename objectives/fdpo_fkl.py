"""f-DPO with the forward KL divergence."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    capped_exp,
    link_preference_loss,
    register_objective,
)


@register_objective("fdpo_fkl", family="divergence", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature (strength of the forward-KL regulariser)")},
                    paper="Wang, Jiang, Yang, Liu & Chen 2023, 'Beyond Reverse KL: Generalizing Direct Preference "
                          "Optimization with Diverse Divergence Constraints', arXiv 2309.16240")
def fdpo_fkl(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """f-DPO (forward KL): −log σ(β f′(u_w) − β f′(u_l)), f′(u) = −1/u, u = π_θ/π_ref of the whole response.

    f(u) = −log u is the forward-KL generator; with Δ = S_θ − S_ref summed over the response, f′ = −e^(−Δ).
    The exponent is capped at 50 (e^50 ≈ 5e21, finite in float32), so a response the policy has made e^50
    times less likely than the reference gives a huge finite logit rather than inf/nan; this is the
    α → 1 end of fdpo_alpha. Rewards are β·f′(u). Default β = 0.1 (the paper's HH run uses 0.03).
    """
    return link_preference_loss(stats, beta, lambda delta: -capped_exp(-delta))
