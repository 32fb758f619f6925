"""Contrastive Preference Optimization: reference-free DPO on summed log-probs plus an NLL term."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    mean_nll,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("cpo", family="reference-free", span="response", needs_reference=False, adds_nll=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-likelihood margin"),
                            "alpha": Param(1.0, ge=0, doc="weight of the chosen-response NLL")},
                    paper="Xu, Sharaf, Chen, Tan, Shen, Van Durme, Murray & Kim 2024, 'Contrastive Preference "
                          "Optimization: Pushing the Boundaries of LLM Performance in Machine Translation', "
                          "arXiv 2401.08417")
def cpo(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """CPO: −log σ(β S_θ(y_w|x) − β S_θ(y_l|x)) + α·NLL(y_w|x), S summed over the response, NLL token-averaged.

    DPO with a uniform reference (the reference term dropped), plus behaviour cloning on the chosen response.
    The preference term uses summed log-probs, as in the paper and TRL (CPOTrainer, loss_type="sigmoid");
    the NLL is the chosen response's token-mean NLL per pair (TRL pools the tokens of all chosen responses in
    the batch instead; the two agree for one pair, and otherwise differ only in how pairs are weighted).
    α = 0 leaves the preference term alone. Rewards are β·S_θ, as in TRL. Defaults β = 0.1, α = 1.0 (the
    paper's unweighted sum; TRL's cpo_alpha default).
    """
    reward_w, reward_l = beta * stats.chosen_logps, beta * stats.rejected_logps
    losses = smoothed_logistic_loss(reward_w - reward_l) + alpha * mean_nll(stats.chosen_logps, stats.chosen_tokens)
    return ObjectiveOutput(losses, reward_w, reward_l)
