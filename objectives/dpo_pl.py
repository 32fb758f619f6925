"""DPO under the Plackett–Luce model: a ranking of K responses as K − 1 successive choices."""

import torch

from prefbench.registry import ListLogProbs, ObjectiveOutput, Param, register_objective


@register_objective("dpo_pl", family="listwise", data="listwise", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature of the implicit rewards β·Δ")},
                    paper="Rafailov et al. 2023, 'Direct Preference Optimization: Your Language Model is Secretly a "
                          "Reward Model', arXiv 2305.18290, appendix A.3")
def dpo_pl(stats: ListLogProbs, *, beta: float) -> ObjectiveOutput:
    """Plackett–Luce DPO: −Σ_{k<K} log[exp(β Δ_{τ(k)}) / Σ_{j≥k} exp(β Δ_{τ(j)})], τ the ranking by score.

    Δ = S_θ(y|x) − S_ref(y|x), summed over the response tokens; τ orders a list from its best score to its
    worst (DPO paper, appendix A.3). Plackett–Luce needs a strict ranking: responses with equal
    scores keep their order in the list. With two responses it is exactly DPO. Rewards β·Δ of each list's
    best- and worst-scored response. Default β = 0.1 (DPO's).
    """
    rewards = beta * (stats.logps - stats.ref_logps)
    order = stats.ranking()
    ranked = rewards.gather(1, order)
    valid = stats.mask.gather(1, order)
    k = ranked.shape[1]
    # [B, k, j]: step k chooses among the responses j ≥ k (itself always, so no sum is empty)
    choice = torch.ones(k, k, dtype=torch.bool, device=ranked.device).triu() & \
        (valid[:, None, :] | torch.eye(k, dtype=torch.bool, device=ranked.device))
    tail = torch.logsumexp(ranked[:, None, :].expand(-1, k, -1).masked_fill(~choice, -torch.inf), -1)
    steps = valid & (choice.sum(-1) > 1)      # the last response of a list is no choice
    losses = torch.where(steps, tail - ranked, torch.zeros_like(ranked)).sum(1)
    return ObjectiveOutput(losses, *stats.best_and_worst(rewards))
