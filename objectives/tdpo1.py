"""TDPO₁: token-level DPO, the margin corrected by the responses' sequential KL to the reference."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("tdpo1", family="token-level", span="response", needs_reference=True,
                    statistics=("sequence_kl",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the KL-corrected margin")},
                    paper="Zeng et al. 2024, 'Token-level Direct Preference Optimization', arXiv 2404.11999")
def tdpo1(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """TDPO₁: −log σ(β [(Δ_w − Δ_l) − (D_l − D_w)]), D = Σ_t KL(π_ref(·|x, y<t) ‖ π_θ(·|x, y<t)).

    Δ = S_θ − S_ref summed over the response tokens, as in DPO; D is the sequential KL of each response, the
    full-vocabulary KL from the reference's next-token distribution to the policy's summed over the response's
    positions (the engine computes it from a live reference forward, ``sequence_kl``). Gradients
    flow through both KL terms. With D_w = D_l (e.g. at the reference, where both are 0) this is DPO. Rewards
    β(Δ + D), as in the authors' code (``trainers.py``, ``tdpo_loss`` with ``if_tdpo2=False``). Default β = 0.1
    (their ``config/loss/tdpo.yaml``).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    logits = (delta_w - delta_l) - (stats.rejected_kl - stats.chosen_kl)
    return ObjectiveOutput(smoothed_logistic_loss(beta * logits), beta * (delta_w + stats.chosen_kl),
                           beta * (delta_l + stats.rejected_kl))
