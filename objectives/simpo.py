"""Simple Preference Optimization (reference-free, length-normalised)."""

import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective


@register_objective("simpo", family="reference-free", span="response", needs_reference=False,
                    params={"beta": Param(2.0, gt=0, doc="scale of the length-normalised reward"),
                            "gamma": Param(1.0, ge=0, doc="target reward margin γ (not γ/β)")},
                    paper="Meng, Xia & Chen 2024, arXiv 2405.14734")
def simpo(stats: PairLogProbs, *, beta: float, gamma: float) -> ObjectiveOutput:
    """SimPO: −log σ(β·S_θ(y_w|x)/|y_w| − β·S_θ(y_l|x)/|y_l| − γ).

    No reference model and no NLL term (SimPO silently combined with NLL is a pitfall elsewhere).
    γ is the margin itself, so γ/β = 0.5 at the defaults β = 2.0, γ = 1.0 (the paper's range is
    γ/β ≈ 0.3–0.8). Rewards are β·S_θ/|y|.
    """
    reward_w = beta * stats.chosen_logps / stats.chosen_tokens.clamp_min(1)
    reward_l = beta * stats.rejected_logps / stats.rejected_tokens.clamp_min(1)
    losses = -F.logsigmoid(reward_w - reward_l - gamma)
    return ObjectiveOutput(losses, reward_w, reward_l)
