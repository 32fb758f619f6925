"""The record types (a preference pair, an SFT example) and the field checks every reader uses."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Union

from prefbench.util.errors import UserError

Message = dict[str, str]
Prompt = Union[str, list[Message]]  # plain text, or chat messages ending before the assistant turn


class DataError(UserError, ValueError):
    """A problem with the user's data, located by source, row and field."""

    def __init__(self, source: str, row: int | None, field: str | None, problem: str):
        where = source + (f": row {row}" if row is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class PreferenceRecord:
    """``(prompt_chosen, response_chosen) ≻ (prompt_rejected, response_rejected)``.

    ``kind`` is ``conditional`` when both prompts are identical, ``joint`` when they differ
    (a cross-instruction preference, as in JPO/DOVE). A response that was cut at a generation limit
    rather than ended by its writer is marked unfinished, so training never scores an end-of-turn
    token after it (the files carry ``*_finished: false`` only for those). ``score_chosen``/``score_rejected``:
    the two responses' scores (a judge's or a reward model's, higher is better) when the data has them, both or
    neither (the files carry them only then).
    """

    prompt_chosen: Prompt
    response_chosen: str
    prompt_rejected: Prompt
    response_rejected: str
    kind: Literal["conditional", "joint"]
    chosen_finished: bool = True
    rejected_finished: bool = True
    score_chosen: float | None = None
    score_rejected: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if not (k.endswith("_finished") and v) and not (k.startswith("score_") and v is None)}

    @property
    def scored(self) -> bool:
        """Both responses' scores are known."""
        return self.score_chosen is not None and self.score_rejected is not None


@dataclass(frozen=True)
class SFTExample:
    """An instruction and its gold response (SFT data, or an evaluation item with its reference)."""

    prompt: Prompt
    response: str


@dataclass(frozen=True)
class UnpairedExample:
    """One response labelled desirable or undesirable (KTO-style data; TRL's unpaired format). ``finished``:
    as for a preference record's responses."""

    prompt: Prompt
    completion: str
    desirable: bool
    finished: bool = True


@dataclass(frozen=True)
class ListRecord:
    """K ≥ 2 distinct responses to one instruction with their scores (higher is better; listwise data).
    ``finished``: as for a preference record's responses, one flag per response."""

    prompt: Prompt
    responses: tuple[str, ...]
    scores: tuple[float, ...]
    finished: tuple[bool, ...]

    def to_json(self) -> dict[str, Any]:
        row = {"prompt": self.prompt, "completions": list(self.responses), "scores": list(self.scores)}
        return {**row, "finished": list(self.finished)} if not all(self.finished) else row


def make_record(prompt_w: Prompt, resp_w: str, prompt_l: Prompt, resp_l: str, finished_w: bool = True,
                finished_l: bool = True, score_w: float | None = None, score_l: float | None = None
                ) -> PreferenceRecord:
    """A record whose kind follows from its prompts."""
    kind = "conditional" if prompt_w == prompt_l else "joint"
    return PreferenceRecord(prompt_w, resp_w, prompt_l, resp_l, kind, finished_w, finished_l, score_w, score_l)


def score_field(value: Any, source: str, row: int, field: str) -> float:
    """A finite number (a response's score)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(source, row, field, f"expected a finite number, got {value!r}")
    return float(value)


def pair_scores(raw: dict, source: str, row: int) -> tuple[float | None, float | None]:
    """A pair row's optional ``score_chosen``/``score_rejected``: both numbers, or neither (absent or null)."""
    given = [key for key in ("score_chosen", "score_rejected") if raw.get(key) is not None]
    if not given:
        return None, None
    if len(given) == 1:
        other = "score_rejected" if given == ["score_chosen"] else "score_chosen"
        raise DataError(source, row, other, "is missing (give both scores of the pair, or neither)")
    return (score_field(raw["score_chosen"], source, row, "score_chosen"),
            score_field(raw["score_rejected"], source, row, "score_rejected"))


def flag_field(raw: dict, source: str, row: int, field: str, default: bool = True) -> bool:
    """An optional true/false field."""
    value = raw.get(field, default)
    if not isinstance(value, bool):
        raise DataError(source, row, field, f"expected true or false, got {value!r}")
    return value


def as_object(raw: Any, source: str, row: int) -> dict:
    if not isinstance(raw, dict):
        raise DataError(source, row, None, f"expected an object, got {type(raw).__name__}")
    return raw


def text_field(value: Any, source: str, row: int, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(source, row, field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(source, row, field, "is empty")
    return value


def messages_field(value: Any, source: str, row: int, field: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise DataError(source, row, field, "expected a non-empty list of chat messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(source, row, field, f"message {i} must be an object with string 'role' and 'content'")
    return value


def prompt_field(value: Any, source: str, row: int, field: str) -> Prompt:
    return messages_field(value, source, row, field) if isinstance(value, list) else text_field(value, source, row, field)


def require(raw: dict, keys: tuple[str, ...], source: str, row: int) -> None:
    for key in keys:
        if key not in raw or raw[key] is None:
            raise DataError(source, row, key, "is missing")
