"""Identity Preference Optimization."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective


@register_objective("ipo", family="loss-shape", span="response", needs_reference=True,
                    params={"tau": Param(0.1, gt=0, doc="regularisation τ; the target margin is 1/(2τ)")},
                    paper="Azar et al. 2023, arXiv 2310.12036")
def ipo(stats: PairLogProbs, *, tau: float) -> ObjectiveOutput:
    """IPO: (z̄ − 1/(2τ))², z̄ = Δ_w/|y_w| − Δ_l/|y_l| with Δ = S_θ − S_ref over response tokens.

    The log-ratios are *token-averaged* over the response (prompt tokens excluded), as in the
    paper's reference implementation; summing instead changes the scale of z̄ with length and is
    a known bug elsewhere. Minimised at z̄ = 1/(2τ). Rewards are the token-mean log-ratios Δ/|y|.
    Default τ = 0.1.
    """
    mean_w = (stats.chosen_logps - stats.ref_chosen_logps) / stats.chosen_tokens.clamp_min(1)
    mean_l = (stats.rejected_logps - stats.ref_rejected_logps) / stats.rejected_tokens.clamp_min(1)
    losses = (mean_w - mean_l - 1 / (2 * tau)) ** 2
    return ObjectiveOutput(losses, mean_w, mean_l)
