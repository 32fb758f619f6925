"""SFT rows: an instruction and its response, under any of the field names in :data:`SFT_FIELDS`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from prefbench.formats.records import DataError, Prompt, SFTExample, as_object, prompt_field, text_field
from prefbench.formats.rows import read_rows

# (instruction field, response field), first match wins. The JPO release uses the first; the others
# are TRL's prompt-completion and a common variant. The release's test files name the response
# "gold_response".
SFT_FIELDS = (("instruction", "response"), ("instruction", "gold_response"), ("prompt", "completion"),
              ("prompt", "response"))


def read_sft(path: str | Path, format_prompt: Callable[[Prompt], Prompt] | None = None) -> list[SFTExample]:
    """Instruction-response rows (the instruction may also be a list of chat messages);
    ``format_prompt`` rewrites each instruction (e.g. a task's instruction line around a post)."""
    name = str(path)
    examples = []
    for n, raw in read_rows(path):
        raw = as_object(raw, name, n)
        i_field = next((i for i, _ in SFT_FIELDS if raw.get(i) is not None), None)
        r_field = next((r for i, r in SFT_FIELDS if i == i_field and raw.get(r) is not None), None)
        if i_field is None or r_field is None:
            missing = next(r for i, r in SFT_FIELDS if i == i_field) if i_field else "instruction"
            expected = " or ".join(f"{i}/{r}" for i, r in SFT_FIELDS)
            raise DataError(name, n, missing, f"is missing (expected {expected}; found keys {sorted(raw)})")
        prompt = prompt_field(raw[i_field], name, n, i_field)
        examples.append(SFTExample(format_prompt(prompt) if format_prompt else prompt,
                                   text_field(raw[r_field], name, n, r_field)))
    if not examples:
        raise DataError(name, None, None, "contains no rows")
    return examples
