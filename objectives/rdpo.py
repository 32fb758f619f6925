"""Length-regularised DPO (R-DPO)."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("rdpo", family="dpo", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratio margin"),
                            "alpha": Param(0.01, ge=0, doc="α, length credit per token of |y_w| − |y_l|")},
                    paper="Park, Rafailov, Ermon & Finn 2024, 'Disentangling Length from Quality in DPO', "
                          "arXiv 2403.19159")
def rdpo(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """R-DPO: −log σ(β z + α(|y_w| − |y_l|)), z as in DPO (summed response log-ratios), |y| in response tokens.

    The sign is the paper's and follows from its derivation: DPO's closed form for the length-penalised
    objective max E[r − α|y|] − β·KL reads r = β·log(π/π_ref) + α|y| + const, so the Bradley–Terry logit gains
    +α(|y_w| − |y_l|). A pair whose chosen response is the longer one already has part of its preference
    explained by length and pushes the policy less; the policy's implicit reward β·Δ learns r − α|y|.
    Subtracting the term instead (as some re-implementations do) would reward length.
    α = 0 is exactly DPO. α is per token, so it must stay small next to β z: a length difference of 100 tokens
    shifts the logit by 100·α. Defaults β = 0.1, α = 0.01 (the paper tunes α per dataset; no single value is
    prescribed). Rewards are β·Δ, as in DPO.
    """
    delta_w, delta_l = log_ratio_margin(stats)
    length_gap = (stats.chosen_tokens - stats.rejected_tokens).to(delta_w.dtype)
    losses = smoothed_logistic_loss(beta * (delta_w - delta_l) + alpha * length_gap)
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
