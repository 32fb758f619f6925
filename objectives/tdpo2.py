"""TDPO₂: token-level DPO, the rejected response's sequential KL weighted and the chosen one's detached."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("tdpo2", family="token-level", span="response", needs_reference=True,
                    statistics=("sequence_kl",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the KL-corrected margin"),
                            "alpha": Param(0.5, ge=0, doc="α, the weight of the sequential-KL difference")},
                    paper="Zeng et al. 2024, 'Token-level Direct Preference Optimization', arXiv 2404.11999")
def tdpo2(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """TDPO₂: −log σ(β [(Δ_w − Δ_l) − α (D_l − sg(D_w))]), D = Σ_t KL(π_ref(·|x, y<t) ‖ π_θ(·|x, y<t)).

    Δ and D as in ``tdpo1``. The stop-gradient sg on the chosen response's KL keeps the loss
    from lowering the chosen KL to win the margin, so only the rejected response's KL is regulated; α scales
    it. α = 0 is exactly DPO. Rewards β(Δ + D), as in the authors' code (``trainers.py``, ``tdpo_loss`` with
    ``if_tdpo2=True``). Defaults β = 0.1, α = 0.5 (their ``config/loss/tdpo.yaml``).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    logits = (delta_w - delta_l) - alpha * (stats.rejected_kl - stats.chosen_kl.detach())
    return ObjectiveOutput(smoothed_logistic_loss(beta * logits), beta * (delta_w + stats.chosen_kl),
                           beta * (delta_l + stats.rejected_kl))
