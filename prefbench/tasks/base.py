"""What a benchmark task is: prompts with the metadata its gold judge needs, and that judge.

A task ships its judge with the code (a verifier, a lexicon reward), so scores are real and offline.
Every prompt carries a stable ``id``; robustness variants carry ``parent`` (the original's id) and
``variant`` (the kind of perturbation), so statistics can cluster a prompt with its variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from prefbench.util.errors import UserError

VARIANT_KINDS = ("original", "paraphrase", "typo", "case", "distractor")


class TaskError(UserError, ValueError):
    """An unknown task name, or a task used in a way it does not support."""


@dataclass(frozen=True)
class TaskPrompt:
    id: str                                   # stable across runs for the same task, split and seed
    text: str                                 # the instruction exactly as the model sees it (user turn)
    meta: dict[str, Any] = field(default_factory=dict)   # what the judge needs (topic, constraints, ...)
    variant: str = "original"                 # one of VARIANT_KINDS
    parent: str | None = None                 # id of the original prompt, for variants

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TaskPrompt":
        return cls(**d)


class Task(Protocol):
    """A benchmark task. Implementations are deterministic functions of their arguments."""

    name: str

    def prompts(self, split: str, n: int, seed: int) -> list[TaskPrompt]:
        """``split`` is "train", "validation" (a sweep's selection prompts) or "eval"; neither train nor
        validation prompts share a topic with eval prompts."""

    def variants(self, prompt: TaskPrompt, seed: int) -> list[TaskPrompt]:
        """Robustness variants of an eval prompt (the original not included); same judge metadata."""

    def score(self, prompt: TaskPrompt, response: str) -> float:
        """Gold score in [0, 1]; empty, off-topic or degenerate responses score low."""

    def score_details(self, prompt: TaskPrompt, response: str) -> dict[str, Any]:
        """The score's parts (e.g. per constraint pass/fail, on-topic, degenerate) for inspection."""
