"""Alignment via Optimal Transport (AOT), unpaired: chosen and rejected log-ratios matched by rank."""

import torch

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("aot_unpaired", batch_level=True, family="distributional", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature"),
                            "label_smoothing": Param(0.0, ge=0, lt=0.5, doc="ε, as in cDPO")},
                    paper="Melnyk et al. 2024, 'Distributional Preference Alignment of LLMs via Optimal Transport', "
                          "arXiv 2406.05882")
def aot_unpaired(stats: PairLogProbs, *, beta: float, label_smoothing: float) -> ObjectiveOutput:
    """AOT (unpaired): −(1−ε) log σ(β d_k) − ε log σ(−β d_k), d = sort(Δ_w) − sort(Δ_l), Δ = S_θ − S_ref.

    The chosen log-ratios and the rejected log-ratios are each sorted *across the batch* and
    matched by rank, so the chosen responses' reward distribution is pushed to dominate the
    rejected ones' without using which rejected response belongs to which chosen one (the paper's
    unpaired setting); each matched pair gets the cDPO loss (ε = 0: DPO). Exactly TRL's
    ``loss_type="aot_unpaired"``.

    Not a per-pair loss: element k is the loss of rank k, and the value depends on which pairs
    share a call (in prefbench's engine: one process's share of a micro-batch; see ``aot``). A batch of one pair is exactly cDPO (ε) / DPO, and so is any batch
    whose chosen and rejected log-ratios are ranked alike. Adding any constants to a pair's policy
    and reference log-probs alike changes nothing. Rewards are per pair, β·Δ (as TRL logs).
    Defaults β = 0.1, ε = 0 (TRL's).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    chosen_sorted, _ = torch.sort(delta_w)
    rejected_sorted, _ = torch.sort(delta_l)
    losses = smoothed_logistic_loss(beta * (chosen_sorted - rejected_sorted), label_smoothing)
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
