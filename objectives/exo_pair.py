"""EXO (efficient exact optimization), pairwise form: reverse KL to a label-smoothed target."""

import math

import torch
import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("exo_pair", family="divergence", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="β_π, scale of the policy's log-ratios"),
                            "label_smoothing": Param(1e-3, gt=0, lt=0.5,
                                                     doc="ε: the target puts 1−ε on the chosen, ε on the rejected")},
                    paper="Ji et al. 2024, 'Towards Efficient Exact Optimization of Language Model Alignment', "
                          "arXiv 2402.00856")
def exo_pair(stats: PairLogProbs, *, beta: float, label_smoothing: float) -> ObjectiveOutput:
    """EXO-pref: KL(Bern(σ(β z)) ‖ Bern(1−ε)) = σ(βz)[log σ(βz) − log(1−ε)] + σ(−βz)[log σ(−βz) − log ε].

    z as in DPO (summed response log-ratios). EXO minimises the *reverse* KL from the policy's
    two-way softmax over {chosen, rejected} to the label-smoothed preference [1−ε, ε] (the paper's
    Eq. 16 with K = 2), so it is mode-seeking where DPO's forward KL is mean-seeking. Minimised (0)
    at β z = log((1−ε)/ε); ε must be > 0 (ε = 0 puts log 0 in the loss; TRL refuses it too) and is
    kept below 0.5 so the target prefers the chosen response. At policy == reference the loss is
    −log 2 − ½ log(ε(1−ε)). Rewards β·Δ. Defaults β = 0.1 (TRL's), ε = 1e-3 (the paper's).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    logits = beta * (delta_w - delta_l)
    log_qw, log_ql = F.logsigmoid(logits), F.logsigmoid(-logits)
    losses = torch.exp(log_qw) * (log_qw - math.log1p(-label_smoothing)) + \
        torch.exp(log_ql) * (log_ql - math.log(label_smoothing))
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
