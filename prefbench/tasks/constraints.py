"""The format constraints of ifeval-lite, each checked by code: the verdict (``check``), graded
credit for a near miss (``partial``, capped at ``PARTIAL_CAP`` when scored), the words an answer must
contain, and which constraints can be asked together."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from prefbench.tasks.common import stem, words

PARTIAL_CAP = 0.5

def _ratio_credit(count: int, target: int) -> float:
    """0.5 at the target, falling linearly to 0 at a relative miss of 100%."""
    return PARTIAL_CAP * max(0.0, 1.0 - abs(count - target) / target)


def _tokens(text: str) -> list[str]:
    return [w.lower() for w in words(text)]


_TRAIL_RE = re.compile(r"[\s\"'“”‘’*_)\].!?,;:]+$")
_LEAD_RE = re.compile(r"^[\s\"'“”‘’*_#>(\[]+")


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Constraint:
    """A checkable format rule. ``check`` is the verdict; ``partial`` grades a failed answer in
    [0, 1] (capped at ``PARTIAL_CAP`` when scored); ``literals`` are words the answer must contain."""

    kind: ClassVar[str]
    group: ClassVar[str | None] = None        # at most one constraint per group in a prompt

    def check(self, response: str) -> bool:
        raise NotImplementedError

    def partial(self, response: str) -> float:
        return 0.0

    def literals(self) -> tuple[str, ...]:
        return ()

    def words_needed(self) -> int:
        """The fewest words an answer meeting this constraint can have (for word-limit feasibility)."""
        return len(self.literals())

    def to_meta(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}


@dataclass(frozen=True)
class MaxWords(Constraint):
    n: int
    kind: ClassVar[str] = "max_words"
    group: ClassVar[str | None] = "length"

    def check(self, response: str) -> bool:
        return len(words(response)) <= self.n

    def partial(self, response: str) -> float:
        """Linear in the overshoot: 0.5 just over the limit, 0 at twice the limit."""
        return _ratio_credit(len(words(response)), self.n)


@dataclass(frozen=True)
class MinWords(Constraint):
    n: int
    kind: ClassVar[str] = "min_words"
    group: ClassVar[str | None] = "length"

    def check(self, response: str) -> bool:
        return len(words(response)) >= self.n

    def partial(self, response: str) -> float:
        """0.5 × the fraction of the required length written."""
        return PARTIAL_CAP * len(words(response)) / self.n


@dataclass(frozen=True)
class IncludeKeywords(Constraint):
    keywords: tuple[str, ...]
    kind: ClassVar[str] = "include_keywords"

    def _found(self, response: str) -> int:
        present = {stem(w) for w in words(response)}
        return sum(stem(k) in present for k in self.keywords)

    def check(self, response: str) -> bool:
        return self._found(response) == len(self.keywords)

    def partial(self, response: str) -> float:
        """0.5 × the fraction of keywords used (plural/-ing/-ed forms count)."""
        return PARTIAL_CAP * self._found(response) / len(self.keywords)

    def literals(self) -> tuple[str, ...]:
        return self.keywords


@dataclass(frozen=True)
class ForbidWord(Constraint):
    word: str
    kind: ClassVar[str] = "forbid_word"

    def _count(self, response: str) -> int:
        return _tokens(response).count(self.word.lower())

    def check(self, response: str) -> bool:
        return self._count(response) == 0

    def partial(self, response: str) -> float:
        """0.5 if the word slipped in exactly once, else 0 (exact word, case-insensitive)."""
        return PARTIAL_CAP if self._count(response) == 1 else 0.0


_BULLET_RE = re.compile(r"^[ \t]*[-*][ \t]+\S", re.MULTILINE)


@dataclass(frozen=True)
class Bullets(Constraint):
    n: int
    kind: ClassVar[str] = "bullets"
    group: ClassVar[str | None] = "structure"

    @staticmethod
    def count(response: str) -> int:
        """Lines starting with "- " or "* " (blank lines and text around the list are allowed)."""
        return len(_BULLET_RE.findall(response))

    def check(self, response: str) -> bool:
        return self.count(response) == self.n

    def partial(self, response: str) -> float:
        """Linear in the relative miss of the item count; no list at all earns 0."""
        return _ratio_credit(self.count(response), self.n)

    def words_needed(self) -> int:
        return 3 * self.n


@dataclass(frozen=True)
class EndPhrase(Constraint):
    phrase: str
    kind: ClassVar[str] = "end_phrase"

    def _core(self) -> str:
        return _TRAIL_RE.sub("", _squash(self.phrase))

    def check(self, response: str) -> bool:
        """Case-insensitive; closing punctuation, quotes and emphasis after the phrase are ignored
        (so "... have a nice day!" and a quoted answer ending '... day."' both pass)."""
        core, text = self._core(), _TRAIL_RE.sub("", _squash(response))
        return text.endswith(core) and (len(text) == len(core) or not text[-len(core) - 1].isalnum())

    def partial(self, response: str) -> float:
        """0.5 if the phrase appears but something follows it."""
        return PARTIAL_CAP if self._core() in _squash(response) else 0.0

    def literals(self) -> tuple[str, ...]:
        return tuple(words(self.phrase))


@dataclass(frozen=True)
class StartWith(Constraint):
    phrase: str
    kind: ClassVar[str] = "start_with"
    group: ClassVar[str | None] = "opening"

    def check(self, response: str) -> bool:
        """Case-insensitive; leading quotes, emphasis and heading marks are skipped."""
        text, core = _LEAD_RE.sub("", _squash(response)), _squash(self.phrase)
        return text.startswith(core) and (len(text) == len(core) or not text[len(core)].isalnum())

    def literals(self) -> tuple[str, ...]:
        return tuple(words(self.phrase))


@dataclass(frozen=True)
class NoCommas(Constraint):
    kind: ClassVar[str] = "no_commas"

    @staticmethod
    def _count(response: str) -> int:
        return response.count(",") + response.count("，")

    def check(self, response: str) -> bool:
        return self._count(response) == 0

    def partial(self, response: str) -> float:
        """0.5 × (1 − commas/3): one stray comma still earns a third."""
        return PARTIAL_CAP * max(0.0, 1.0 - self._count(response) / 3)


_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])[\"'”’)]*\s+|\n+")


@dataclass(frozen=True)
class Sentences(Constraint):
    n: int
    kind: ClassVar[str] = "sentences"
    group: ClassVar[str | None] = "structure"

    @staticmethod
    def count(response: str) -> int:
        """Pieces with words, split after . ! ? followed by space, and at line breaks."""
        return sum(1 for piece in _SENTENCE_SPLIT_RE.split(response.strip()) if words(piece))

    def check(self, response: str) -> bool:
        return self.count(response) == self.n

    def partial(self, response: str) -> float:
        """Linear in the relative miss of the sentence count."""
        return _ratio_credit(self.count(response), self.n)

    def words_needed(self) -> int:
        return 4 * self.n


@dataclass(frozen=True)
class WrapQuotes(Constraint):
    kind: ClassVar[str] = "wrap_quotes"
    group: ClassVar[str | None] = "structure"

    def check(self, response: str) -> bool:
        text = response.strip()
        return len(text) >= 2 and text[0] in "\"“" and text[-1] in "\"”"


_TITLE_RE = re.compile(r"<<[^<>\n]*\w[^<>\n]*>>")


@dataclass(frozen=True)
class Title(Constraint):
    kind: ClassVar[str] = "title"
    group: ClassVar[str | None] = "opening"

    def check(self, response: str) -> bool:
        return _TITLE_RE.search(response) is not None

    def words_needed(self) -> int:
        return 1


CONSTRAINTS: dict[str, type[Constraint]] = {
    c.kind: c for c in (MaxWords, MinWords, IncludeKeywords, ForbidWord, Bullets, EndPhrase, StartWith,
                        NoCommas, Sentences, WrapQuotes, Title)
}
# Pairs from different groups that still clash: a sentence count that must also absorb a fixed
# closing sentence.
INCOMPATIBLE = {frozenset({"sentences", "end_phrase"})}
CONTENT_WORDS = 4    # room a word limit must leave for saying something about the topic


def constraint_from_meta(d: dict[str, Any]) -> Constraint:
    """Rebuild a checker from its ``{"kind": ..., params...}`` metadata."""
    kind = d.get("kind")
    if kind not in CONSTRAINTS:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {', '.join(CONSTRAINTS)}")
    cls = CONSTRAINTS[kind]
    missing = [f.name for f in fields(cls) if f.name not in d]
    if missing:
        raise ValueError(f"constraint '{kind}' needs {', '.join(missing)} in its metadata, got {d}")
    return cls(**{f.name: tuple(d[f.name]) if isinstance(d[f.name], list) else d[f.name] for f in fields(cls)})


def compatible(a: Constraint, b: Constraint) -> bool:
    """Whether two constraints can be met together (different groups, not a known clash, and no
    forbidden word among the other's required words)."""
    if a.group is not None and a.group == b.group:
        return False
    if frozenset({a.kind, b.kind}) in INCOMPATIBLE:
        return False
    for x, y in ((a, b), (b, a)):
        if isinstance(x, ForbidWord) and x.word.lower() in {w.lower() for w in y.literals()}:
            return False
    return True


def feasible(constraints: list[Constraint]) -> bool:
    """Pairwise compatible, and a word limit leaves room for every other constraint's fixed words
    (bullets, sentences, phrases) plus ``CONTENT_WORDS``."""
    if not all(compatible(a, b) for i, a in enumerate(constraints) for b in constraints[i + 1:]):
        return False
    needed = sum(c.words_needed() for c in constraints if not isinstance(c, MaxWords)) + CONTENT_WORDS
    return all(c.n >= needed for c in constraints if isinstance(c, MaxWords))
