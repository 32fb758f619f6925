"""The JPO/DOVE release (Bansal et al., "Comparing Bad Apples to Good Oranges", arXiv 2404.00530),
``jointpreferences/sft_and_pref_data``: per task (TL;DR, Anthropic-Helpful), SFT files
``{"instruction", "response"}``, conditional and joint preference files
``{"i_chosen", "r_chosen", "i_reject", "r_reject"}`` and a test file ``{"instruction", "gold_response"}``.

Read from the hub on a user's machine or from a local copy with the same layout (which is how the
tests read them). The paper trains on conditional + joint rankings with ties removed
(``kinds="both"``) and evaluates on the first 500 test items (:func:`load_eval_examples`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Literal

from prefbench.formats.hub import locate
from prefbench.formats.preferences import parse_row
from prefbench.formats.records import DataError, PreferenceRecord, Prompt, SFTExample, as_object, require
from prefbench.formats.rows import read_rows
from prefbench.formats.sft import read_sft
from prefbench.util.names import suggest

RELEASE_REPO = "jointpreferences/sft_and_pref_data"
TASKS = ("tldr", "hh-helpful")
KIND_CHOICES = ("conditional", "joint", "both")

# (task, split, kind) -> path inside the release repo. Taken from the DOVE repository's README and
# its data/ folder (github.com/Hritikbansal/dove), which the hub dataset mirrors under data/; check
# the names against the hub's file list when hub access exists. Joint rankings exist for training (and,
# in the DOVE repository's TL;DR folder, validation); the test files carry the gold response as
# "gold_response". Each file is also found under the other JSON extension (:func:`release_names`).
RELEASE_FILES: dict[tuple[str, str, str], str] = {
    ("tldr", "train", "sft"): "data/tldr/train_sft.jsonl",
    ("tldr", "val", "sft"): "data/tldr/val_sft.jsonl",
    ("tldr", "test", "sft"): "data/tldr/test.json",
    ("tldr", "train", "conditional"): "data/tldr/train_conditional_pref.jsonl",
    ("tldr", "val", "conditional"): "data/tldr/val_conditional_pref.jsonl",
    ("tldr", "train", "joint"): "data/tldr/train_joint_pref.jsonl",
    ("tldr", "val", "joint"): "data/tldr/val_joint_pref.jsonl",
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

# A release row is a tie when "tie"/"is_tie" is true, or "feedback" is 2 (the DOVE feedback
# script's "equally good/bad"). Ties carry no preference and are dropped, as in the paper.
_TIE_FLAGS = ("tie", "is_tie")
_RELEASE_FIELDS = ("i_chosen", "r_chosen", "i_reject", "r_reject")


def _choice(name: str, valid: tuple[str, ...], what: str) -> str:
    if name not in valid:
        raise DataError(RELEASE_REPO, None, None, f"unknown {what} {name!r}{suggest(name, valid, 0.6)}; valid: {', '.join(valid)}")
    return name


def release_file(task: str, split: str, kind: str) -> str:
    """The release's path for ``(task, split, kind)``; ``kind`` is sft, conditional or joint."""
    _choice(task, TASKS, "task")
    key = (task, split, kind)
    if key not in RELEASE_FILES:
        have = sorted(f"{s}/{k}" for t, s, k in RELEASE_FILES if t == task)
        raise DataError(RELEASE_REPO, None, None, f"the JPO release has no {kind} file for split {split!r} of "
                                                  f"{task!r}; it has: {', '.join(have)}")
    return RELEASE_FILES[key]


def release_names(filename: str) -> tuple[str, str]:
    """``filename`` and the same name under the other JSON extension: copies of the release name their JSON
    Lines files either way (the DOVE repository's TL;DR preference files are ``*.json``, the hub's ``*.jsonl``),
    and the row reader reads either content under either name."""
    stem, ext = filename.rsplit(".", 1)
    return filename, f"{stem}.{'json' if ext == 'jsonl' else 'jsonl'}"



def selected_kinds(kinds: str) -> tuple[str, ...]:
    """``conditional`` / ``joint`` alone, or ``both`` (the paper's setup)."""
    _choice(kinds, KIND_CHOICES, "preference kind")
    return ("conditional", "joint") if kinds == "both" else (kinds,)


def instruction_format(task: str | None) -> Callable[[Prompt], Prompt] | None:
    """How the paper formats the task's instructions: TL;DR posts go under
    :data:`TLDR_RELEASE_INSTRUCTION`; other tasks keep theirs as they are."""
    return (lambda post: TLDR_RELEASE_INSTRUCTION.format(post=post)) if task == "tldr" else None


def _is_tie(raw: dict, source: str, row: int) -> bool:
    for flag in _TIE_FLAGS:
        if flag in raw:
            if not isinstance(raw[flag], bool):
                raise DataError(source, row, flag, f"expected true or false, got {raw[flag]!r}")
            if raw[flag]:
                return True
    return raw.get("feedback") == 2


def read_release_preferences(path: str | Path, kind: Literal["conditional", "joint"], task: str | None = None,
                             ) -> tuple[list[PreferenceRecord], int]:
    """Records of one release preference file and the number of ties dropped.

    Every row must be of the file's kind (identical instructions in a conditional file, different
    ones in a joint file). Instructions are formatted as :func:`instruction_format` says for ``task``.
    """
    name = str(path)
    wrap = instruction_format(task)
    records, ties = [], 0
    for n, raw in read_rows(path):
        raw = as_object(raw, name, n)
        require(raw, _RELEASE_FIELDS, name, n)
        if _is_tie(raw, name, n):
            ties += 1
            continue
        rec = parse_row(raw, name, n)
        if rec.kind != kind:
            raise DataError(name, n, "i_reject", f"this {kind} file holds a {rec.kind} pair (the instructions are "
                                                 f"{'identical' if rec.kind == 'conditional' else 'different'})")
        if wrap:
            rec = replace(rec, prompt_chosen=wrap(rec.prompt_chosen), prompt_rejected=wrap(rec.prompt_rejected))
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
        records += read_release_preferences(locate(source, *release_names(filename)), kind, task)[0]
    if not records:
        raise DataError(str(source), None, None, f"no {kinds} preferences for {task}/{split} (every row a tie?)")
    return records


def load_release_sft(task: str, split: str = "train", source: str | Path = RELEASE_REPO) -> list[SFTExample]:
    """The release's SFT examples for ``task`` and ``split`` (train, val, or test with gold responses)."""
    return read_sft(locate(source, *release_names(release_file(task, split, "sft"))), instruction_format(task))


def load_eval_examples(task: str, source: str | Path = RELEASE_REPO, n: int | None = 500) -> list[SFTExample]:
    """The first ``n`` test items of ``task`` with their gold responses (the paper evaluates on the
    first 500); ``n=None`` keeps all. ``source``: the hub id, a local copy of the repo, or one file."""
    path = Path(source)
    file = path if path.is_file() else locate(source, *release_names(release_file(task, "test", "sft")))
    examples = read_sft(file, instruction_format(task))
    return examples if n is None else examples[:n]
