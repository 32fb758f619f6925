"""SimPER: reference-free, hyperparameter-free preference optimisation on inverse perplexity."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, register_objective


@register_objective("simper", family="reference-free", span="response", needs_reference=False,
                    paper="Xiao, Yuan, Chen, Li, Liang, Ren & Honavar 2025, 'SimPER: A Minimalist Approach to "
                          "Preference Alignment without Hyperparameters', arXiv 2502.00883")
def simper(stats: PairLogProbs) -> ObjectiveOutput:
    """SimPER: exp(S_θ(y_l|x)/|y_l|) − exp(S_θ(y_w|x)/|y_w|), the rejected minus the chosen inverse perplexity.

    exp(S/|y|) is the geometric-mean token probability, 1/perplexity, over the response tokens. No reference
    model, no β, no margin; each pair's loss lies in (−1, 1) and is minimised by making the chosen response
    certain and the rejected one impossible. Rewards are the token-mean log-probs S/|y|, as in the authors'
    code. No hyperparameters.
    """
    mean_w = stats.chosen_logps / stats.chosen_tokens.clamp_min(1)
    mean_l = stats.rejected_logps / stats.rejected_tokens.clamp_min(1)
    return ObjectiveOutput(torch.exp(mean_l) - torch.exp(mean_w), mean_w, mean_l)
