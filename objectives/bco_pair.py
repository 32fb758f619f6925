"""Binary Classifier Optimization (BCO), paired form: chosen classified as good, rejected as bad."""

import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, log_ratio_margin, register_objective


@register_objective("bco_pair", family="anchored", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature of the implicit reward β·Δ"),
                            "delta": Param(0.0, doc="fixed reward shift δ, the classifier's threshold "
                                                    "(the paper: a running mean of rewards; TRL 1.16: 0)")},
                    paper="Jung et al. 2024, 'Binary Classifier Optimization for Large Language Model Alignment', "
                          "arXiv 2404.04656")
def bco_pair(stats: PairLogProbs, *, beta: float, delta: float) -> ObjectiveOutput:
    """BCO (paired): −log σ(β Δ_w − δ) − log σ(−(β Δ_l − δ)), Δ = S_θ − S_ref summed over the response.

    Each response is classified on its own: the chosen one as "good" (implicit reward β·Δ above
    the threshold δ), the rejected one as "bad". The paper's δ is a running (exponential moving)
    average of the implicit rewards over training, which no pure function of one batch can
    reproduce; here δ is a fixed parameter instead. δ = 0 (the default) is exactly TRL 1.16's
    ``loss_type="bco_pair"``, which keeps no running mean at all (older TRL releases did, via
    ``RunningMoments``; 1.16 dropped it, and with it its BCOTrainer). A negative δ makes a response
    count as good while its reward is only slightly below the reference's. 2·log 2 when policy ==
    reference and δ = 0. Rewards β·Δ (not shifted by δ). Defaults β = 0.1 (TRL's), δ = 0.
    """
    delta_w, delta_l = log_ratio_margin(stats)
    rw, rl = beta * delta_w, beta * delta_l
    losses = -F.logsigmoid(rw - delta) - F.logsigmoid(-(rl - delta))
    return ObjectiveOutput(losses, rw, rl)
