"""Odds Ratio Preference Optimization (reference-free, SFT + odds-ratio penalty)."""

import torch
import torch.nn.functional as F

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, mean_nll, register_objective


def _log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    # log(p/(1−p)) with p = exp(mean log-prob); −expm1 keeps log(1−p) accurate as p → 1, and the
    # clamp keeps it finite for a response whose every token has probability 1.
    mean_logp = mean_logp.clamp(max=-1e-7)
    return mean_logp - torch.log(-torch.expm1(mean_logp))


@register_objective("orpo", family="reference-free", span="response", needs_reference=False, adds_nll=True,
                    params={"lam": Param(0.1, ge=0, doc="weight λ of the odds-ratio term")},
                    paper="Hong, Lee & Thorne 2024, arXiv 2403.07691")
def orpo(stats: PairLogProbs, *, lam: float) -> ObjectiveOutput:
    """ORPO: NLL(y_w|x) + λ·(−log σ(log odds(y_w|x) − log odds(y_l|x))).

    odds(y|x) = p/(1−p) with p = exp(S_θ(y|x)/|y|) (token-mean log-prob over the response).
    Rewards are λ·S_θ/|y|, as in the paper's implementation. Default λ = 0.1.
    """
    mean_w = stats.chosen_logps / stats.chosen_tokens.clamp_min(1)
    mean_l = stats.rejected_logps / stats.rejected_tokens.clamp_min(1)
    ratio_term = -F.logsigmoid(_log_odds(mean_w) - _log_odds(mean_l))
    return ObjectiveOutput(mean_nll(stats.chosen_logps, stats.chosen_tokens) + lam * ratio_term, lam * mean_w, lam * mean_l)
