"""Pieces several objectives of the DPO family share, kept here so none of them copies another."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prefbench.registry.inputs import ObjectiveOutput, PairLogProbs


def mean_nll(logps: Tensor, tokens: Tensor) -> Tensor:
    """Token-mean negative log-likelihood of each sequence from its summed log-prob."""
    return -logps / tokens.clamp_min(1)


def log_ratio_margin(stats: PairLogProbs) -> tuple[Tensor, Tensor]:
    """Δ_w = S_θ(w) − S_ref(w) and Δ_l = S_θ(l) − S_ref(l) (summed over the objective's span)."""
    return stats.chosen_logps - stats.ref_chosen_logps, stats.rejected_logps - stats.ref_rejected_logps


def smoothed_logistic_loss(logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """−(1−ε) log σ(x) − ε log σ(−x) of the logits x; ε = 0 is exactly −log σ(x) (the ε term is skipped)."""
    losses = -(1 - label_smoothing) * torch.nn.functional.logsigmoid(logits)
    if label_smoothing:
        losses = losses - label_smoothing * torch.nn.functional.logsigmoid(-logits)
    return losses


def sigmoid_preference_loss(stats: PairLogProbs, beta: float, label_smoothing: float = 0.0) -> ObjectiveOutput:
    """−(1−ε) log σ(β z) − ε log σ(−β z) with z = Δ_w − Δ_l; rewards β·Δ (the DPO implicit reward)."""
    delta_w, delta_l = log_ratio_margin(stats)
    losses = smoothed_logistic_loss(beta * (delta_w - delta_l), label_smoothing)
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)


def capped_exp(x: Tensor, cap: float = 50.0) -> Tensor:
    """exp(min(x, cap)): e^50 ≈ 5e21 is finite in float32, so a summed log-ratio far out of range gives a huge
    but finite value (and no inf·0 = nan in the backward pass); beyond the cap the gradient of this term is 0."""
    return torch.exp(x.clamp(max=cap))


def link_preference_loss(stats: PairLogProbs, beta: float, link: Callable[[Tensor], Tensor],
                         clip: float | None = None) -> ObjectiveOutput:
    """−log σ(β[φ(Δ_w) − φ(Δ_l)]) for a link φ of the summed log-ratio Δ = S_θ − S_ref, the logit optionally
    clipped to [−clip, clip]; rewards β·φ(Δ). φ(Δ) = Δ (+ any constant) is exactly DPO; f-DPO's φ is f′(π/π_ref)
    of its divergence f, χPO's is exp(Δ) + Δ."""
    delta_w, delta_l = log_ratio_margin(stats)
    reward_w, reward_l = beta * link(delta_w), beta * link(delta_l)
    logits = reward_w - reward_l
    if clip is not None:
        logits = logits.clamp(-clip, clip)
    return ObjectiveOutput(smoothed_logistic_loss(logits), reward_w, reward_l)
