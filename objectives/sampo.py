"""SamPO: DPO with each response's log-ratio summed over as many randomly chosen tokens as the shorter has."""

import hashlib
import struct

import torch
from torch import Tensor

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, smoothed_logistic_loss


@register_objective("sampo", family="token-level", span="response", needs_reference=True, statistics=("token_logps",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the down-sampled margin")},
                    paper="Lu et al. 2024, 'Eliminating Biased Length Reliance of Direct Preference Optimization via "
                          "Down-Sampled KL Divergence', arXiv 2406.10957")
def sampo(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """SamPO: −log σ(β [Σ_{t∈K_w} r_w,t − Σ_{t∈K_l} r_l,t]), r_t = log π_θ(y_t|·) − log π_ref(y_t|·), |K_w| = |K_l| = min(T_w, T_l).

    The shorter response keeps all its tokens; the longer keeps min(T_w, T_l) of its response tokens, drawn
    uniformly without replacement, so neither side's implicit reward grows with its length. The
    policy and the reference are summed over the same kept tokens (the paper's per-token log-ratios; the
    authors' code, ``dpo_trainer.py`` ``get_batch_logps`` with ``len_norm``, draws the reference's tokens
    separately). Equal lengths keep every token: DPO's margin (up to summation order). Rewards β·Σ_K r.
    The draw must be reproducible, and an objective is a pure function of its statistics: it is seeded per pair
    from the pair's token counts and reference log-probs (:func:`kept_tokens`), so a pair keeps the same tokens
    whenever it is trained (in every epoch, and after a resume), where the authors draw afresh at each step.
    Default β = 0.1 (the authors' ``dpo.sh``).
    """
    keep_w, keep_l = kept_tokens(stats)
    ratio_w = stats.chosen_token_logps - stats.ref_chosen_token_logps
    ratio_l = stats.rejected_token_logps - stats.ref_rejected_token_logps
    reward_w, reward_l = ratio_w.where(keep_w, 0).sum(-1), ratio_l.where(keep_l, 0).sum(-1)
    return ObjectiveOutput(smoothed_logistic_loss(beta * (reward_w - reward_l)), beta * reward_w, beta * reward_l)


def kept_tokens(stats: PairLogProbs) -> tuple[Tensor, Tensor]:
    """[B, T] masks of the tokens each side keeps: all of the shorter response's, a uniform draw of as many of the
    longer's, from a generator seeded with a hash of the pair's token counts and summed reference log-probs."""
    keep_w, keep_l = stats.token_mask("chosen").clone(), stats.token_mask("rejected").clone()
    counts = torch.stack([stats.chosen_tokens, stats.rejected_tokens], 1).tolist()
    refs = torch.stack([stats.ref_chosen_logps, stats.ref_rejected_logps], 1).double().tolist()
    for i, ((t_w, t_l), ref) in enumerate(zip(counts, refs)):
        if t_w == t_l:
            continue
        digest = hashlib.sha256(struct.pack("<2q2d", t_w, t_l, *ref)).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        dropped = torch.randperm(max(t_w, t_l), generator=generator)[min(t_w, t_l):]
        (keep_w if t_w > t_l else keep_l)[i, dropped.to(keep_w.device)] = False
    return keep_w, keep_l
