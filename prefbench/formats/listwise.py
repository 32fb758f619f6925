"""Listwise data for LiPO/PRO-style objectives: K scored responses per instruction, read from prefbench's
listwise rows (``prompt``/``completions``/``scores``, optional ``finished``), from UltraFeedback's layout
(``instruction`` and ``completions`` of ``{"response", "overall_score"}``), or made from preference pairs
(each conditional pair a list of two, its chosen response scored 1 and its rejected one 0)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefbench.formats.preferences import _assistant_reply, parse_row, source_rows
from prefbench.formats.records import (
    DataError,
    ListRecord,
    PreferenceRecord,
    as_object,
    prompt_field,
    require,
    score_field,
    text_field,
)
from prefbench.util.files import write_jsonl


def _list_field(raw: dict, key: str, source: str, row: int) -> list:
    if not isinstance(raw[key], list):
        raise DataError(source, row, key, f"expected a list, got {type(raw[key]).__name__}")
    return raw[key]


def _record(prompt, entries: list[tuple[str, float, bool]], source: str, row: int) -> ListRecord:
    """The list of ``(response, score, finished)`` entries, a repeated response text kept once (its first
    entry); at least two distinct responses."""
    unique: dict[str, tuple[str, float, bool]] = {}
    for entry in entries:
        unique.setdefault(entry[0], entry)
    if len(unique) < 2:
        raise DataError(source, row, "completions", f"needs at least 2 distinct responses, got {len(unique)}")
    responses, scores, finished = zip(*unique.values())
    return ListRecord(prompt, responses, scores, finished)


def _prefbench_list(raw: dict, source: str, row: int) -> ListRecord:
    require(raw, ("prompt", "completions", "scores"), source, row)
    prompt = prompt_field(raw["prompt"], source, row, "prompt")
    completions, scores = _list_field(raw, "completions", source, row), _list_field(raw, "scores", source, row)
    finished = [True] * len(completions) if raw.get("finished") is None else _list_field(raw, "finished", source, row)
    for key, values in (("scores", scores), ("finished", finished)):
        if len(values) != len(completions):
            raise DataError(source, row, key, f"has {len(values)} entries for {len(completions)} completions")
    for i, flag in enumerate(finished):
        if not isinstance(flag, bool):
            raise DataError(source, row, f"finished[{i}]", f"expected true or false, got {flag!r}")
    entries = [(_assistant_reply(text, source, row, f"completions[{i}]"),
                score_field(score, source, row, f"scores[{i}]"),
                flag) for i, (text, score, flag) in enumerate(zip(completions, scores, finished))]
    return _record(prompt, entries, source, row)


def _ultrafeedback_list(raw: dict, source: str, row: int) -> ListRecord:
    require(raw, ("instruction", "completions"), source, row)
    prompt = text_field(raw["instruction"], source, row, "instruction")
    entries = []
    for i, completion in enumerate(_list_field(raw, "completions", source, row)):
        field = f"completions[{i}]"
        if not isinstance(completion, dict):
            raise DataError(source, row, field, f"expected an object with 'response' and 'overall_score', got "
                                                f"{type(completion).__name__}")
        for key in ("response", "overall_score"):
            if completion.get(key) is None:
                raise DataError(source, row, f"{field}.{key}", "is missing")
        entries.append((text_field(completion["response"], source, row, f"{field}.response"),
                        score_field(completion["overall_score"], source, row, f"{field}.overall_score"), True))
    return _record(prompt, entries, source, row)


def parse_list_row(raw: Any, source: str, row: int) -> ListRecord:
    """One listwise row: prefbench's ``{"prompt", "completions": [...], "scores": [...]}`` or UltraFeedback's
    ``{"instruction", "completions": [{"response", "overall_score"}, ...]}``."""
    raw = as_object(raw, source, row)
    return _ultrafeedback_list(raw, source, row) if "instruction" in raw else _prefbench_list(raw, source, row)


def lists_from_pairs(records: Iterable[PreferenceRecord]) -> list[ListRecord]:
    """Every conditional pair with two different responses as a list of two, the chosen response scored 1 and the
    rejected one 0. A joint pair has two instructions, and a list has one: it is left out."""
    return [ListRecord(r.prompt_chosen, (r.response_chosen, r.response_rejected), (1.0, 0.0),
                       (r.chosen_finished, r.rejected_finished))
            for r in records if r.kind == "conditional" and r.response_chosen != r.response_rejected]


def is_list_row(raw: Any) -> bool:
    return isinstance(raw, dict) and ("completions" in raw or "scores" in raw)


def load_lists(source: str | Path, split: str = "train") -> list[ListRecord]:
    """Lists from a file or dataset of listwise rows, or made from the conditional preference pairs of any format
    :func:`~prefbench.formats.preferences.load_preferences` reads; the first row tells which."""
    name, rows = source_rows(source, split)
    rows = list(rows)
    if not rows:
        raise DataError(name, None, None, "contains no rows")
    if is_list_row(rows[0][1]):
        return [parse_list_row(raw, name, n) for n, raw in rows]
    return lists_from_pairs(parse_row(raw, name, n) for n, raw in rows)


def write_lists(records: Iterable[ListRecord], path: Path) -> None:
    """JSONL of prefbench's listwise rows, written to a temp file and renamed (never half-written)."""
    write_jsonl(path, (r.to_json() for r in records))
