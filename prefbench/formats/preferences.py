"""Preference files in any supported row format, mapped onto :class:`PreferenceRecord`:
prefbench's own, TRL's (string or chat-message prompt/chosen/rejected, or implicit-prompt
conversations) and the JPO/DOVE release's, from JSONL/JSON/Parquet files or ``datasets`` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from prefbench.formats.records import (
    DataError,
    PreferenceRecord,
    as_object,
    flag_field,
    make_record,
    messages_field,
    pair_scores,
    prompt_field,
    require,
    text_field,
)
from prefbench.formats.rows import SUFFIXES, read_rows
from prefbench.util.files import write_jsonl


def _assistant_reply(value: Any, source: str, row: int, field: str) -> str:
    """A TRL chosen/rejected value: a string, or messages whose last one is the assistant's reply."""
    if isinstance(value, str):
        return text_field(value, source, row, field)
    if not isinstance(value, list):
        raise DataError(source, row, field, f"expected a string or a list of chat messages, got {type(value).__name__}")
    messages = messages_field(value, source, row, field)
    if messages[-1]["role"] != "assistant":
        raise DataError(source, row, field, f"last message must have role 'assistant', got '{messages[-1]['role']}'")
    return text_field(messages[-1]["content"], source, row, field)


def _prefbench_row(raw: dict, source: str, row: int) -> PreferenceRecord:
    require(raw, ("prompt_chosen", "response_chosen", "prompt_rejected", "response_rejected"), source, row)
    rec = make_record(prompt_field(raw["prompt_chosen"], source, row, "prompt_chosen"),
                      text_field(raw["response_chosen"], source, row, "response_chosen"),
                      prompt_field(raw["prompt_rejected"], source, row, "prompt_rejected"),
                      text_field(raw["response_rejected"], source, row, "response_rejected"),
                      flag_field(raw, source, row, "chosen_finished"), flag_field(raw, source, row, "rejected_finished"),
                      *pair_scores(raw, source, row))
    if "kind" in raw and raw["kind"] != rec.kind:
        raise DataError(source, row, "kind", f"says '{raw['kind']}' but the prompts make it '{rec.kind}'")
    return rec


def _release_row(raw: dict, source: str, row: int) -> PreferenceRecord:
    require(raw, ("i_chosen", "r_chosen", "i_reject", "r_reject"), source, row)
    return make_record(*(text_field(raw[k], source, row, k) for k in ("i_chosen", "r_chosen", "i_reject", "r_reject")))


def _trl_row(raw: dict, source: str, row: int) -> PreferenceRecord:
    """Explicit or implicit prompt, strings or messages; the scores of UltraFeedback-binarized-style rows
    (``score_chosen``/``score_rejected``) when present."""
    require(raw, ("chosen", "rejected"), source, row)
    scores = pair_scores(raw, source, row)
    if "prompt" in raw and raw["prompt"] is not None:
        prompt = prompt_field(raw["prompt"], source, row, "prompt")
        return make_record(prompt, _assistant_reply(raw["chosen"], source, row, "chosen"),
                           prompt, _assistant_reply(raw["rejected"], source, row, "rejected"), True, True, *scores)
    chosen = messages_field(raw["chosen"], source, row, "chosen")
    rejected = messages_field(raw["rejected"], source, row, "rejected")
    if len(chosen) < 2 or chosen[:-1] != rejected[:-1]:
        raise DataError(source, row, "rejected",
                        "without a 'prompt' field, chosen and rejected must be conversations sharing every message but the last")
    return make_record(chosen[:-1], _assistant_reply(chosen, source, row, "chosen"),
                       rejected[:-1], _assistant_reply(rejected, source, row, "rejected"), True, True, *scores)


def parse_row(raw: Any, source: str, row: int) -> PreferenceRecord:
    """Map one row of any supported format onto a PreferenceRecord."""
    raw = as_object(raw, source, row)
    if "prompt_chosen" in raw or "response_chosen" in raw:
        return _prefbench_row(raw, source, row)
    if "i_chosen" in raw or "r_chosen" in raw:
        return _release_row(raw, source, row)
    if "chosen" in raw or "rejected" in raw:
        return _trl_row(raw, source, row)
    raise DataError(source, row, None, "unrecognised format: expected prompt_chosen/response_chosen/prompt_rejected/"
                    "response_rejected, prompt/chosen/rejected (TRL) or i_chosen/r_chosen/i_reject/r_reject (JPO/DOVE); "
                    f"found keys {sorted(raw)}")


def load_preferences(source: str | Path, split: str = "train") -> list[PreferenceRecord]:
    """Records from a local file, or from a Hugging Face dataset name or dataset folder (``split``
    selects the split)."""
    name, rows = source_rows(source, split)
    records = [parse_row(raw, name, n) for n, raw in rows]
    if not records:
        raise DataError(name, None, None, "contains no rows")
    return records


def source_rows(source: str | Path, split: str = "train") -> tuple[str, Iterable[tuple[int, Any]]]:
    """The source's name for messages, and its numbered rows (a local file, or a dataset name or folder)."""
    path = Path(source)
    if path.is_file():
        rows = read_rows(path)
        name = str(path)
    elif str(source).endswith(SUFFIXES):
        raise DataError(str(source), None, None, "file not found")
    else:
        from datasets import load_dataset

        name = f"{source}[{split}]"
        try:
            rows = enumerate(load_dataset(str(source), split=split), 1)
        except Exception as exc:  # offline, no such dataset or split: all the same to the user
            raise DataError(name, None, None, f"no such file, and no dataset of that name could be loaded "
                                              f"({type(exc).__name__}: {exc})") from None
    return name, rows


def write_preferences(records: Iterable[PreferenceRecord], path: Path) -> None:
    """JSONL in prefbench's format, written to a temp file and renamed (never half-written)."""
    write_jsonl(path, (r.to_json() for r in records))
