"""Binary Classifier Optimization (BCO), unpaired: each response classified as desirable or not."""

import torch
import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, Param, UnpairedLogProbs, register_objective


@register_objective("bco", family="unpaired", data="unpaired", span="response", needs_reference=True,
                    batch_level=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature of the implicit reward β·Δ")},
                    paper="Jung et al. 2024, 'Binary Classifier Optimization for Large Language Model Alignment', "
                          "arXiv 2404.04656")
def bco(stats: UnpairedLogProbs, *, beta: float) -> ObjectiveOutput:
    """BCO: −log σ(β Δ − δ) for a desirable example, −log σ(−(β Δ − δ)) for an undesirable one, δ = mean_batch(β Δ).

    Δ = S_θ(y|x) − S_ref(y|x), summed over the response tokens. The implicit reward β·Δ is the logit of
    a binary classifier (desirable vs undesirable) shifted by the reward shift δ. The paper's δ is a
    running mean of the rewards over training (older TRL: ``RunningMoments``, an exponential moving
    average over steps); a pure function of one batch cannot keep state across steps, so here δ is the
    mean reward of the batch, detached (batch-level; with a large batch it is the running mean's
    estimate of the same quantity, without its lag). TRL 1.16 has no BCOTrainer any more. Not included:
    the paper's underlying-distribution matching (UDM), a separate prompt classifier that re-weights
    examples. The mismatched sequences (KTO's KL estimate) are not used. 2·log 2 per desirable-plus-
    undesirable couple, log 2 per example, when policy == reference. Rewards β·Δ; δ is returned as
    ``rejected_rewards``. Default β = 0.1 (TRL's former default).
    """
    rewards = beta * (stats.logps - stats.ref_logps)
    delta = rewards.detach().mean()
    sign = torch.where(stats.desirable, 1.0, -1.0).to(rewards)
    losses = -F.logsigmoid(sign * (rewards - delta))
    return ObjectiveOutput(losses, rewards, delta.expand_as(rewards))
