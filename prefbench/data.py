"""Preference data: one record type for conditional and joint pairs, and readers for the formats
users already have (prefbench's own, TRL's string and chat-message styles, the JPO/DOVE release),
from JSONL/JSON/Parquet files or Hugging Face ``datasets`` names.

A malformed row fails with the file, the row number (1-based) and the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Union

from prefbench.artifacts import write_jsonl

Message = dict[str, str]
Prompt = Union[str, list[Message]]  # plain text, or chat messages ending before the assistant turn


class DataError(ValueError):
    """A problem with the user's data, located by source, row and field."""

    def __init__(self, source: str, row: int | None, field: str | None, problem: str):
        where = source + (f": row {row}" if row is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class PreferenceRecord:
    """``(prompt_chosen, response_chosen) ≻ (prompt_rejected, response_rejected)``.

    ``kind`` is ``conditional`` when both prompts are identical, ``joint`` when they differ
    (a cross-instruction preference, as in JPO/DOVE).
    """

    prompt_chosen: Prompt
    response_chosen: str
    prompt_rejected: Prompt
    response_rejected: str
    kind: Literal["conditional", "joint"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any, source: str, row: int, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(source, row, field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(source, row, field, "is empty")
    return value


def _messages(value: Any, source: str, row: int, field: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise DataError(source, row, field, "expected a non-empty list of chat messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(source, row, field, f"message {i} must be an object with string 'role' and 'content'")
    return value


def _prompt(value: Any, source: str, row: int, field: str) -> Prompt:
    return _messages(value, source, row, field) if isinstance(value, list) else _text(value, source, row, field)


def _assistant_reply(value: Any, source: str, row: int, field: str) -> str:
    """A TRL chosen/rejected value: a string, or messages whose last one is the assistant's reply."""
    if isinstance(value, str):
        return _text(value, source, row, field)
    if not isinstance(value, list):
        raise DataError(source, row, field, f"expected a string or a list of chat messages, got {type(value).__name__}")
    messages = _messages(value, source, row, field)
    if messages[-1]["role"] != "assistant":
        raise DataError(source, row, field, f"last message must have role 'assistant', got '{messages[-1]['role']}'")
    return _text(messages[-1]["content"], source, row, field)


def _require(raw: dict, keys: tuple[str, ...], source: str, row: int) -> None:
    for key in keys:
        if key not in raw or raw[key] is None:
            raise DataError(source, row, key, "is missing")


def _record(prompt_w: Prompt, resp_w: str, prompt_l: Prompt, resp_l: str) -> PreferenceRecord:
    kind = "conditional" if prompt_w == prompt_l else "joint"
    return PreferenceRecord(prompt_w, resp_w, prompt_l, resp_l, kind)


def parse_row(raw: Any, source: str, row: int) -> PreferenceRecord:
    """Map one row of any supported format onto a PreferenceRecord."""
    if not isinstance(raw, dict):
        raise DataError(source, row, None, f"expected an object, got {type(raw).__name__}")
    if "prompt_chosen" in raw or "response_chosen" in raw:  # prefbench's own format
        _require(raw, ("prompt_chosen", "response_chosen", "prompt_rejected", "response_rejected"), source, row)
        rec = _record(_prompt(raw["prompt_chosen"], source, row, "prompt_chosen"),
                      _text(raw["response_chosen"], source, row, "response_chosen"),
                      _prompt(raw["prompt_rejected"], source, row, "prompt_rejected"),
                      _text(raw["response_rejected"], source, row, "response_rejected"))
        if "kind" in raw and raw["kind"] != rec.kind:
            raise DataError(source, row, "kind", f"says '{raw['kind']}' but the prompts make it '{rec.kind}'")
        return rec
    if "i_chosen" in raw or "r_chosen" in raw:  # JPO/DOVE release
        _require(raw, ("i_chosen", "r_chosen", "i_reject", "r_reject"), source, row)
        return _record(_text(raw["i_chosen"], source, row, "i_chosen"), _text(raw["r_chosen"], source, row, "r_chosen"),
                       _text(raw["i_reject"], source, row, "i_reject"), _text(raw["r_reject"], source, row, "r_reject"))
    if "chosen" in raw or "rejected" in raw:  # TRL: explicit or implicit prompt, strings or messages
        _require(raw, ("chosen", "rejected"), source, row)
        if "prompt" in raw and raw["prompt"] is not None:
            prompt = _prompt(raw["prompt"], source, row, "prompt")
            return _record(prompt, _assistant_reply(raw["chosen"], source, row, "chosen"),
                           prompt, _assistant_reply(raw["rejected"], source, row, "rejected"))
        chosen = _messages(raw["chosen"], source, row, "chosen")
        rejected = _messages(raw["rejected"], source, row, "rejected")
        if len(chosen) < 2 or chosen[:-1] != rejected[:-1]:
            raise DataError(source, row, "rejected",
                            "without a 'prompt' field, chosen and rejected must be conversations sharing every message but the last")
        return _record(chosen[:-1], _assistant_reply(chosen, source, row, "chosen"),
                       rejected[:-1], _assistant_reply(rejected, source, row, "rejected"))
    raise DataError(source, row, None, "unrecognised format: expected prompt_chosen/response_chosen/prompt_rejected/"
                    "response_rejected, prompt/chosen/rejected (TRL) or i_chosen/r_chosen/i_reject/r_reject (JPO/DOVE); "
                    f"found keys {sorted(raw)}")


def _rows_from_file(path: Path) -> Iterable[Any]:
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(str(path), n, None, f"invalid JSON ({exc.msg})") from None
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(str(path), None, None, f"invalid JSON at line {exc.lineno} ({exc.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(str(path), None, None, "expected a JSON list of rows (or {\"data\": [...]})")
        yield from enumerate(data, 1)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(path).to_pylist(), 1)
    else:
        raise DataError(str(path), None, None, "unsupported file type; use .jsonl, .json or .parquet")


def load_preferences(source: str | Path, split: str = "train") -> list[PreferenceRecord]:
    """Records from a local file, or from a Hugging Face dataset name or dataset folder (``split``
    selects the split)."""
    path = Path(source)
    if path.is_file():
        rows = _rows_from_file(path)
        name = str(path)
    elif str(source).endswith((".jsonl", ".json", ".parquet")):
        raise DataError(str(source), None, None, "file not found")
    else:
        from datasets import load_dataset

        rows = enumerate(load_dataset(str(source), split=split), 1)
        name = f"{source}[{split}]"
    records = [parse_row(raw, name, n) for n, raw in rows]
    if not records:
        raise DataError(name, None, None, "contains no rows")
    return records


def write_preferences(records: Iterable[PreferenceRecord], path: Path) -> None:
    """JSONL in prefbench's format, written to a temp file and renamed (never half-written)."""
    write_jsonl(path, (r.to_json() for r in records))
