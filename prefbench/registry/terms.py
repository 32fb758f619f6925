"""Pieces several objectives of the DPO family share, kept here so none of them copies another."""

from __future__ import annotations

import torch
from torch import Tensor

from prefbench.registry.inputs import ObjectiveOutput, PairLogProbs


def mean_nll(logps: Tensor, tokens: Tensor) -> Tensor:
    """Token-mean negative log-likelihood of each sequence from its summed log-prob."""
    return -logps / tokens.clamp_min(1)


def log_ratio_margin(stats: PairLogProbs) -> tuple[Tensor, Tensor]:
    """Δ_w = S_θ(w) − S_ref(w) and Δ_l = S_θ(l) − S_ref(l) (summed over the objective's span)."""
    return stats.chosen_logps - stats.ref_chosen_logps, stats.rejected_logps - stats.ref_rejected_logps


def sigmoid_preference_loss(stats: PairLogProbs, beta: float, label_smoothing: float = 0.0) -> ObjectiveOutput:
    """−(1−ε) log σ(β z) − ε log σ(−β z) with z = Δ_w − Δ_l; rewards β·Δ (the DPO implicit reward)."""
    delta_w, delta_l = log_ratio_margin(stats)
    logits = beta * (delta_w - delta_l)
    losses = -(1 - label_smoothing) * torch.nn.functional.logsigmoid(logits)
    if label_smoothing:
        losses = losses - label_smoothing * torch.nn.functional.logsigmoid(-logits)
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
