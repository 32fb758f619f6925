"""α-DPO (AlphaDPO): SimPO's reward with an instance-adaptive margin from the reference model."""

import torch

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, smoothed_logistic_loss


def _batch_zscore(x: torch.Tensor) -> torch.Tensor:
    """(x − mean)/std over the batch (unbiased std); 0 for a batch of one pair or of equal values."""
    centred = x - x.mean()
    if x.numel() < 2:
        return centred
    return centred / x.std().clamp_min(1e-6)


@register_objective("alpha_dpo", batch_level=True, family="dpo", span="response", needs_reference=True,
                    params={"beta": Param(2.5, gt=0, doc="scale of the length-normalised reward"),
                            "gamma": Param(1.5, ge=0, doc="γ, the fixed part of the target margin (not γ/β)"),
                            "alpha": Param(0.2, ge=0, doc="α, weight of the adaptive (reference-based) margin")},
                    paper="Wu et al. 2025, 'AlphaDPO: Adaptive Reward Margin for Direct Preference Optimization', "
                          "arXiv 2410.10148")
def alpha_dpo(stats: PairLogProbs, *, beta: float, gamma: float, alpha: float) -> ObjectiveOutput:
    """α-DPO: −log σ(β(ū_w − ū_l) − γ − αβ·sg[ẑ]), ū = S_θ/|y|, ẑ the batch z-score of (ū_w − ū_l) − (ū′_w − ū′_l).

    ū and ū′ are the token-mean log-probs of the policy and the reference over the response. The reward is
    SimPO's; the margin adds, per pair, α·β times the standardised length-normalised log-ratio margin — the
    implicit reference π_ref^α-reweighting of the paper — detached, as in the authors' code. α = 0 is exactly
    SimPO with the same β and γ. Rewards are β(ū − α(ū − ū′)), the authors' logged rewards.
    Not done, because an objective is a pure function of one batch: the authors standardise with running
    (momentum 0.9) estimates of the mean and std across batches; here the mean and std are those of the
    pairs passed in one call (a micro-batch under gradient accumulation), and ẑ = 0 for a single pair.
    Defaults β = 2.5, γ = 1.5 (γ/β = 0.6), α = 0.2: the authors' Llama-3-8B-Instruct configuration.
    """
    mean_w = stats.chosen_logps / stats.chosen_tokens.clamp_min(1)
    mean_l = stats.rejected_logps / stats.rejected_tokens.clamp_min(1)
    ref_w = stats.ref_chosen_logps / stats.chosen_tokens.clamp_min(1)
    ref_l = stats.ref_rejected_logps / stats.rejected_tokens.clamp_min(1)
    adaptive = _batch_zscore(((mean_w - mean_l) - (ref_w - ref_l)).detach())
    losses = smoothed_logistic_loss(beta * (mean_w - mean_l) - gamma - alpha * beta * adaptive)
    return ObjectiveOutput(losses, beta * (mean_w - alpha * (mean_w - ref_w)), beta * (mean_l - alpha * (mean_l - ref_l)))
