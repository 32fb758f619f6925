"""β-DPO: DPO whose β is adapted per batch from the batch's margins."""

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)

BETA_FLOOR = 1e-3  # the authors clamp the adapted β at 1e-3, so a very negative batch never flips the loss


@register_objective("beta_dpo", batch_level=True, family="dpo", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="β₀, the base inverse temperature"),
                            "alpha": Param(0.6, ge=0, doc="α, how strongly β follows the batch's mean margin"),
                            "m0": Param(0.0, doc="M₀, the margin β is centred on (fixed here; a running mean "
                                                 "in the paper)")},
                    paper="Wu et al. 2024, 'β-DPO: Direct Preference Optimization "
                          "with Dynamic β', arXiv 2407.08639")
def beta_dpo(stats: PairLogProbs, *, beta: float, alpha: float, m0: float) -> ObjectiveOutput:
    """β-DPO: −log σ(β_B z), β_B = sg[max(β₀·(1 + α(mean_B(z) − M₀)), 1e-3)], z as in DPO (summed log-ratios).

    z_i = Δ_w − Δ_l is the unscaled log-ratio margin of pair i (the authors' M_i) and mean_B runs over the
    pairs passed in one call, so β_B is one number per batch (a micro-batch under gradient accumulation). It
    is detached, as in the authors' code: each pair's gradient is DPO's at temperature β_B. α = 0 is exactly
    DPO with β₀. Rewards are β₀·Δ.
    Not done, because an objective is a pure function of one batch: the paper's M₀ is a running mean of the
    margins (momentum 0.9) — here it is the fixed parameter m0 (0 = the authors' initial value; β_B then grows
    as margins grow); and the paper's data filtering — sampling 80% of each batch with Gaussian weights
    exp(−(M_i − M₀)²/2σ²), σ a running std, and using only those pairs for the loss and for mean_B.
    Defaults β₀ = 0.1, α = 0.6 (the authors' example setting), M₀ = 0.
    """
    delta_w, delta_l = log_ratio_margin(stats)
    margin = delta_w - delta_l
    adapted = (beta * (1 + alpha * (margin.detach().mean() - m0))).clamp_min(BETA_FLOOR)
    return ObjectiveOutput(smoothed_logistic_loss(adapted * margin), beta * delta_w, beta * delta_l)
