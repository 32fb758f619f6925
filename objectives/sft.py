"""Supervised fine-tuning on the chosen response."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, mean_nll, register_objective


@register_objective("sft", family="supervised", span="response", needs_reference=False, adds_nll=True,
                    paper="standard maximum-likelihood fine-tuning")
def sft(stats: PairLogProbs) -> ObjectiveOutput:
    """SFT: NLL(y_w | x_w), the token-mean negative log-likelihood of the chosen response.

    loss = −S_θ(y_w|x_w) / |y_w|. The rejected response is ignored by the loss; rewards are the
    token-mean log-probs of each response, so the logged margin shows whether SFT alone separates them.
    """
    chosen_mean = stats.chosen_logps / stats.chosen_tokens.clamp_min(1)
    rejected_mean = stats.rejected_logps / stats.rejected_tokens.clamp_min(1)
    return ObjectiveOutput(mean_nll(stats.chosen_logps, stats.chosen_tokens), chosen_mean, rejected_mean)
