"""The JPO paper's data (Bansal et al., "Comparing Bad Apples to Good Oranges", arXiv 2404.00530):
TL;DR summarization and Anthropic-Helpful dialogue, as prefbench records.

Three sources, each read from the hub on a user's machine or from a local copy with the same layout
(which is how the tests read them):

- the JPO/DOVE release, ``jointpreferences/sft_and_pref_data``: per task, SFT files
  ``{"instruction", "response"}``, conditional and joint preference files
  ``{"i_chosen", "r_chosen", "i_reject", "r_reject"}`` and a test file
  ``{"instruction", "gold_response"}``; the file names are in :data:`RELEASE_FILES`;
- ``openai/summarize_from_feedback`` (``comparisons``): one post, two summaries and the labeller's
  ``choice`` per row, turned into a conditional pair under a TL;DR prompt;
- ``Anthropic/hh-rlhf``: ``chosen`` / ``rejected`` transcripts (``\\n\\nHuman: … \\n\\nAssistant: …``),
  parsed into chat messages; the shared turns are the prompt, the last assistant turn the response.

The paper trains on conditional + joint rankings with ties removed (``kinds="both"``) and evaluates
on the first 500 test items (:func:`load_eval_examples`). Every file is JSON Lines, optionally
gzipped (hh-rlhf ships ``.jsonl.gz``); the release's TL;DR test file is JSON Lines despite its
``.json`` name, and a file holding one JSON list is read too. A malformed row raises
:class:`~prefbench.data.DataError` naming the file, the 1-based row and the field.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Literal

from prefbench.data import (DataError, Message, PreferenceRecord, Prompt, _prompt, _record, _require, _text,
                            parse_row)

RELEASE_REPO = "jointpreferences/sft_and_pref_data"
SUMMARIZE_FROM_FEEDBACK = "openai/summarize_from_feedback"
HH_RLHF = "Anthropic/hh-rlhf"

TASKS = ("tldr", "hh-helpful")
KIND_CHOICES = ("conditional", "joint", "both")

# (task, split, kind) -> path inside the release repo. Taken from the DOVE repository's README and
# its data/ folder (github.com/Hritikbansal/dove), which the hub dataset mirrors under data/; check
# the names against the hub's file list when hub access exists. The release has joint rankings for
# training only, and its test files carry the gold response as "gold_response".
RELEASE_FILES: dict[tuple[str, str, str], str] = {
    ("tldr", "train", "sft"): "data/tldr/train_sft.jsonl",
    ("tldr", "val", "sft"): "data/tldr/val_sft.jsonl",
    ("tldr", "test", "sft"): "data/tldr/test.json",
    ("tldr", "train", "conditional"): "data/tldr/train_conditional_pref.jsonl",
    ("tldr", "val", "conditional"): "data/tldr/val_conditional_pref.jsonl",
    ("tldr", "train", "joint"): "data/tldr/train_joint_pref.jsonl",
    ("hh-helpful", "train", "sft"): "data/anthropic_helpful/train_sft.jsonl",
    ("hh-helpful", "val", "sft"): "data/anthropic_helpful/val_sft.jsonl",
    ("hh-helpful", "test", "sft"): "data/anthropic_helpful/test.jsonl",
    ("hh-helpful", "train", "conditional"): "data/anthropic_helpful/train_conditional_pref.jsonl",
    ("hh-helpful", "val", "conditional"): "data/anthropic_helpful/val_conditional_pref.jsonl",
    ("hh-helpful", "train", "joint"): "data/anthropic_helpful/train_joint_pref.jsonl",
}

# The release stores a TL;DR instruction as the bare post; the paper's SFT and inference code put it
# under this instruction (without its "### Instructions:/### Response:" scaffolding, which the chat
# template replaces here).
TLDR_RELEASE_INSTRUCTION = "You are given a social media post, summarize it accordingly.\nPost: {post}"

# summarize_from_feedback's posts, in the layout of the TL;DR SFT data used by TRL and others.
TLDR_PROMPT = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"

# SFT rows: (instruction field, response field), first match wins. The release uses the first;
# the others are TRL's prompt-completion and a common variant. The release's test files name the
# response "gold_response".
SFT_FIELDS = (("instruction", "response"), ("instruction", "gold_response"), ("prompt", "completion"),
              ("prompt", "response"))

# A release row is a tie when "tie"/"is_tie" is true, or "feedback" is 2 (the DOVE feedback
# script's "equally good/bad"). Ties carry no preference and are dropped, as in the paper.
_TIE_FLAGS = ("tie", "is_tie")
_RELEASE_FIELDS = ("i_chosen", "r_chosen", "i_reject", "r_reject")


@dataclass(frozen=True)
class SFTExample:
    """An instruction and its gold response (SFT data, or an evaluation item with its reference)."""

    prompt: Prompt
    response: str


def _closest(name: str, valid: tuple[str, ...], what: str) -> ValueError:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ValueError(f"unknown {what} {name!r}; {hint}valid: {', '.join(valid)}")


# --- files ---------------------------------------------------------------------------------------

def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(row number, row)`` of a JSON Lines file (``.gz`` or not; the number is the line) or of a
    file holding one JSON list (the number is the 1-based position)."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(str(path), None, None, f"invalid JSON at line {exc.lineno} ({exc.msg})") from None
        yield from enumerate(rows, 1)
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(str(path), n, None, f"invalid JSON ({exc.msg})") from None


def is_hub_id(source: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None and not source.startswith(".")


def locate(source: str | Path, filename: str) -> Path:
    """``filename`` inside ``source``: a local folder with the repo's layout, or a hub dataset id
    (downloaded with ``huggingface_hub.hf_hub_download``, which caches it)."""
    path = Path(source)
    if path.is_dir():
        found = path / filename
        if not found.is_file():
            raise DataError(str(found), None, None, f"file not found; a local copy of the data must keep the "
                                                    f"hub layout ({filename} under {path})")
        return found
    if path.exists() or not is_hub_id(str(source)):
        found = "a file" if path.exists() else "no such folder"
        raise DataError(str(source), None, None, "expected a folder with the dataset's layout or a hub dataset id "
                                                 f"(owner/name), found {found}")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(source), filename, repo_type="dataset"))
    except Exception as exc:  # offline, unknown repo or file: all the same to the user
        raise DataError(f"{source}/{filename}", None, None,
                        f"could not download ({type(exc).__name__}: {exc}); without hub access, pass a local copy "
                        "of the folder instead (for a benchmark: --set data.location=PATH)") from exc


# --- the JPO/DOVE release ------------------------------------------------------------------------

def release_file(task: str, split: str, kind: str) -> str:
    """The release's path for ``(task, split, kind)``; ``kind`` is sft, conditional or joint."""
    if task not in TASKS:
        raise _closest(task, TASKS, "task")
    key = (task, split, kind)
    if key not in RELEASE_FILES:
        have = sorted(f"{s}/{k}" for t, s, k in RELEASE_FILES if t == task)
        raise ValueError(f"the JPO release has no {kind} file for split {split!r} of {task!r}; it has: "
                         f"{', '.join(have)}")
    return RELEASE_FILES[key]


def selected_kinds(kinds: str) -> tuple[str, ...]:
    """``conditional`` / ``joint`` alone, or ``both`` (the paper's setup)."""
    if kinds not in KIND_CHOICES:
        raise _closest(kinds, KIND_CHOICES, "preference kind")
    return ("conditional", "joint") if kinds == "both" else (kinds,)


def _is_tie(raw: dict, source: str, row: int) -> bool:
    for flag in _TIE_FLAGS:
        if flag in raw:
            if not isinstance(raw[flag], bool):
                raise DataError(source, row, flag, f"expected true or false, got {raw[flag]!r}")
            if raw[flag]:
                return True
    return raw.get("feedback") == 2


def _tldr_instruction(post: Prompt) -> Prompt:
    return TLDR_RELEASE_INSTRUCTION.format(post=post)


def read_release_preferences(path: str | Path, kind: Literal["conditional", "joint"], task: str | None = None,
                             ) -> tuple[list[PreferenceRecord], int]:
    """Records of one release preference file and the number of ties dropped.

    Every row must be of the file's kind (identical instructions in a conditional file, different
    ones in a joint file). ``task="tldr"`` puts each instruction under :data:`TLDR_RELEASE_INSTRUCTION`.
    """
    name = str(path)
    records, ties = [], 0
    for n, raw in read_rows(path):
        if not isinstance(raw, dict):
            raise DataError(name, n, None, f"expected an object, got {type(raw).__name__}")
        _require(raw, _RELEASE_FIELDS, name, n)
        if _is_tie(raw, name, n):
            ties += 1
            continue
        rec = parse_row(raw, name, n)
        if rec.kind != kind:
            raise DataError(name, n, "i_reject", f"this {kind} file holds a {rec.kind} pair (the instructions are "
                                                 f"{'identical' if rec.kind == 'conditional' else 'different'})")
        if task == "tldr":
            rec = replace(rec, prompt_chosen=_tldr_instruction(rec.prompt_chosen),
                          prompt_rejected=_tldr_instruction(rec.prompt_rejected))
        records.append(rec)
    return records, ties


def load_release_preferences(task: str, kinds: str = "both", split: str = "train",
                             source: str | Path = RELEASE_REPO) -> list[PreferenceRecord]:
    """The release's preference pairs for ``task`` (tldr, hh-helpful): ``kinds`` conditional, joint
    or both (conditional first), ties dropped. ``source``: the hub id or a local copy of the repo."""
    kinds_wanted = selected_kinds(kinds)
    files = [(kind, release_file(task, split, kind)) for kind in kinds_wanted]
    records: list[PreferenceRecord] = []
    for kind, filename in files:
        records += read_release_preferences(locate(source, filename), kind, task)[0]
    if not records:
        raise DataError(str(source), None, None, f"no {kinds} preferences for {task}/{split} (every row a tie?)")
    return records


def read_sft(path: str | Path, task: str | None = None) -> list[SFTExample]:
    """Instruction-response rows (field names in :data:`SFT_FIELDS`; the instruction may also be a
    list of chat messages). ``task="tldr"`` formats instructions as :func:`load_release_preferences` does."""
    name = str(path)
    examples = []
    for n, raw in read_rows(path):
        if not isinstance(raw, dict):
            raise DataError(name, n, None, f"expected an object, got {type(raw).__name__}")
        i_field = next((i for i, _ in SFT_FIELDS if raw.get(i) is not None), None)
        r_field = next((r for i, r in SFT_FIELDS if i == i_field and raw.get(r) is not None), None)
        if i_field is None or r_field is None:
            missing = next(r for i, r in SFT_FIELDS if i == i_field) if i_field else "instruction"
            expected = " or ".join(f"{i}/{r}" for i, r in SFT_FIELDS)
            raise DataError(name, n, missing, f"is missing (expected {expected}; found keys {sorted(raw)})")
        prompt = _prompt(raw[i_field], name, n, i_field)
        examples.append(SFTExample(_tldr_instruction(prompt) if task == "tldr" else prompt,
                                   _text(raw[r_field], name, n, r_field)))
    if not examples:
        raise DataError(name, None, None, "contains no rows")
    return examples


def load_release_sft(task: str, split: str = "train", source: str | Path = RELEASE_REPO) -> list[SFTExample]:
    """The release's SFT examples for ``task`` and ``split`` (train, val, or test with gold responses)."""
    return read_sft(locate(source, release_file(task, split, "sft")), task)


def load_eval_examples(task: str, source: str | Path = RELEASE_REPO, n: int | None = 500) -> list[SFTExample]:
    """The first ``n`` test items of ``task`` with their gold responses (the paper evaluates on the
    first 500); ``n=None`` keeps all. ``source``: the hub id, a local copy of the repo, or one file."""
    path = Path(source)
    examples = read_sft(path if path.is_file() else locate(source, release_file(task, "test", "sft")), task)
    return examples if n is None else examples[:n]


# --- openai/summarize_from_feedback --------------------------------------------------------------

def tldr_prompt(subreddit: str, title: str, post: str) -> str:
    return TLDR_PROMPT.format(subreddit=subreddit, title=title, post=post)


def parse_comparison(raw: Any, source: str, row: int) -> PreferenceRecord | None:
    """One ``comparisons`` row as a conditional pair; ``None`` for a news-article row (CNN/DM items
    have ``info.article`` and no post, and are not part of TL;DR)."""
    if not isinstance(raw, dict):
        raise DataError(source, row, None, f"expected an object, got {type(raw).__name__}")
    _require(raw, ("info", "summaries", "choice"), source, row)
    info = raw["info"]
    if not isinstance(info, dict):
        raise DataError(source, row, "info", f"expected an object, got {type(info).__name__}")
    if info.get("post") is None and info.get("article") is not None:
        return None
    fields = {}
    for key in ("subreddit", "title", "post"):
        if info.get(key) is None:
            raise DataError(source, row, f"info.{key}", "is missing")
        fields[key] = _text(info[key], source, row, f"info.{key}")
    summaries = raw["summaries"]
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise DataError(source, row, "summaries", "expected a list of exactly two summaries")
    texts = []
    for i, summary in enumerate(summaries):
        if not isinstance(summary, dict) or "text" not in summary:
            raise DataError(source, row, f"summaries[{i}].text", "is missing")
        # The dataset's summaries start with the space that follows "TL;DR:".
        texts.append(_text(summary["text"], source, row, f"summaries[{i}].text").strip())
    choice = raw["choice"]
    if type(choice) is not int or choice not in (0, 1):
        raise DataError(source, row, "choice", f"expected 0 or 1, got {choice!r}")
    prompt = tldr_prompt(**fields)
    return _record(prompt, texts[choice], prompt, texts[1 - choice])


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
    text = _text(text, source, row, field)
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
    if not isinstance(raw, dict):
        raise DataError(source, row, None, f"expected an object, got {type(raw).__name__}")
    _require(raw, ("chosen", "rejected"), source, row)
    chosen = parse_transcript(raw["chosen"], source, row, "chosen")
    rejected = parse_transcript(raw["rejected"], source, row, "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise DataError(source, row, "rejected", "chosen and rejected must share every turn but the last")
    return _record(chosen[:-1], chosen[-1]["content"], rejected[:-1], rejected[-1]["content"])


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
