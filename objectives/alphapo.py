"""AlphaPO: SimPO with a reward-shape parameter α."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, smoothed_logistic_loss


def _alpha_reward(mean_logp: torch.Tensor, alpha: float) -> torch.Tensor:
    # (1 − p^(−α))/α with p = exp(mean log-prob); expm1 keeps it exact as α → 0, where it tends to log p.
    # The exponent is capped at 50 (finite in float32) for responses far less likely than e^(−50/α) per token.
    if alpha == 0:
        return mean_logp
    return -torch.expm1((-alpha * mean_logp).clamp(max=50.0)) / alpha


@register_objective("alphapo", family="reference-free", span="response", needs_reference=False,
                    params={"beta": Param(2.0, gt=0, doc="scale of the reward"),
                            "gamma": Param(1.0, ge=0, doc="target reward margin γ (not γ/β)"),
                            "alpha": Param(0.25, doc="α, the reward shape; 0 is SimPO's length-normalised "
                                                     "log-likelihood")},
                    paper="Gupta et al. 2025, 'AlphaPO: Reward Shape Matters for LLM Alignment', arXiv 2501.03884")
def alphapo(stats: PairLogProbs, *, beta: float, gamma: float, alpha: float) -> ObjectiveOutput:
    """AlphaPO: −log σ(β r_α(y_w) − β r_α(y_l) − γ), r_α(y) = (1 − p̄(y)^(−α))/α, p̄(y) = exp(S_θ(y|x)/|y|).

    p̄ is the geometric-mean token probability of the response (no reference model). r_α is increasing in p̄
    for every α and tends to log p̄ as α → 0, where AlphaPO is exactly SimPO with the same β and γ; α > 0
    flattens the reward for likely responses and steepens it for unlikely ones. γ is the margin itself, as in
    simpo. Rewards are β·r_α, as in TRL's implementation (CPOTrainer with alpha ≠ 0). Defaults β = 2, γ = 1
    (simpo's, so α = 0 reproduces simpo's defaults) and α = 0.25.
    """
    reward_w = beta * _alpha_reward(stats.chosen_logps / stats.chosen_tokens.clamp_min(1), alpha)
    reward_l = beta * _alpha_reward(stats.rejected_logps / stats.rejected_tokens.clamp_min(1), alpha)
    return ObjectiveOutput(smoothed_logistic_loss(reward_w - reward_l - gamma), reward_w, reward_l)
