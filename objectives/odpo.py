"""ODPO: DPO whose margin must exceed an offset that grows with how much better the chosen response scored."""

import torch

from prefbench.registry import (
    ObjectiveError,
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("odpo", family="dpo", span="response", needs_reference=True, statistics=("pair_scores",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratio margin"),
                            "alpha": Param(1.0, ge=0, doc="α, the offset's scale: Δ_r = α·log(s_w − s_l)")},
                    paper="Amini, Vieira, Cotterell 2024, 'Direct Preference Optimization with an Offset', "
                          "arXiv 2402.10571")
def odpo(stats: PairLogProbs, *, beta: float, alpha: float) -> ObjectiveOutput:
    """ODPO: −log σ(β z − Δ_r), Δ_r = α·log(s_w − s_l), z = Δ_w − Δ_l as in DPO (summed log-ratios).

    s_w, s_l are the data's scores of the chosen and rejected response (``score_chosen``/``score_rejected``:
    UltraFeedback-binarized rows carry them, and a run's on-policy pairs carry the gold judge's), so a pair the
    judge separates widely must be separated widely by the policy too; a gap below 1 gives a negative offset
    (a looser margin than DPO's), as scores in [0, 1] do in the paper's sentiment task. The offset function is
    the authors' code's (rycolab/odpo at 6152f67, trainers.py ``preference_loss``: ``-F.logsigmoid(beta * logits
    - alpha * torch.log(chosen_rewards - rejected_rewards))``); its other option, log(s_w / s_l) for positive
    scores, is left out. A tie (s_w = s_l) makes Δ_r = −∞: the pair's loss and gradient are 0, as in the
    authors' code; a pair scored the other way round (s_w < s_l) has no offset and is refused. α = 0 is exactly
    DPO: no offset is computed, so any scores are accepted (the authors' code would give NaN for a tie times 0).
    Rewards are β·Δ.
    Defaults α = 1 (the authors' config/loss/odpo.yaml), β = 0.1 (DPO's; the authors' config leaves β to be set).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    logits = beta * (delta_w - delta_l)
    if alpha:
        gap = stats.chosen_scores - stats.rejected_scores
        if (gap < 0).any():
            i = int(torch.nonzero(gap < 0)[0])
            raise ObjectiveError(f"odpo: pair {i} of the batch has score_chosen {stats.chosen_scores[i].item():g} "
                                 f"below score_rejected {stats.rejected_scores[i].item():g}; the offset "
                                 f"α·log(s_w − s_l) needs s_w ≥ s_l")
        logits = logits - alpha * torch.log(gap.to(logits.dtype))
    return ObjectiveOutput(smoothed_logistic_loss(logits), beta * delta_w, beta * delta_l)
