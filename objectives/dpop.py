"""DPO-Positive (DPOP, the Smaug loss): DPO that also keeps the chosen response above the reference."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("dpop", family="dpo", span="response", needs_reference=True, aliases=("dpo_positive",),
                    params={"beta": Param(0.3, gt=0, doc="inverse temperature"),
                            "lam": Param(50.0, ge=0, doc="λ, weight of the chosen-below-reference penalty")},
                    paper="Pal, Karkhanis, Dooley, Roberts, Naidu & White 2024, 'Smaug: Fixing Failure Modes of "
                          "Preference Optimisation with DPO-Positive', arXiv 2402.13228")
def dpop(stats: PairLogProbs, *, beta: float, lam: float) -> ObjectiveOutput:
    """DPOP: −log σ(β[z − λ·max(0, S_ref(y_w|x) − S_θ(y_w|x))]), z as in DPO (summed response log-ratios).

    The penalty sits inside the sigmoid and is scaled by β with the margin, as in the paper. It is zero while
    the policy keeps the chosen response at least as likely as the reference does, so DPOP equals DPO there;
    it only acts once DPO's failure mode (the chosen log-prob falling below the reference while the margin
    still grows) sets in. λ = 0 is exactly DPO. Defaults β = 0.3, λ = 50 (the paper's; it reports λ robust
    over 5–500). Rewards are β·Δ, as in DPO.
    """
    delta_w, delta_l = log_ratio_margin(stats)
    penalty = (-delta_w).clamp_min(0)
    losses = smoothed_logistic_loss(beta * (delta_w - delta_l - lam * penalty))
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
