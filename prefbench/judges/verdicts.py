"""What a pairwise judge is asked and how its answer is read.

A pairwise judge sees one instruction and two responses in slots A and B (rendered with a
template) and names the better slot. Text judges answer in free text, so :func:`parse_verdict`
reads the common shapes of an answer; anything it cannot read is *unparseable* (``None``) and is
later counted as a tie, never guessed.

Expected output of :data:`DEFAULT_TEMPLATE` (MT-Bench style): the judge may reason first, then
ends with exactly one of ``[[A]]``, ``[[B]]`` or ``[[tie]]``. A custom template must contain the
fields ``{instruction}``, ``{response_a}`` and ``{response_b}`` (``str.format`` syntax, so literal
braces are written ``{{`` and ``}}``) and should ask for the same output format; the parser also
accepts the looser shapes listed in :func:`parse_verdict`.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Literal

from prefbench.util.errors import UserError

Winner = Literal["A", "B", "tie"]

DEFAULT_TEMPLATE = """\
Please act as an impartial judge and evaluate the two responses below to the user's instruction.
Choose the response that follows the instruction better and is more helpful, accurate and relevant.
Do not let the order in which the responses are shown, their length, or any names influence you.

[Instruction]
{instruction}

[Response A]
{response_a}

[Response B]
{response_b}

Explain your reasoning briefly if you wish, then give your final verdict on the last line in exactly
this format: "[[A]]" if Response A is better, "[[B]]" if Response B is better, "[[tie]]" if they are
equally good."""

TEMPLATE_FIELDS = ("instruction", "response_a", "response_b")


class JudgeError(UserError, RuntimeError):
    """A judge could not give a verdict (bad template, endpoint refused the request, ...)."""


@dataclass(frozen=True)
class Verdict:
    """One judge call: which slot won (``None`` = unparseable) and the judge's raw output."""

    winner: Winner | None
    raw: str


def check_template(template: str) -> str:
    """Fail at construction, not on the thousandth call, when a template cannot be rendered."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    missing = [f for f in TEMPLATE_FIELDS if f not in names]
    unknown = sorted(names - set(TEMPLATE_FIELDS))
    if missing or unknown:
        raise JudgeError(
            f"judge template must use exactly the fields {{instruction}}, {{response_a}}, {{response_b}}; "
            f"missing {missing or 'none'}, unknown {unknown or 'none'} (write literal braces as {{{{ }}}})"
        )
    return template


def render_prompt(template: str, instruction: str, response_a: str, response_b: str) -> str:
    return template.format(instruction=instruction, response_a=response_a, response_b=response_b)


_TIE_WORDS = {"tie": "tie", "c": "tie", "draw": "tie", "a": "A", "b": "B"}
# [[A]], [[B]], [[tie]]; [[C]] is MT-Bench's spelling of a tie
_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
# The slot letter is matched upper-case only, so the article "a" ("a better answer") is not a vote.
_SLOT = r"(?:(?i:response|assistant|output|answer)\s+)?([AB])\b"
_PHRASES = (
    # "Answer: B", "Final verdict - Response A", "The answer is A"
    re.compile(r"(?i:answer|verdict|winner|choice|decision|preference|better response)(?:\s*[:=\-]|\s+(?i:is))\s*\**"
               + _SLOT),
    # "Response A is better", "B is clearly better", "Assistant A is preferred"
    re.compile(r"\b" + _SLOT + r"\s+(?i:is\s+(?:clearly\s+|much\s+|slightly\s+|the\s+)?"
                                r"(?:better|preferred|superior|more helpful|winner))"),
    # "I prefer Response B", "I would choose A"
    re.compile(r"(?i:prefer|choose|pick|select)\s+" + _SLOT),
)
_TIE_PHRASE = re.compile(r"\b(?:tie|draw)\b|\bequally\s+(?:good|bad|helpful)\b", re.IGNORECASE)


def parse_verdict(text: str) -> Winner | None:
    """Read a judge's free-text answer as ``"A"``, ``"B"``, ``"tie"``, or ``None`` (unparseable).

    In order: the bracketed form of the template (``[[A]]``; also ``[[C]]`` as a tie); a reply that
    is only a verdict word (``A``, ``**b**``, ``Tie.``); phrases ("Answer: B", "Response A is better",
    "I prefer B", "it's a tie"). A reply naming two different verdicts in the same form is ambiguous
    and unparseable rather than resolved by position, since either guess would bias the result.
    """
    bracketed = {_TIE_WORDS[m.lower()] for m in _BRACKETED.findall(text)}
    if bracketed:
        return bracketed.pop() if len(bracketed) == 1 else None
    bare = text.strip().strip(string.punctuation + string.whitespace).lower()
    if bare in _TIE_WORDS and bare != "c":
        return _TIE_WORDS[bare]
    found: set[Winner] = {m for pattern in _PHRASES for m in pattern.findall(text)}
    if _TIE_PHRASE.search(text):
        found.add("tie")
    return found.pop() if len(found) == 1 else None
