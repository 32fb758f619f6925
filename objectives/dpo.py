"""Direct Preference Optimization."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("dpo", family="dpo", span="response", needs_reference=True, aliases=("sigmoid",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratio margin")},
                    paper="Rafailov et al. 2023, arXiv 2305.18290")
def dpo(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """DPO: −log σ(β z), z = [S_θ(y_w|x) − S_ref(y_w|x)] − [S_θ(y_l|x) − S_ref(y_l|x)].

    Log-probs are summed over response tokens only (prompt tokens masked). Rewards are β·Δ.
    Default β = 0.1.
    """
    return sigmoid_preference_loss(stats, beta)
