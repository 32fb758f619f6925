"""GPO with the truncated quadratic loss."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("gpo_truncated_quadratic", family="loss-shape", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="scale of the log-ratio margin ρ = β z")},
                    paper="Tang et al. 2024, "
                          "'Generalized Preference Optimization: A Unified Approach to Offline Alignment', "
                          "arXiv 2402.05749")
def gpo_truncated_quadratic(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """GPO (truncated quadratic): max(0, 1 − β z)², z as in DPO (summed response log-ratios).

    The squared hinge: zero once the scaled margin β z reaches 1 (like SLiC's hinge, no push beyond it),
    quadratic below it, with a continuous gradient at the kink. 1 at policy = reference. Rewards are β·Δ.
    Default β = 0.1 (the paper sweeps β; no single default).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    losses = (1 - beta * (delta_w - delta_l)).clamp_min(0) ** 2
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
