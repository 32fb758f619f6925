"""GPO with the exponential loss."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, capped_exp, log_ratio_margin, register_objective


@register_objective("gpo_exponential", family="loss-shape", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="scale of the log-ratio margin ρ = β z")},
                    paper="Tang et al. 2024, "
                          "'Generalized Preference Optimization: A Unified Approach to Offline Alignment', "
                          "arXiv 2402.05749")
def gpo_exponential(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """GPO (exponential): exp(−β z), z as in DPO (summed response log-ratios).

    GPO writes offline preference losses as f(βz) for a convex f; logistic f is DPO, hinge is SLiC (hinge),
    squared is IPO-like. The exponential f (AdaBoost's) decays like the logistic one for correct pairs but grows
    exponentially for misranked ones. 1 at policy = reference. The exponent is capped at 50 (e^50 ≈ 5e21,
    finite in float32): a pair misranked by a scaled margin beyond −50 gets that constant loss and no gradient
    instead of inf. Rewards are β·Δ. Default β = 0.1 (the paper sweeps β; no single default).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    return ObjectiveOutput(capped_exp(-beta * (delta_w - delta_l)), beta * delta_w, beta * delta_l)
