"""f-DPO with the Jensen–Shannon divergence."""

import math

import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, link_preference_loss, register_objective

LN2 = math.log(2.0)


@register_objective("fdpo_js", family="divergence", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature (strength of the JS regulariser)")},
                    paper="Wang, Jiang, Yang, Liu & Chen 2023, 'Beyond Reverse KL: Generalizing Direct Preference "
                          "Optimization with Diverse Divergence Constraints', arXiv 2309.16240")
def fdpo_js(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """f-DPO (JS): −log σ(β f′(u_w) − β f′(u_l)), f′(u) = log(2u/(1+u)), u = π_θ/π_ref of the whole response.

    f(u) = u log u − (u+1) log((u+1)/2) is the Jensen–Shannon generator; with Δ = S_θ − S_ref summed over the
    response tokens, f′ = log 2 + log σ(Δ), computed stably for any Δ. Replacing f′ by log u (reverse KL)
    gives DPO exactly. Rewards are β·f′(u). Default β = 0.1 (the paper's IMDb setting; its HH runs use 0.3).
    """
    return link_preference_loss(stats, beta, lambda delta: LN2 + F.logsigmoid(delta))
