"""What both embedded tasks share: word tokenisation, the empty/degenerate/on-topic gate, topics
and the by-topic train/eval split.

Gate (applied by every task before its own score):

- **empty**: no word characters at all -> the task scores 0.
- **degenerate** -> 0: fewer than ``MIN_DISTINCT_WORDS`` distinct words; or, with at least
  ``FREQ_MIN_TOKENS`` tokens, one word making up more than ``MAX_WORD_SHARE`` of them; or one
  3-gram occurring ``MAX_TRIGRAM_REPEATS`` times or more, unless it is made only of function words
  (so a templated list like "- It is a ..." is not a loop, but "I love coffee. I love coffee. I
  love coffee." is). These catch sampling loops and reward hacks that pile up a word.
- **gaming** -> ``GAMING_FACTOR`` (0.25) of the score: an answer that satisfies a scorer without
  answering (:func:`gaming_kinds`): fewer than ``MIN_ANSWER_WORDS`` words (*minimal*); words with no
  sentence around them, a run of keywords (*keyword dump*: no function word, or under
  ``MIN_FUNCTION_SHARE`` of the tokens of a longer one); talk about the instruction instead of the topic
  (*restates instruction*: ``META_WORDS`` make up ``MAX_META_SHARE`` or more of the content words);
  the same line twice (*repeated lines*). A task may add its own kinds (sentiment: lexicon stuffing).
- **on-topic**: some token, after light stemming (plurals, -ing, -ed), equals a topic keyword or a
  content word of the topic's name (multi-word keywords match consecutive tokens). An off-topic
  answer keeps only ``OFF_TOPIC_FACTOR`` of its score, so satisfying the format with filler never
  pays.

Split: each task orders its topics by a hash of ``task/topic`` and gives the first
``EVAL_FRACTION`` to ``eval``, the rest to ``train``. The split is disjoint by construction and
independent of the list order; adding a topic moves at most one other across the boundary. The
``validation`` split (a sweep's selection prompts) draws prompts on the *train* topics from its own seeded
stream, so nothing chosen on it has seen an eval topic (the sweep leaves out any that repeats a training
prompt's text).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from prefbench.tasks.base import TaskPrompt

MIN_DISTINCT_WORDS = 2
FREQ_MIN_TOKENS = 6        # below this, one repeated "the" is ordinary prose, not a loop
MAX_WORD_SHARE = 0.4
MAX_TRIGRAM_REPEATS = 3
OFF_TOPIC_FACTOR = 0.25
GAMING_FACTOR = 0.25
MIN_ANSWER_WORDS = 4
MIN_FUNCTION_SHARE = 0.1
MAX_META_SHARE = 0.3
EVAL_FRACTION = 1 / 3
SPLITS = ("train", "validation", "eval")

# A word: letters/digits, with inner hyphens or apostrophes ("well-known", "don't" are one word).
WORD_RE = re.compile(r"[A-Za-z0-9]+(?:[-'’][A-Za-z0-9]+)*")

FUNCTION_WORDS = frozenset(
    "a an the and or but of to in on at for with by from as is are was were be been it its this that "
    "these those there their they them he she his her we our you your i my me not no so if than then "
    "very also can will would should do does did has have had about into over under set".split()
)


# Words that talk about an instruction or an answer's form rather than about a topic.
META_WORDS = tuple((
    "answer answers instruction instructions constraint constraints request response reply format word words "
    "sentence sentences bullet bullets point points comma commas title phrase exactly least most limit "
    "require required requirement task prompt follow following write written"
).split())


def words(text: str) -> list[str]:
    """The words of ``text`` in order, as written (hyphenated and apostrophe words count once)."""
    return WORD_RE.findall(text)


def stem(word: str) -> str:
    """A deliberately light stemmer, enough to match "waves"/"wave", "brewing"/"brew", "berries"/"berry"."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 5 and w.endswith("ing"):
        return w[:-3]
    if len(w) > 4 and w.endswith("ed"):
        return w[:-2]
    if len(w) > 3 and w.endswith("es") and w[-3] in "sxz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


META_STEMS = frozenset(stem(w) for w in META_WORDS)


def is_degenerate(text: str) -> bool:
    """See the module docstring; empty text counts as degenerate too."""
    tokens = [w.lower() for w in words(text)]
    if len(set(tokens)) < MIN_DISTINCT_WORDS:
        return True
    if len(tokens) >= FREQ_MIN_TOKENS and Counter(tokens).most_common(1)[0][1] > MAX_WORD_SHARE * len(tokens):
        return True
    trigrams = Counter(zip(tokens, tokens[1:], tokens[2:]))
    return any(n >= MAX_TRIGRAM_REPEATS and not set(g) <= FUNCTION_WORDS for g, n in trigrams.items())


def gaming_kinds(text: str) -> list[str]:
    """The ways ``text`` games a scorer instead of answering (see the module docstring); empty for an answer."""
    tokens = [w.lower() for w in words(text)]
    if not tokens:
        return []
    kinds = []
    if len(tokens) < MIN_ANSWER_WORDS:
        kinds.append("minimal")
    function = sum(t in FUNCTION_WORDS for t in tokens)
    if len(tokens) >= 3 and (function == 0 or (len(tokens) >= 8 and function < MIN_FUNCTION_SHARE * len(tokens))):
        kinds.append("keyword_dump")
    content = [stem(t) for t in tokens if t not in FUNCTION_WORDS]
    meta = sum(c in META_STEMS for c in content)
    if meta >= 2 and meta >= MAX_META_SHARE * len(content):
        kinds.append("restates_instruction")
    lines = Counter(" ".join(words(line.lower())) for line in text.splitlines() if len(words(line)) >= 2)
    if any(n > 1 for n in lines.values()):
        kinds.append("repeated_lines")
    return kinds


@dataclass(frozen=True)
class Topic:
    """A subject a prompt is about; ``keywords`` are words whose use shows an answer stayed on it."""

    name: str
    keywords: tuple[str, ...]

    def match_terms(self) -> list[str]:
        """Keywords plus the content words of the name, as stored in prompt metadata."""
        own = [w for w in words(self.name) if w.lower() not in FUNCTION_WORDS]
        return list(dict.fromkeys([*own, *self.keywords]))


def on_topic(text: str, terms: Iterable[str]) -> bool:
    """Whether ``text`` uses any of ``terms`` (stemmed, case-insensitive; multi-word terms in sequence)."""
    tokens = [stem(w) for w in words(text)]
    joined = f" {' '.join(tokens)} "
    return any(f" {' '.join(stem(w) for w in words(term))} " in joined for term in terms if words(term))


def gate(text: str, terms: Iterable[str], extra_gaming: Iterable[str] = ()) -> tuple[float, dict[str, Any]]:
    """The factor a task's raw score is multiplied by, and why: 0 if empty or degenerate, else
    ``OFF_TOPIC_FACTOR`` if off topic and ``GAMING_FACTOR`` if gaming (both when both). ``extra_gaming``:
    the task's own gaming kinds found in ``text``."""
    empty = not words(text)
    degenerate = empty or is_degenerate(text)
    topical = not empty and on_topic(text, terms)
    gaming = [] if empty else gaming_kinds(text) + list(extra_gaming)
    factor = 0.0 if degenerate else (1.0 if topical else OFF_TOPIC_FACTOR) * (GAMING_FACTOR if gaming else 1.0)
    return factor, {"empty": empty, "degenerate": degenerate, "on_topic": topical, "gaming": gaming}


def split_topics(task: str, topics: Iterable[Topic], split: str) -> list[Topic]:
    """The topics of ``split`` ("train", "validation" or "eval"), in a fixed hash order (see the module
    docstring); validation prompts are drawn on the train topics."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ordered = sorted(topics, key=lambda t: hashlib.sha256(f"{task}/{t.name}".encode()).hexdigest())
    n_eval = round(len(ordered) * EVAL_FRACTION)
    return ordered[:n_eval] if split == "eval" else ordered[n_eval:]


def topic_prompts(task: str, topics: list[Topic], split: str, n: int, seed: int,
                  draw: Callable[[random.Random, Topic], tuple[str, dict[str, Any]]]) -> list[TaskPrompt]:
    """``n`` prompts cycling through ``topics`` in a seeded order; ``draw(rng, topic)`` returns one
    prompt's text and judge metadata and is redrawn (up to 20 times) while it repeats an earlier prompt
    exactly. Deterministic, and a prefix of a longer list for the same seed."""
    rng = random.Random(f"{task}/{split}/{seed}")
    out: list[TaskPrompt] = []
    seen: set[str] = set()
    cycle: list[Topic] = []
    while len(out) < n:
        if not cycle:
            cycle = rng.sample(topics, len(topics))
        topic = cycle.pop()
        for _ in range(20):
            text, meta = draw(rng, topic)
            if text not in seen:
                break
        seen.add(text)
        out.append(TaskPrompt(id=f"{task}/{split}/{len(out):04d}", text=text, meta=meta))
    return out
