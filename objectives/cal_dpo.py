"""Calibrated DPO: DPO's contrastive term plus regression of each log-ratio onto a fixed scale."""

import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("cal_dpo", family="anchored", span="response", needs_reference=True,
                    params={"beta": Param(0.001, gt=0, doc="β: the calibration targets are ±1/(2β)")},
                    paper="Xiao, Yuan, Zhu, Li & Honavar 2024, 'Cal-DPO: Calibrated Direct Preference Optimization "
                          "for Language Model Alignment', arXiv 2412.14516")
def cal_dpo(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """Cal-DPO: −log σ(Δ_w − Δ_l) + ½[(Δ_w − 1/(2β))² + (Δ_l + 1/(2β))²], Δ = S_θ − S_ref summed over the response.

    As in the authors' code: the contrastive term has no β; β only sets the calibration targets ±1/(2β) for
    the summed log-ratios of the chosen and rejected responses, so the chosen response's likelihood is pushed
    above the reference and the rejected one's below, not only apart. The ½ is the authors' weight on the
    calibration term (their per-batch MSEs average to this per pair). Rewards are the unscaled log-ratios Δ.
    Default β = 0.001 (the authors' training script; their example config uses 0.002): targets of ±500 nats,
    so the calibration term dominates the loss by design.
    """
    delta_w, delta_l = log_ratio_margin(stats)
    target = 1 / (2 * beta)
    losses = -F.logsigmoid(delta_w - delta_l) + 0.5 * ((delta_w - target) ** 2 + (delta_l + target) ** 2)
    return ObjectiveOutput(losses, delta_w, delta_l)
