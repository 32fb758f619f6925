"""Acquiring preference pairs with a pairwise judge, the JPO paper's protocol (arXiv 2404.00530, §3):

- *joint*: two instruction-response pairs with different instructions, ``(I1, R1)`` vs ``(I2, R2)``,
  drawn at random (seeded) from a pool of examples; the judge decides which response better answers
  *its own* instruction;
- *conditional*: two different responses to the same instruction (the usual DPO data).

Every pair is judged in both orders (:func:`prefbench.judges.judge_pair`): a preference is kept
only when both orders name the same pair; a disagreement, a tie or an unparseable verdict is a tie,
and ties are dropped — a verdict that moves with the order says more about the judge than the data.
Verdicts go through a :class:`~prefbench.judges.JudgmentCache`, so a re-run costs no calls.

The judge must render the template of the chosen :class:`~prefbench.judges.templates.JudgePrompts`
for the kind (a joint template shows both instructions; see that module for how the slots are used).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from prefbench.engine.config import ConfigError
from prefbench.formats.preferences import write_preferences
from prefbench.formats.records import PreferenceRecord, SFTExample, make_record
from prefbench.formats.sft import read_sft
from prefbench.judges import JudgeDiagnostics, JudgmentCache, PairwiseJudge, judge_many, make_judge
from prefbench.judges.templates import JUDGE_PROMPTS, JudgePrompts, get_judge_prompts, prompt_text
from prefbench.util.files import atomic_write_text

Kind = Literal["joint", "conditional"]
KINDS = ("joint", "conditional")


@dataclass(frozen=True)
class AcquisitionSummary:
    """What one acquisition did: pairs asked for, available, judged, dropped as ties, kept."""

    kind: str
    requested: int
    available: int     # distinct eligible pairs in the pool (judged = min(requested, available))
    judged: int
    ties_dropped: int
    kept: int
    judge: str
    prompts: str
    seed: int
    diagnostics: JudgeDiagnostics

    def describe(self) -> str:
        line = (f"{self.kind}: judged {self.judged} pairs ({self.diagnostics.calls} judge calls, "
                f"{self.diagnostics.cached} cached), {self.ties_dropped} ties dropped, {self.kept} kept")
        if self.judged < self.requested:
            line += f"; only {self.available} eligible pairs in the input, {self.requested} requested"
        if self.judged and not self.kept:
            line += ("; nothing kept: every pair was a tie, so the judge never named the same pair in both "
                     f"orders (position consistency {self.diagnostics.position_consistency}, first-slot win rate "
                     f"{self.diagnostics.first_slot_win_rate}) — check the judge and its template")
        return line

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _prompt_key(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def sample_pairs(examples: Sequence[SFTExample], kind: Kind, n: int, seed: int = 0,
                 ) -> tuple[list[tuple[int, int]], int]:
    """``n`` distinct pairs of example indices (random order within each pair) and how many were
    eligible: different instructions for ``joint``, the same instruction and different responses
    for ``conditional``. Repeated examples count once. Seeded: the same input gives the same pairs."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if n < 1:
        raise ConfigError(f"the number of pairs must be at least 1, got {n}")
    first: dict[tuple[str, str], int] = {}
    for i, ex in enumerate(examples):
        first.setdefault((_prompt_key(ex.prompt), ex.response), i)
    unique = list(first.values())
    groups: dict[str, list[int]] = {}
    for i in unique:
        groups.setdefault(_prompt_key(examples[i].prompt), []).append(i)
    rng = random.Random(seed)
    within = sum(len(g) * (len(g) - 1) // 2 for g in groups.values())
    if kind == "conditional":
        candidates = [(a, b) for g in groups.values() for k, a in enumerate(g) for b in g[k + 1:]]
        available = within
    else:
        available = len(unique) * (len(unique) - 1) // 2 - within
        if 2 * n >= available:  # most pairs wanted: list them all (at most 2n) and draw without repeats
            keys = list(groups)
            candidates = [(a, b) for x, kx in enumerate(keys) for ky in keys[x + 1:]
                          for a in groups[kx] for b in groups[ky]]
        else:  # few wanted from many: draw at random, redraw a same-instruction or repeated pair
            seen: set[tuple[int, int]] = set()
            pairs = []
            while len(pairs) < n:
                a, b = rng.sample(unique, 2)
                same = _prompt_key(examples[a].prompt) == _prompt_key(examples[b].prompt)
                if not same and (min(a, b), max(a, b)) not in seen:
                    seen.add((min(a, b), max(a, b)))
                    pairs.append((a, b))
            return pairs, available
    picked = rng.sample(candidates, min(n, len(candidates)))
    return [(a, b) if rng.random() < 0.5 else (b, a) for a, b in picked], available


def acquire(examples: Sequence[SFTExample], judge: PairwiseJudge, kind: Kind, pairs: int,
            prompts: JudgePrompts = JUDGE_PROMPTS["general"], seed: int = 0, cache: JudgmentCache | None = None,
            workers: int = 4) -> tuple[list[PreferenceRecord], AcquisitionSummary]:
    """Preference records from ``pairs`` sampled comparisons judged in both orders, ties dropped."""
    if judge.template != prompts.template(kind):
        raise ConfigError(f"judge {judge.name} renders a different template than the {prompts.name!r} {kind} prompts; "
                         f"build it with make_judge(spec, template=prompts.template({kind!r}))")
    index_pairs, available = sample_pairs(examples, kind, pairs, seed)
    chosen_pairs = [(examples[a], examples[b]) for a, b in index_pairs]
    if kind == "joint":
        items = [(prompts.task, prompts.joint_slot(prompt_text(x.prompt), x.response),
                  prompts.joint_slot(prompt_text(y.prompt), y.response)) for x, y in chosen_pairs]
    else:
        items = [(prompt_text(x.prompt), x.response, y.response) for x, y in chosen_pairs]
    judgments = judge_many(judge, items, cache=cache, workers=workers)
    records = []
    for (x, y), j in zip(chosen_pairs, judgments):
        if j.score != 0.5:
            win, lose = (x, y) if j.score == 1.0 else (y, x)
            records.append(make_record(win.prompt, win.response, lose.prompt, lose.response))
    summary = AcquisitionSummary(kind=kind, requested=pairs, available=available, judged=len(judgments),
                                 ties_dropped=len(judgments) - len(records), kept=len(records), judge=judge.name,
                                 prompts=prompts.name, seed=seed,
                                 diagnostics=JudgeDiagnostics.from_judgments(judgments))
    return records, summary


def summary_path(output: Path) -> Path:
    return output.with_name(output.stem + ".summary.json")


def run_acquire(input_path: str | Path, judge_spec: str, kind: Kind, pairs: int, output: str | Path,
                prompts: str = "general", seed: int = 0, cache_path: str | Path | None = None,
                workers: int = 4) -> AcquisitionSummary:
    """The CLI's work: read SFT rows, build the judge with the prompts' template, acquire, and write
    ``output`` (prefbench records) and ``<output stem>.summary.json``. Verdicts are cached in
    ``cache_path`` (default ``<output stem>.judgments.jsonl``)."""
    output = Path(output)
    chosen = get_judge_prompts(prompts)
    examples = read_sft(input_path)
    judge = make_judge(judge_spec, template=chosen.template(kind))
    cache = JudgmentCache(cache_path or output.with_name(output.stem + ".judgments.jsonl"))
    records, summary = acquire(examples, judge, kind, pairs, chosen, seed=seed, cache=cache, workers=workers)
    write_preferences(records, output)
    atomic_write_text(summary_path(output), json.dumps(summary.to_json(), indent=2) + "\n")
    return summary
