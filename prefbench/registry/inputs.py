"""What an objective receives and returns: per-sequence statistics in, unreduced losses out."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import Tensor

from prefbench.util.errors import UserError

Span = Literal["response", "joint"]
SPANS = ("response", "joint")
Data = Literal["paired", "unpaired", "listwise"]
DATA = ("paired", "unpaired", "listwise")
# Statistics beyond per-sequence sums, computed only for an objective that declares it needs them:
# "token_logps": every span token's log-prob under the policy and the reference, [B, T] per side;
# "sequence_kl": Σ over the span's positions of KL(π_ref(·|prefix) ‖ π_θ(·|prefix)), [B] per side (TDPO);
# "pair_scores": not a log-prob statistic but the data's score of each response (a judge's or a reward model's),
# [B] per side (ODPO's offset); every pair must then carry them.
TOKEN_STATISTICS = ("token_logps", "sequence_kl", "pair_scores")


class ObjectiveError(UserError, ValueError):
    """A user-facing problem with an objective name or its hyperparameters."""


@dataclass(frozen=True)
class PairLogProbs:
    """Per-sequence statistics for a batch of B preference pairs; every tensor has shape [B].

    ``*_logps`` are log-probabilities *summed* over the objective's span (``response``: the
    response tokens given the instruction; ``joint``: every token of the formatted
    instruction+response sequence except the first). ``*_tokens`` count the tokens in that span.
    ``chosen_response_*`` carry the chosen response's own statistics for objectives whose
    preference term uses the joint span but whose SFT term is NLL(y_w | x_w) (``sft_jpo``);
    response-span objectives ignore them.

    Token-level statistics, present only when the objective declares them (``statistics``):
    ``*_token_logps`` ([B, T], "token_logps") hold the span's per-token log-probs left-aligned in sequence
    order, zero past each row's count (``chosen_tokens``/``rejected_tokens``; :meth:`token_mask`), under the
    policy and (``ref_*``) the reference; ``chosen_kl``/``rejected_kl`` ([B], "sequence_kl") hold
    Σ_t KL(π_ref(·|y<t) ‖ π_θ(·|y<t)) over the span's positions, differentiable w.r.t. the policy;
    ``chosen_scores``/``rejected_scores`` ([B], "pair_scores") hold the data's scores of the two responses (higher
    is better; constants, not differentiated).
    """

    chosen_logps: Tensor
    rejected_logps: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    chosen_response_logps: Tensor | None = None
    chosen_response_tokens: Tensor | None = None
    chosen_token_logps: Tensor | None = None
    rejected_token_logps: Tensor | None = None
    ref_chosen_token_logps: Tensor | None = None
    ref_rejected_token_logps: Tensor | None = None
    chosen_kl: Tensor | None = None
    rejected_kl: Tensor | None = None
    chosen_scores: Tensor | None = None
    rejected_scores: Tensor | None = None

    def __post_init__(self) -> None:
        _check_shapes(self, "pair")
        for a, b in (("ref_chosen_logps", "ref_rejected_logps"), ("chosen_token_logps", "rejected_token_logps"),
                     ("ref_chosen_token_logps", "ref_rejected_token_logps"), ("chosen_kl", "rejected_kl"),
                     ("chosen_scores", "rejected_scores")):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                raise ObjectiveError(f"give both {a} and {b}, or neither")
        for side in ("chosen", "rejected"):
            policy, ref = getattr(self, f"{side}_token_logps"), getattr(self, f"ref_{side}_token_logps")
            if policy is not None and ref is not None and policy.shape != ref.shape:
                raise ObjectiveError(f"PairLogProbs.ref_{side}_token_logps has shape {tuple(ref.shape)}, expected "
                                     f"{tuple(policy.shape)} (that of {side}_token_logps)")

    def token_mask(self, side: Literal["chosen", "rejected"]) -> Tensor:
        """[B, T] bool: True on the first ``{side}_tokens`` columns of ``{side}_token_logps`` (its real tokens)."""
        values, counts = getattr(self, f"{side}_token_logps"), getattr(self, f"{side}_tokens")
        return torch.arange(values.shape[1], device=values.device) < counts[:, None]

    @property
    def has_reference(self) -> bool:
        return self.ref_chosen_logps is not None

    def at_least_float32(self) -> PairLogProbs:
        return _at_least_float32(self)


@dataclass(frozen=True)
class UnpairedLogProbs:
    """Per-example statistics for a batch of B single responses, each labelled desirable or not; shape [B].

    ``logps``/``tokens``: the response's log-prob summed over the objective's span and its token count;
    ``ref_logps``: the same under the reference. ``desirable``: bool labels. ``kl_logps``/``ref_kl_logps``:
    the policy's (detached) and the reference's summed log-probs of each example's *mismatched* sequence,
    its prompt with another example's response, from which a KL reference point (KTO's z_ref) is estimated
    over the batch. ``kl_tokens`` count that sequence's span tokens.
    """

    logps: Tensor
    tokens: Tensor
    desirable: Tensor
    ref_logps: Tensor | None = None
    kl_logps: Tensor | None = None
    ref_kl_logps: Tensor | None = None
    kl_tokens: Tensor | None = None

    def __post_init__(self) -> None:
        _check_shapes(self, "example")
        if self.desirable.dtype != torch.bool:
            raise ObjectiveError(f"UnpairedLogProbs.desirable must be a bool tensor, got {self.desirable.dtype}")
        if (self.kl_logps is None) != (self.ref_kl_logps is None):
            raise ObjectiveError("give both kl_logps and ref_kl_logps, or neither")

    @property
    def has_reference(self) -> bool:
        return self.ref_logps is not None

    def kl_reference_point(self) -> Tensor:
        """KTO's z_ref: the batch mean of the mismatched sequences' policy-to-reference log-ratios, clamped
        at 0 and detached (TRL: ``(KL_logps - ref_KL_logps).mean().detach().clamp(min=0)``); 0 without them."""
        if self.kl_logps is None:
            return self.logps.new_zeros(())
        return (self.kl_logps - self.ref_kl_logps).mean().detach().clamp(min=0)

    def at_least_float32(self) -> UnpairedLogProbs:
        return _at_least_float32(self)


@dataclass(frozen=True)
class ListLogProbs:
    """Per-response statistics for a batch of B lists of up to K responses to one instruction each; shape [B, K].

    ``logps``/``tokens``: each response's log-prob summed over the objective's span and its token count;
    ``ref_logps``: the same under the reference. ``scores``: how good each response is, higher better (a rank
    can be given as scores: K − rank). ``mask``: bool, the entries that hold a response (lists may be shorter
    than K; the values of the other entries are ignored).
    """

    logps: Tensor
    tokens: Tensor
    scores: Tensor
    mask: Tensor
    ref_logps: Tensor | None = None

    def __post_init__(self) -> None:
        _check_shapes(self, "list entry")
        if self.logps.dim() != 2:
            raise ObjectiveError(f"ListLogProbs tensors must have shape [lists, responses], got "
                                 f"{tuple(self.logps.shape)}")
        if self.mask.dtype != torch.bool:
            raise ObjectiveError(f"ListLogProbs.mask must be a bool tensor, got {self.mask.dtype}")

    @property
    def has_reference(self) -> bool:
        return self.ref_logps is not None

    def ranking(self) -> Tensor:
        """[B, K] entry indices of each list from its best score to its worst, the empty entries last (ties keep
        their order in the list)."""
        scores = self.scores.double().masked_fill(~self.mask, -math.inf)
        return torch.sort(scores, dim=1, descending=True, stable=True).indices

    def best_and_worst(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """``values`` [B, K] at each list's best-scored and worst-scored response ([B] each), for logging."""
        order = self.ranking()
        last = (self.mask.sum(1) - 1).clamp_min(0)
        return values.gather(1, order[:, :1])[:, 0], values.gather(1, order.gather(1, last[:, None]))[:, 0]

    def at_least_float32(self) -> ListLogProbs:
        return _at_least_float32(self)


def _check_shapes(stats, unit: str) -> None:
    """Every tensor of ``stats`` (a PairLogProbs, UnpairedLogProbs or ListLogProbs) has the first one's shape: one
    value per ``unit``; a per-token field (``*_token_logps``, [B, T]) one row of values per ``unit``."""
    present = [(f.name, getattr(stats, f.name)) for f in fields(stats) if getattr(stats, f.name) is not None]
    shape = present[0][1].shape
    for name, value in present:
        if name.endswith("_token_logps"):
            if value.dim() != 2 or value.shape[:1] != shape[:1]:
                raise ObjectiveError(f"{type(stats).__name__}.{name} has shape {tuple(value.shape)}, expected "
                                     f"({', '.join(map(str, shape[:1]))}, T) (one row per {unit})")
        elif value.shape != shape:
            raise ObjectiveError(f"{type(stats).__name__}.{name} has shape {tuple(value.shape)}, expected "
                                 f"{tuple(shape)} (one value per {unit})")


def _at_least_float32(stats):
    """bf16 has ~3 significant digits: a β-scaled margin of summed log-probs would lose most of them, so losses
    are always computed in float32 or wider."""
    def up(t: Tensor | None) -> Tensor | None:
        return t.float() if t is not None and t.is_floating_point() and t.element_size() < 4 else t

    return type(stats)(**{f.name: up(getattr(stats, f.name)) for f in fields(stats)})


@dataclass(frozen=True)
class ObjectiveOutput:
    """Unreduced per-pair losses [B] (differentiable) and detached rewards [B] for logging. An unpaired
    objective returns per-example losses, each example's reward as ``chosen_rewards`` and the reference
    point it is compared with as ``rejected_rewards`` (so ``chosen - rejected > 0`` means "judged desirable").
    A listwise objective returns per-list losses and the rewards of each list's best-scored and worst-scored
    response (:meth:`ListLogProbs.best_and_worst`)."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
