"""Preference Ranking Optimization (PRO): a Plackett–Luce ranking loss on length-normalised likelihoods."""

import torch

from prefbench.registry import ListLogProbs, ObjectiveOutput, Param, register_objective


@register_objective("pro", family="listwise", data="listwise", span="response", needs_reference=False, adds_nll=True,
                    params={"sft_weight": Param(0.05, ge=0, doc="β, the weight of the SFT term on the best response "
                                                                "(times (K−1)², as in the authors' code)")},
                    paper="Song et al. 2024, 'Preference Ranking Optimization for Human Alignment', arXiv 2306.17492")
def pro(stats: ListLogProbs, *, sft_weight: float) -> ObjectiveOutput:
    """PRO: Σ_k −log[e^{r_k/T_k^k} / (e^{r_k/T_k^k} + Σ_{i>k} e^{r_i/T_k^i})] − β(K−1)² S_θ(y_1|x), y sorted by ψ.

    The responses of a list sorted from the best score ψ to the worst; r = S_θ(y|x)/|y|, the token-mean
    log-likelihood of the response (no reference). Each prefix step k (1 … K−1) is a softmax of the k-th response
    against every worse one, with temperatures from the score gaps: 1/T_k^i = ψ_k − ψ_i, and 1/T_k^k =
    max_{i>k}(ψ_k − ψ_i) for the response itself (ties give 0, so equal-scored responses are not pushed
    apart). The SFT term is the summed log-likelihood of the best response (not token-averaged),
    weighted β(K−1)² with K the list's length, as in the authors' code (DAMO-ConvAI PRO/train/utils/
    process_manager.py, compute_loss); the log here has no ε = 1e-10 inside it (log-sum-exp instead). The
    scores are the data's, unnormalised (the authors use raw reward-model scores). Rewards: r of each list's
    best- and worst-scored response. Default β = 0.05 (the authors' HH-RLHF script, train_hh.sh). With two
    responses and β = 0 it is −log σ((ψ_1 − ψ_2)(r_1 − r_2)).
    """
    order = stats.ranking()
    r = (stats.logps / stats.tokens.clamp_min(1)).gather(1, order)
    psi = stats.scores.to(r.dtype).gather(1, order)
    valid = stats.mask.gather(1, order)
    k = r.shape[1]
    later = torch.ones(k, k, dtype=torch.bool, device=r.device).triu(1) & valid[:, None, :]   # [B, k, i]: i > k
    gaps = psi[:, :, None] - psi[:, None, :]                                                   # ψ_k − ψ_i
    steps = valid & later.any(-1)             # a response with at least one worse one after it
    own = torch.where(later, gaps, torch.full_like(gaps, -torch.inf)).amax(-1)
    own = torch.where(steps, own, torch.zeros_like(own))
    others = torch.where(later, r[:, None, :] * gaps, torch.full_like(gaps, -torch.inf))
    normaliser = torch.logsumexp(torch.cat([(r * own)[:, :, None], others], -1), -1)
    ranking = torch.where(steps, normaliser - r * own, torch.zeros_like(r)).sum(1)
    n = valid.sum(1).to(r.dtype)
    sft = -sft_weight * (n - 1) ** 2 * stats.logps.gather(1, order[:, :1])[:, 0]
    return ObjectiveOutput(ranking + sft, *stats.best_and_worst(stats.logps / stats.tokens.clamp_min(1)))
