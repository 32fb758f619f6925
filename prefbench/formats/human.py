"""Human comparisons the JPO paper's tasks come from, as conditional pairs:

- ``openai/summarize_from_feedback`` (``comparisons``): one post, two summaries and the labeller's
  ``choice`` per row, turned into a conditional pair under a TL;DR prompt;
- ``Anthropic/hh-rlhf``: ``chosen`` / ``rejected`` transcripts (``\\n\\nHuman: … \\n\\nAssistant: …``),
  parsed into chat messages; the shared turns are the prompt, the last assistant turn the response.

Each is read from the hub on a user's machine or from a local file or copy of the repo.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefbench.formats.hub import is_hub_id, locate
from prefbench.formats.records import DataError, Message, PreferenceRecord, as_object, make_record, require, text_field
from prefbench.formats.rows import read_rows

SUMMARIZE_FROM_FEEDBACK = "openai/summarize_from_feedback"
HH_RLHF = "Anthropic/hh-rlhf"

# summarize_from_feedback's posts, in the layout of the TL;DR SFT data used by TRL and others.
TLDR_PROMPT = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"


# --- openai/summarize_from_feedback --------------------------------------------------------------

def tldr_prompt(subreddit: str, title: str, post: str) -> str:
    return TLDR_PROMPT.format(subreddit=subreddit, title=title, post=post)


def parse_comparison(raw: Any, source: str, row: int) -> PreferenceRecord | None:
    """One ``comparisons`` row as a conditional pair; ``None`` for a news-article row (CNN/DM items
    have ``info.article`` and no post, and are not part of TL;DR)."""
    raw = as_object(raw, source, row)
    require(raw, ("info", "summaries", "choice"), source, row)
    info = raw["info"]
    if not isinstance(info, dict):
        raise DataError(source, row, "info", f"expected an object, got {type(info).__name__}")
    if info.get("post") is None and info.get("article") is not None:
        return None
    fields = {}
    for key in ("subreddit", "title", "post"):
        if info.get(key) is None:
            raise DataError(source, row, f"info.{key}", "is missing")
        fields[key] = text_field(info[key], source, row, f"info.{key}")
    summaries = raw["summaries"]
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise DataError(source, row, "summaries", "expected a list of exactly two summaries")
    texts = []
    for i, summary in enumerate(summaries):
        if not isinstance(summary, dict) or "text" not in summary:
            raise DataError(source, row, f"summaries[{i}].text", "is missing")
        # The dataset's summaries start with the space that follows "TL;DR:".
        texts.append(text_field(summary["text"], source, row, f"summaries[{i}].text").strip())
    choice = raw["choice"]
    if type(choice) is not int or choice not in (0, 1):
        raise DataError(source, row, "choice", f"expected 0 or 1, got {choice!r}")
    prompt = tldr_prompt(**fields)
    return make_record(prompt, texts[choice], prompt, texts[1 - choice])


def load_tldr_comparisons(source: str | Path = SUMMARIZE_FROM_FEEDBACK, split: str = "train") -> list[PreferenceRecord]:
    """Conditional pairs from ``openai/summarize_from_feedback`` (``comparisons``): a local JSON
    Lines / JSON file, or the hub name (read with ``datasets``; ``split`` train or validation; the
    hub copy is script-based, which recent ``datasets`` releases may refuse — then export it to JSON
    Lines once and pass the file). Rows whose two summaries are the same text carry no preference and
    are dropped."""
    path = Path(source)
    if path.is_file():
        rows, name = read_rows(path), str(path)
    elif path.exists() or not is_hub_id(str(source)):
        raise DataError(str(source), None, None, "expected a comparisons file or the hub name "
                                                 f"{SUMMARIZE_FROM_FEEDBACK!r}, and no such file exists")
    else:
        from datasets import load_dataset

        rows, name = enumerate(load_dataset(str(source), "comparisons", split=split), 1), f"{source}[{split}]"
    records = [rec for n, raw in rows if (rec := parse_comparison(raw, name, n)) is not None
               and rec.response_chosen != rec.response_rejected]
    if not records:
        raise DataError(name, None, None, "contains no TL;DR comparisons")
    return records


# --- Anthropic/hh-rlhf ---------------------------------------------------------------------------

_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_transcript(text: Any, source: str, row: int, field: str) -> list[Message]:
    """``"\\n\\nHuman: … \\n\\nAssistant: …"`` as chat messages (user/assistant, alternating, starting
    with the user and ending with the assistant, no empty turn)."""
    text = text_field(text, source, row, field)
    parts = _TURN.split(text)
    if parts[0].strip():
        raise DataError(source, row, field, f"text before the first '\\n\\nHuman:' turn: {parts[0][:60]!r}")
    messages = [{"role": _ROLES[speaker], "content": content.strip()}
                for speaker, content in zip(parts[1::2], parts[2::2])]
    if not messages:
        raise DataError(source, row, field, "no '\\n\\nHuman:' / '\\n\\nAssistant:' turns")
    for i, m in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise DataError(source, row, field, f"turn {i + 1} is {m['role']}, expected {expected} (turns must "
                                                "alternate, starting with Human)")
        if not m["content"]:
            raise DataError(source, row, field, f"turn {i + 1} ({m['role']}) is empty")
    if messages[-1]["role"] != "assistant":
        raise DataError(source, row, field, "the transcript must end with an Assistant turn")
    return messages


def parse_hh_row(raw: Any, source: str, row: int) -> PreferenceRecord:
    """One hh-rlhf row as a conditional pair over the shared conversation."""
    raw = as_object(raw, source, row)
    require(raw, ("chosen", "rejected"), source, row)
    chosen = parse_transcript(raw["chosen"], source, row, "chosen")
    rejected = parse_transcript(raw["rejected"], source, row, "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise DataError(source, row, "rejected", "chosen and rejected must share every turn but the last")
    return make_record(chosen[:-1], chosen[-1]["content"], rejected[:-1], rejected[-1]["content"])


def load_hh_rlhf(source: str | Path = HH_RLHF, subset: str = "helpful-base", split: str = "train",
                 skip_malformed: bool = False) -> list[PreferenceRecord]:
    """Conditional pairs from ``Anthropic/hh-rlhf``: one file, a local copy of the repo, or the hub id
    (files ``{subset}/{split}.jsonl.gz``). ``skip_malformed`` drops rows whose transcripts cannot be
    parsed instead of raising (the public data has a few)."""
    path = Path(source)
    if not path.is_file():
        filename = f"{subset}/{split}.jsonl.gz"
        if path.is_dir() and not (path / filename).is_file() and (path / filename[:-3]).is_file():
            filename = filename[:-3]  # an uncompressed local copy
        path = locate(source, filename)
    records = []
    for n, raw in read_rows(path):
        try:
            records.append(parse_hh_row(raw, str(path), n))
        except DataError:
            if not skip_malformed:
                raise
    if not records:
        raise DataError(str(path), None, None, "contains no usable rows")
    return records
