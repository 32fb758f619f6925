"""Self-Play Preference Optimization (SPPO) with hard win probabilities."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("sppo_hard", family="anchored", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="1/η: each log-ratio is regressed onto ±1/(2β)")},
                    paper="Wu et al. 2024, 'Self-Play Preference Optimization for Language Model Alignment', "
                          "arXiv 2405.00675")
def sppo_hard(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """SPPO (hard): (Δ_w − 1/(2β))² + (Δ_l + 1/(2β))², Δ = S_θ − S_ref summed over response tokens.

    The SPPO update regresses each response's log-ratio onto η·(P(y ≻ π_t) − ½); TRL's
    ``loss_type="sppo_hard"`` sets the win probability P to 1 for the chosen and 0 for the
    rejected response (the paper estimates P with a preference model, PairRM, outside the
    trainer) and η = 1/β, so the targets are ±1/(2β). Like TRL (and unlike prefbench's IPO) the
    log-ratios are token-summed, so the targets are per sequence, not per token. Minimised (0) at
    Δ_w = 1/(2β), Δ_l = −1/(2β); 1/(2β²) when policy == reference. Rewards β·Δ.
    Default β = 0.1 (TRL's default; targets ±5).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    target = 0.5 / beta
    losses = (delta_w - target) ** 2 + (delta_l + target) ** 2
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
