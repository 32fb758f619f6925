"""Alignment via Optimal Transport (AOT), paired: DPO on the sorted margins of the batch."""

import torch

from prefbench.registry import (
    ObjectiveOutput,
    PairLogProbs,
    Param,
    log_ratio_margin,
    register_objective,
    smoothed_logistic_loss,
)


@register_objective("aot", batch_level=True, family="distributional", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature"),
                            "label_smoothing": Param(0.0, ge=0, lt=0.5, doc="ε, as in cDPO")},
                    paper="Melnyk et al. 2024, 'Distributional Preference Alignment of LLMs via Optimal Transport', "
                          "arXiv 2406.05882")
def aot(stats: PairLogProbs, *, beta: float, label_smoothing: float) -> ObjectiveOutput:
    """AOT (paired): −(1−ε) log σ(β d_k) − ε log σ(−β d_k), d = sort(S_θ(w) − S_θ(l)) − sort(S_ref(w) − S_ref(l)).

    The policy's margins and the reference's margins are each sorted *across the batch* and
    matched by rank (the one-dimensional optimal transport between their empirical distributions,
    the paper's first-order stochastic dominance of the policy's margin over the reference's),
    then each matched pair gets the cDPO loss (ε = 0: DPO). Exactly TRL's ``loss_type="aot"``.

    Not a per-pair loss: element k of the output is the loss of rank k, not of pair k (only the
    sum, or mean, over the batch is meaningful), and the value depends on which pairs share a
    call. In prefbench's engine a call is one process's share of a micro-batch, never split into
    forwards (the objective is batch-level; TRL sorts the per-device batch), so compare AOT runs
    only with the same micro-batch size and process count. A batch of one pair is exactly cDPO (ε) / DPO; so is any batch whose
    policy margins are ranked like its reference margins. The sum is unchanged by reordering the
    pairs. Rewards are per pair, β·Δ (the DPO implicit reward, as TRL logs).
    Defaults β = 0.1, ε = 0 (TRL's).
    """
    delta_w, delta_l = log_ratio_margin(stats)
    policy_margin, _ = torch.sort(stats.chosen_logps - stats.rejected_logps)
    reference_margin, _ = torch.sort(stats.ref_chosen_logps - stats.ref_rejected_logps)
    losses = smoothed_logistic_loss(beta * (policy_margin - reference_margin), label_smoothing)
    return ObjectiveOutput(losses, beta * delta_w, beta * delta_l)
