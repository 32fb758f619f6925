"""JPO with an SFT term on the chosen response."""

from prefbench.registry import (
    ObjectiveError,
    ObjectiveOutput,
    PairLogProbs,
    Param,
    mean_nll,
    register_objective,
    sigmoid_preference_loss,
)


@register_objective("sft_jpo", family="joint", span="joint", needs_reference=True, adds_nll=True,
                    params={"beta": Param(0.1, gt=0, doc="JPO inverse temperature"),
                            "alpha": Param(1.0, ge=0, doc="weight of NLL(y_w | x_w)")},
                    paper="Bansal et al. 2024, arXiv 2404.00530 (JPO) + SFT regulariser")
def sft_jpo(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """SFT+JPO: JPO(joint span) + α·NLL(y_w | x_w).

    The preference term uses joint-span statistics; the NLL is token-averaged over the chosen
    *response* only, so ``stats.chosen_response_logps/tokens`` must be given (the engine always
    provides them). Defaults β = 0.1, α = 1.0.
    """
    if stats.chosen_response_logps is None or stats.chosen_response_tokens is None:
        raise ObjectiveError("objective 'sft_jpo' needs chosen_response_logps and chosen_response_tokens "
                             "(response-span statistics for its NLL term)")
    pref = sigmoid_preference_loss(stats, beta)
    return ObjectiveOutput(pref.losses + alpha * mean_nll(stats.chosen_response_logps, stats.chosen_response_tokens), pref.chosen_rewards, pref.rejected_rewards)
