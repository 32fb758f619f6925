"""What an objective receives and returns: per-sequence statistics in, unreduced losses out."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from torch import Tensor

from prefbench.util.errors import UserError

Span = Literal["response", "joint"]
SPANS = ("response", "joint")


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
        shape = self.chosen_logps.shape
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value.shape != shape:
                raise ObjectiveError(
                    f"PairLogProbs.{f.name} has shape {tuple(value.shape)}, expected {tuple(shape)} "
                    "(one value per pair)"
                )
        if (self.ref_chosen_logps is None) != (self.ref_rejected_logps is None):
            raise ObjectiveError("give both ref_chosen_logps and ref_rejected_logps, or neither")

    @property
    def has_reference(self) -> bool:
        return self.ref_chosen_logps is not None

    def at_least_float32(self) -> "PairLogProbs":
        """bf16 has ~3 significant digits: a β-scaled margin of summed log-probs would lose most of
        them, so losses are always computed in float32 or wider."""
        def up(t: Tensor | None) -> Tensor | None:
            return t.float() if t is not None and t.is_floating_point() and t.element_size() < 4 else t

        return PairLogProbs(**{f.name: up(getattr(self, f.name)) for f in fields(self)})


@dataclass(frozen=True)
class ObjectiveOutput:
    """Unreduced per-pair losses [B] (differentiable) and detached rewards [B] for logging."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
