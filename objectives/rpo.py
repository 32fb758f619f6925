"""Regularised Preference Optimization: DPO plus an NLL term on the chosen response."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    mean_nll,
    register_objective,
    sigmoid_preference_loss,
)


@register_objective("rpo", family="dpo", span="response", needs_reference=True, adds_nll=True,
                    params={"beta": Param(0.1, gt=0, doc="DPO inverse temperature"),
                            "alpha": Param(1.0, ge=0, doc="weight of the chosen-response NLL")},
                    paper="Pang et al. 2024 (Iterative RPO), arXiv 2404.19733; Liu et al. 2024, arXiv 2405.16436")
def rpo(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """RPO: −log σ(β z) + α·NLL(y_w|x), z as in DPO, NLL token-averaged over the chosen response.

    Defaults β = 0.1, α = 1.0. α = 0 is exactly DPO.
    """
    pref = sigmoid_preference_loss(stats, beta)
    return ObjectiveOutput(pref.losses + alpha * mean_nll(stats.chosen_logps, stats.chosen_tokens), pref.chosen_rewards, pref.rejected_rewards)
