"""DiscoPOP: the log-ratio modulated loss (LRML) discovered by LLM-driven objective search."""

import torch
import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("discopop", family="dpo", span="response", needs_reference=True, aliases=("lrml",),
                    params={"beta": Param(0.05, gt=0, doc="inverse temperature on the log-ratio margin"),
                            "tau": Param(0.05, gt=0, doc="temperature τ of the logistic/exponential mixing weight")},
                    paper="Lu et al. 2024, 'Discovering Preference Optimization Algorithms with and for Large "
                          "Language Models', arXiv 2406.08414")
def discopop(stats: PairLogProbs, *, beta: float, tau: float) -> ObjectiveOutput:
    """DiscoPOP: (1 − σ(βz/τ))·(−log σ(βz)) + σ(βz/τ)·exp(−βz), z as in DPO (summed response log-ratios).

    A blend of DPO's logistic loss and an exponential loss, weighted by σ(βz/τ): pairs the policy
    already ranks correctly (z > 0) get mostly the exponential loss, mis-ranked ones mostly the
    logistic loss; a small τ makes the switch sharp. TRL's ``loss_type="discopop"``.

    The loss is not convex: its slope at z = 0 is d/d(βz) = (1 − log 2)/(4τ) − ¾, positive for
    τ < (1 − log 2)/3 ≈ 0.102, so at the default τ = 0.05 gradient descent from policy ==
    reference first *lowers* the margin, towards a local minimum at β z ≈ −0.119 (local maximum
    at β z ≈ 0.072); TRL's loss does the same. ½·log 2 + ½ ≈ 0.8466 when policy == reference.
    The exponential term is computed as exp(log σ(βz/τ) − βz): equal to TRL's σ(βz/τ)·exp(−βz),
    but never inf·0 = NaN for a hugely negative margin. Rewards β·Δ.
    Defaults β = 0.05, τ = 0.05, the paper's: its discovery runs used β = 0.05, and τ = β turns
    σ(βz/τ) into the σ(z) of the discovered code. (TRL's default β is 0.1.)
    """
    delta_w, delta_l = log_ratio_margin(stats)
    logits = beta * (delta_w - delta_l)
    log_weight = F.logsigmoid(logits / tau)
    losses = -F.logsigmoid(logits) * torch.sigmoid(-logits / tau) + torch.exp(log_weight - logits)
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
