"""Weighted Preference Optimization: DPO with each pair weighted by its probability under the policy."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("wpo", family="dpo", span="response", needs_reference=True,
                    params={"beta": Param(0.01, gt=0, doc="DPO inverse temperature")},
                    paper="Zhou, Agrawal, Zhang, Indurthi, Zhao, Song, Xu & Zhu 2024, 'WPO: Enhancing RLHF with "
                          "Weighted Preference Optimization', arXiv 2406.11827")
def wpo(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """WPO: −w·log σ(β z), w = sg[exp(S_θ(y_w|x)/|y_w| + S_θ(y_l|x)/|y_l|)], z as in DPO (summed log-ratios).

    Each pair is weighted by the product of its two responses' per-token-normalised probabilities under the
    current policy (geometric-mean token probability), detached, so off-policy pairs the policy would rarely
    generate count less. w ≤ 1; it is clamped at 1 as in the authors' code.
    Not done: the paper's final weighting "aligns" each token's probability by dividing it by Σ_v π(v)² over
    the vocabulary at that position, which needs the full per-token distribution; objectives here see only
    sequence sums and token counts, so this is the paper's unaligned weight. Rewards are β·Δ.
    Default β = 0.01 (the authors' configs).
    """
    pref = sigmoid_preference_loss(stats, beta)
    with torch.no_grad():
        mean_w = stats.chosen_logps / stats.chosen_tokens.clamp_min(1)
        mean_l = stats.rejected_logps / stats.rejected_tokens.clamp_min(1)
        weight = torch.exp(mean_w + mean_l).clamp(max=1)
    return ObjectiveOutput(weight * pref.losses, pref.chosen_rewards, pref.rejected_rewards)
