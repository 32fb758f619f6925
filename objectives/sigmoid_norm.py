"""Length-normalised DPO (Tülu 3's "DPO-norm", TRL's sigmoid_norm)."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("dpo_norm", family="dpo", span="response", needs_reference=True, aliases=("sigmoid_norm",),
                    params={"beta": Param(5.0, gt=0, doc="inverse temperature on the token-mean log-ratio margin")},
                    paper="Lambert et al. 2024 (Tülu 3), arXiv 2411.15124, Eq. 6; length normalisation as in "
                          "Meng, Xia & Chen 2024 (SimPO), arXiv 2405.14734")
def dpo_norm(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """DPO-norm: −log σ(β z̄), z̄ = Δ_w/|y_w| − Δ_l/|y_l| with Δ = S_θ − S_ref over response tokens.

    DPO on token-averaged log-ratios (policy and reference both divided by the response's token
    count), so a long response no longer weighs more than a short one: TRL's
    ``loss_type="sigmoid_norm"`` and open-instruct's ``dpo_norm``. With one token per response it
    is DPO. The margin is per token, so β must be far larger than DPO's: the default β = 5 is
    Tülu 3's (with TRL's generic default β = 0.1, per-token log-ratios well below a nat keep β z̄
    small and the loss near log 2). Rewards are β·Δ/|y|, the implicit reward this loss compares
    (TRL logs the summed β·Δ).
    """
    per_token = PairLogProbs(stats.chosen_logps / stats.chosen_tokens.clamp_min(1),
                             stats.rejected_logps / stats.rejected_tokens.clamp_min(1),
                             stats.chosen_tokens, stats.rejected_tokens,
                             stats.ref_chosen_logps / stats.chosen_tokens.clamp_min(1),
                             stats.ref_rejected_logps / stats.rejected_tokens.clamp_min(1))
    return sigmoid_preference_loss(per_token, beta)
