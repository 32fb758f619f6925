"""LD-DPO: DPO whose longer response counts its tokens beyond the shorter one's length at weight α."""

import torch
from torch import Tensor

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, smoothed_logistic_loss


@register_objective("ld_dpo", family="token-level", span="response", needs_reference=True, statistics=("token_logps",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratio margin"),
                            "alpha": Param(0.5, ge=0, le=1, doc="α, the weight of the tokens past the shorter "
                                                                 "response's length (1 = DPO, 0 = cut them off)")},
                    paper="Liu et al. 2024, 'Length Desensitization in Direct Preference Optimization', "
                          "arXiv 2409.06411")
def ld_dpo(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """LD-DPO: −log σ(β [Δ̃_w − Δ̃_l]), Δ̃ = S̃_θ − S̃_ref, S̃(y) = Σ_{t≤l_p} log p(y_t|·) + α Σ_{t>l_p} log p(y_t|·), l_p = min(|y_w|, |y_l|).

    Both responses' first l_p tokens (the length they have in common, the paper's "public length") count
    fully; the longer one's remaining tokens count at weight α, under the policy and the reference alike, so
    the excess length, which carries the verbosity preference, weighs less in the margin. α = 1 is DPO (up to
    summation order); α = 0 drops the excess tokens. As TRL 1.16's ``DPOTrainer`` with ``ld_alpha`` computes
    it. Rewards β·Δ̃. Defaults β = 0.1, α = 0.5: the paper tunes α per model (its best values differ by model
    and setting), so α belongs in the sweep.
    """
    public = torch.minimum(stats.chosen_tokens, stats.rejected_tokens)
    delta_w = desensitized(stats.chosen_token_logps, public, alpha) - desensitized(stats.ref_chosen_token_logps,
                                                                                     public, alpha)
    delta_l = desensitized(stats.rejected_token_logps, public, alpha) - desensitized(stats.ref_rejected_token_logps,
                                                                                       public, alpha)
    return ObjectiveOutput(smoothed_logistic_loss(beta * (delta_w - delta_l)), beta * delta_w, beta * delta_l)


def desensitized(token_logps: Tensor, public: Tensor, alpha: float) -> Tensor:
    """Σ over each row's first ``public`` values plus α times the rest (the rows are zero past their counts)."""
    past = torch.arange(token_logps.shape[1], device=token_logps.device) >= public[:, None]
    return token_logps.where(~past, 0).sum(-1) + alpha * token_logps.where(past, 0).sum(-1)
