"""Robustness variants of an eval prompt: the same request and the same judge, worded differently.

- ``paraphrase``: the task's own re-wording with phrasings held out of training (the task supplies it).
- ``typo``: character typos (swap two adjacent letters, drop one, or double one; the first letter is
  kept) in ``TYPO_RATE`` of the words, at least one. Only alphabetic words of 4+ letters are touched,
  never number words or anything protected.
- ``case``: either the whole prompt upper-cased or each word randomly upper/lower/capitalised.
- ``distractor``: one irrelevant sentence appended.

Protected spans are quoted text ("Have a nice day."), ``<<...>>`` examples and any token holding a
digit: they are what the answer is checked against, so perturbing them would change the task.
Every variant keeps the original's metadata, so the same judge scores it; ids are
``<parent-id>~<kind>``. Each kind draws from its own ``random.Random("<parent-id>/<kind>/<seed>")``,
so a variant is a function of (prompt, kind, seed) alone.
"""

from __future__ import annotations

import copy
import random
import re
from typing import Callable

from prefbench.tasks.base import VARIANT_KINDS, TaskPrompt
from prefbench.tasks.common import words
from prefbench.util.names import suggest

TYPO_RATE = 0.1
PERTURBATIONS = VARIANT_KINDS[1:]      # every kind except "original"

_PROTECTED_RE = re.compile(r'"[^"]*"|“[^”]*”|<<[^<>]*>>|\S*\d\S*')
_TYPO_WORD_RE = re.compile(r"\b[A-Za-z]{4,}\b")
_WORD_RE = re.compile(r"[A-Za-z]+")
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
    "hundred once twice single first second third".split()
)

DISTRACTORS = (
    "By the way, my cousin just adopted a cat.",
    "I had pasta for lunch today.",
    "It might rain later this afternoon.",
    "My neighbor is learning to play the violin.",
    "The train was late again this morning.",
    "I still need to water the plants.",
    "Our office is getting new chairs next week.",
    "My sister prefers tea over juice.",
    "The library closes early on Sundays.",
    "I lost my umbrella at the bus stop yesterday.",
    "There is a jazz concert downtown tonight.",
    "My phone battery is almost empty.",
)


def _unprotected_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _PROTECTED_RE.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def _map_unprotected(text: str, fn: Callable[[str], str]) -> str:
    out, pos = [], 0
    for a, b in _unprotected_spans(text):
        out.append(text[pos:a])
        out.append(fn(text[a:b]))
        pos = b
    out.append(text[pos:])
    return "".join(out)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(("swap", "drop", "double"))
    if op == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1:]   # drop (also the fallback when a swap would change nothing)


def add_typos(text: str, rng: random.Random, rate: float = TYPO_RATE) -> str:
    """Typos in ``rate`` of the words (at least one), outside protected spans."""
    candidates = [
        m.span()
        for a, b in _unprotected_spans(text)
        for m in _TYPO_WORD_RE.finditer(text, a, b)
        if m.group().lower() not in _NUMBER_WORDS
    ]
    k = min(len(candidates), max(1, round(rate * len(words(text)))))
    chosen = sorted(rng.sample(candidates, k))
    out, pos = [], 0
    for a, b in chosen:
        out += [text[pos:a], _typo(text[a:b], rng)]
        pos = b
    return "".join(out) + text[pos:]


def recase(text: str, rng: random.Random) -> str:
    """Upper-case everything, or give every word a random case; protected spans keep theirs."""
    if rng.random() < 0.5:
        return _map_unprotected(text, str.upper)
    styles = (str.upper, str.lower, str.capitalize)
    return _map_unprotected(text, lambda s: _WORD_RE.sub(lambda m: rng.choice(styles)(m.group()), s))


def add_distractor(text: str, rng: random.Random) -> str:
    return f"{text.rstrip()} {rng.choice(DISTRACTORS)}"


def make_variants(
    prompt: TaskPrompt,
    seed: int,
    paraphrase: Callable[[random.Random], str],
    kinds: tuple[str, ...] = PERTURBATIONS,
) -> list[TaskPrompt]:
    """The variants of an original prompt; ``paraphrase(rng)`` is the task's held-out re-wording."""
    if prompt.variant != "original":
        raise ValueError(f"prompt {prompt.id} is already a '{prompt.variant}' variant; perturb the original")
    makers: dict[str, Callable[[random.Random], str]] = {
        "paraphrase": paraphrase,
        "typo": lambda rng: add_typos(prompt.text, rng),
        "case": lambda rng: recase(prompt.text, rng),
        "distractor": lambda rng: add_distractor(prompt.text, rng),
    }
    for kind in kinds:
        if kind not in makers:
            raise ValueError(f"unknown variant kind '{kind}'{suggest(kind, makers, 0.6)}; known: {', '.join(makers)}")
    return [
        TaskPrompt(
            id=f"{prompt.id}~{kind}",
            text=makers[kind](random.Random(f"{prompt.id}/{kind}/{seed}")),
            meta=copy.deepcopy(prompt.meta),
            variant=kind,
            parent=prompt.id,
        )
        for kind in kinds
    ]
