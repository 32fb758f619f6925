"""χ²-Preference Optimization (χPO): DPO with the log link replaced by a χ²+KL link."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    capped_exp,
    link_preference_loss,
    register_objective,
)


@register_objective("chipo", family="divergence", span="response", needs_reference=True, aliases=("chi_po",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature (strength of the χ²+KL regulariser)"),
                            "r_max": Param(5.0, gt=0, doc="R_max: the logit is clipped to [−2R_max, 2R_max]")},
                    paper="Huang, Zhan, Xie, Lee, Sun, Krishnamurthy & Foster 2024, 'Correcting the Mythos of "
                          "KL-Regularization: Direct Alignment without Overoptimization via Chi-Squared Preference "
                          "Optimization', arXiv 2407.13399")
def chipo(stats: PairLogProbs, *, beta: float, r_max: float) -> ObjectiveOutput:
    """χPO: −log σ(clip_{2R_max}[β φ(u_w) − β φ(u_l)]), φ(u) = u + log u, u = π_θ/π_ref of the whole response.

    With Δ = S_θ − S_ref summed over the response, φ = e^Δ + Δ: DPO's log link plus the χ² term u, which
    penalises the policy much harder for putting more mass than the reference on a response (pessimism
    against over-optimisation). The logit is clipped to [−2R_max, 2R_max] as in the paper's algorithm (R_max
    bounds the reward); beyond the clip the loss is constant and its gradient 0. e^Δ is capped at e^50.
    Rewards are β·φ(u). Defaults β = 0.1 and R_max = 5 (clip at ±10, where the logistic loss is within 5e-5 of
    0 on the correct side); the sources checked fix neither, so both are this registry's choice.
    """
    return link_preference_loss(stats, beta, lambda delta: capped_exp(delta) + delta, clip=2 * r_max)
