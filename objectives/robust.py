"""Provably robust DPO (rDPO): an unbiased DPO loss under randomly flipped preference labels."""

import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("robust_dpo", family="robust", span="response", needs_reference=True, aliases=("robust",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature"),
                            "label_smoothing": Param(0.1, ge=0, lt=0.5, doc="ε, probability a label is flipped")},
                    paper="Chowdhury, Kini & Natarajan 2024, 'Provably Robust DPO', arXiv 2403.00409")
def robust_dpo(stats: PairLogProbs, *, beta: float, label_smoothing: float) -> ObjectiveOutput:
    """rDPO: [−(1−ε) log σ(β z) + ε log σ(−β z)] / (1 − 2ε), z as in DPO (summed response log-ratios).

    TRL's ``loss_type="robust"``. Where cDPO *adds* ε·(−log σ(−βz)) (and so stops pushing at a
    finite margin), rDPO *subtracts* it and rescales, making the loss an unbiased estimate of the
    clean-label DPO loss: (1−ε)·L(z) + ε·L(−z) = −log σ(β z). The loss can be negative, and its
    gradient always raises the margin. ε = 0 is exactly DPO; ε must be < 0.5. log 2 when policy ==
    reference, whatever ε. Rewards β·Δ. Defaults β = 0.1, ε = 0.1 (the value TRL documents as the
    paper's typical one; TRL's own default ε = 0 makes it plain DPO).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    logits = beta * (delta_w - delta_l)
    losses = (-(1 - label_smoothing) * F.logsigmoid(logits) + label_smoothing * F.logsigmoid(-logits)) \
        / (1 - 2 * label_smoothing)
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
