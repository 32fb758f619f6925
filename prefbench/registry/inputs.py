"""What an objective receives and returns: per-sequence statistics in, unreduced losses out."""

from __future__ import annotations

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
# "sequence_kl": Σ over the span's positions of KL(π_ref(·|prefix) ‖ π_θ(·|prefix)), [B] per side (TDPO).
TOKEN_STATISTICS = ("token_logps", "sequence_kl")


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
    """

    chosen_logps: Tensor
    rejected_logps: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    chosen_response_logps: Tensor | None = None
    chosen_response_tokens: Tensor | None = None

    def __post_init__(self) -> None:
        _check_shapes(self, "pair")
        if (self.ref_chosen_logps is None) != (self.ref_rejected_logps is None):
            raise ObjectiveError("give both ref_chosen_logps and ref_rejected_logps, or neither")

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


def _check_shapes(stats, unit: str) -> None:
    """Every tensor of ``stats`` (a PairLogProbs or UnpairedLogProbs) has the first one's shape: one value per
    ``unit``."""
    present = [(f.name, getattr(stats, f.name)) for f in fields(stats) if getattr(stats, f.name) is not None]
    shape = present[0][1].shape
    for name, value in present:
        if value.shape != shape:
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
    point it is compared with as ``rejected_rewards`` (so ``chosen - rejected > 0`` means "judged desirable")."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
