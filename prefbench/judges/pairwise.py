"""Judging a pair in both orders, many pairs at once, and the judge's own diagnostics.

LLM judges favour a position (one flipped its verdict on swap 12.9% of the time). So every pair
is judged twice, response_1 in slot A then response_2 in slot A, and the score for response_1 is

    s = 1    if both orders prefer response_1
    s = 0    if both orders prefer response_2
    s = 0.5  otherwise (the orders disagree, either says tie, or either is unparseable)

as in MT-Bench's pairwise protocol and the JPO paper: a verdict that moves with the order says
more about the judge than about the responses. Identical responses are a tie without a call.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Protocol

from tqdm.auto import tqdm

from prefbench.judges.cache import JudgmentCache, judgment_key
from prefbench.judges.verdicts import Verdict, Winner


class PairwiseJudge(Protocol):
    name: str
    template: str
    concurrent: bool  # calls may run in a thread pool (HTTP); False: one at a time (a local model)

    def identity(self) -> dict[str, Any]:
        """What determines the verdicts (kind, model, endpoint, decoding settings); no secrets."""

    def judge(self, instruction: str, response_a: str, response_b: str) -> Verdict:
        """One call: which of slot A and slot B is better."""


@dataclass(frozen=True)
class PairJudgment:
    """Both orders of one pair. Index 0 is the order (response_1, response_2), index 1 the swap.

    ``slots`` is the slot each order's verdict named (``"A"`` = the response shown first, ``"tie"``,
    or ``None`` if unparseable); ``preferred`` the same verdicts as responses (1, 2, ``"tie"``, ``None``).
    ``consistent``: both orders gave the same parseable verdict about the responses (a tie twice counts).
    """

    score: float
    identical: bool
    slots: tuple[Winner | None, Winner | None]
    raw: tuple[str, str]
    consistent: bool
    calls: int    # judge calls made for this pair now
    cached: int   # verdicts read from the cache

    @property
    def preferred(self) -> tuple[int | str | None, int | str | None]:
        return _as_response(self.slots[0], first=1), _as_response(self.slots[1], first=2)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _as_response(slot: Winner | None, first: int) -> int | str | None:
    if slot in (None, "tie"):
        return slot
    return first if slot == "A" else 3 - first


def _ask(judge: PairwiseJudge, instruction: str, first: str, second: str,
         cache: JudgmentCache | None) -> tuple[Verdict, bool]:
    """A verdict for one order and whether it came from the cache."""
    key = judgment_key(judge.identity(), judge.template, instruction, first, second)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit, True
    verdict = judge.judge(instruction, first, second)
    if cache is not None:
        cache.put(key, judge.name, verdict)
    return verdict, False


def judge_pair(judge: PairwiseJudge, instruction: str, response_1: str, response_2: str,
               cache: JudgmentCache | None = None) -> PairJudgment:
    """Score response_1 against response_2 (1 win, 0.5 tie, 0 loss) from both orders."""
    if response_1 == response_2:
        return PairJudgment(score=0.5, identical=True, slots=("tie", "tie"), raw=("", ""),
                            consistent=True, calls=0, cached=0)
    forward, forward_cached = _ask(judge, instruction, response_1, response_2, cache)
    swapped, swapped_cached = _ask(judge, instruction, response_2, response_1, cache)
    slots = (forward.winner, swapped.winner)
    pref = (_as_response(slots[0], first=1), _as_response(slots[1], first=2))
    score = 1.0 if pref == (1, 1) else 0.0 if pref == (2, 2) else 0.5
    n_cached = int(forward_cached) + int(swapped_cached)
    return PairJudgment(score=score, identical=False, slots=slots, raw=(forward.raw, swapped.raw),
                        consistent=pref[0] is not None and pref[0] == pref[1], calls=2 - n_cached, cached=n_cached)


def judge_many(judge: PairwiseJudge, items: Iterable[tuple[str, str, str]], cache: JudgmentCache | None = None,
               workers: int = 4) -> list[PairJudgment]:
    """``judge_pair`` over ``(instruction, response_1, response_2)`` items, results in input order.

    HTTP judges spend their time waiting on the network, so ``workers`` threads overlap calls;
    a local model already uses every core and runs one call at a time.
    """
    items = list(items)
    with tqdm(total=len(items), desc=f"judging with {judge.name}", unit="pair") as bar:
        def one(item: tuple[str, str, str]) -> PairJudgment:
            result = judge_pair(judge, *item, cache=cache)
            bar.update(1)
            return result

        if judge.concurrent and workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(one, items))
        return [one(item) for item in items]


@dataclass(frozen=True)
class JudgeDiagnostics:
    """How far the judge can be trusted, over a list of :class:`PairJudgment`.

    - ``position_consistency``: fraction of non-identical pairs whose two orders agree about the
      responses (same winner, or tie both times). A judge that always picks slot A scores 0.
    - ``first_slot_win_rate``: among decisive verdicts (A or B, one per order), the fraction won by
      the response shown first; 0.5 means no position bias. Ties are left out of the denominator
      (``tie_verdicts`` counts them) so the rate does not move with the judge's tie rate.
    - ``unparseable``: verdicts the parser could not read (scored as ties).
    - ``calls`` / ``cached``: judge calls made in this run versus verdicts read from the cache.
    Rates are ``None`` when nothing was there to count.
    """

    judged: int
    identical: int
    position_consistency: float | None
    first_slot_win_rate: float | None
    decisive_verdicts: int
    tie_verdicts: int
    unparseable: int
    calls: int
    cached: int

    @classmethod
    def from_judgments(cls, judgments: Iterable[PairJudgment]) -> "JudgeDiagnostics":
        judgments = list(judgments)
        asked = [j for j in judgments if not j.identical]
        slots = [s for j in asked for s in j.slots]
        decisive = [s for s in slots if s in ("A", "B")]
        return cls(
            judged=len(judgments),
            identical=len(judgments) - len(asked),
            position_consistency=sum(j.consistent for j in asked) / len(asked) if asked else None,
            first_slot_win_rate=decisive.count("A") / len(decisive) if decisive else None,
            decisive_verdicts=len(decisive),
            tie_verdicts=slots.count("tie"),
            unparseable=slots.count(None),
            calls=sum(j.calls for j in judgments),
            cached=sum(j.cached for j in judgments),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
