"""Unpaired data for KTO-style objectives: single responses labelled desirable or undesirable, read from
TRL's unpaired format (``prompt``/``completion``/``label``, strings or chat messages) or made from
preference pairs the standard way (KTO paper §4: a pair's chosen response is desirable, its rejected
one undesirable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefbench.formats.preferences import _assistant_reply, parse_row, source_rows
from prefbench.formats.records import DataError, PreferenceRecord, UnpairedExample, as_object, prompt_field, require


def parse_unpaired_row(raw: Any, source: str, row: int) -> UnpairedExample:
    """One row of TRL's unpaired format: ``{"prompt", "completion", "label": true|false}``."""
    raw = as_object(raw, source, row)
    require(raw, ("prompt", "completion", "label"), source, row)
    if not isinstance(raw["label"], bool):
        raise DataError(source, row, "label", f"expected true (desirable) or false (undesirable), got {raw['label']!r}")
    return UnpairedExample(prompt_field(raw["prompt"], source, row, "prompt"),
                           _assistant_reply(raw["completion"], source, row, "completion"), raw["label"])


def examples_from_pairs(records: list[PreferenceRecord]) -> list[UnpairedExample]:
    """Every pair's chosen response as desirable, then every pair's rejected one as undesirable."""
    return [UnpairedExample(r.prompt_chosen, r.response_chosen, True, r.chosen_finished) for r in records] + \
           [UnpairedExample(r.prompt_rejected, r.response_rejected, False, r.rejected_finished) for r in records]


def load_examples(source: str | Path, split: str = "train", pair_kinds: str = "all") -> list[UnpairedExample]:
    """Labelled examples from a file or dataset in TRL's unpaired format, or split from the preference pairs (of
    ``pair_kinds``: all | conditional | joint) in any format :func:`~prefbench.formats.preferences.load_preferences`
    reads; the first row tells which."""
    name, rows = source_rows(source, split)
    rows = list(rows)
    if not rows:
        raise DataError(name, None, None, "contains no rows")
    first = rows[0][1]
    if isinstance(first, dict) and ("completion" in first or "label" in first):
        return [parse_unpaired_row(raw, name, n) for n, raw in rows]
    records = [parse_row(raw, name, n) for n, raw in rows]
    return examples_from_pairs([r for r in records if pair_kinds in ("all", r.kind)])
