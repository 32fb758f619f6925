"""The judge stage: generations -> ``judgments.jsonl`` -> ``results.json`` (statistics in :mod:`.results`).

Unit of analysis: the prompt. Every system's answer to every eval prompt (and robustness variant)
is compared with the *baseline*'s answer to the same prompt: win 1, tie 0.5, loss 0, identical
answers tie. The baseline is the reference model (then, when the eval prompts carry gold responses
in ``meta["gold"]``, the originals are also judged against those, as ``vs_gold``), or the gold
responses themselves (the JPO paper's metric; a variant is judged against its original's gold,
and the reference model gets a win rate like every other system). A pointwise judge (the benchmark's verifier or lexicon reward, a reward model) scores
each answer and the higher score wins; a pairwise judge (an LLM) is asked in both orders and an
order-inconsistent verdict is a tie. Statistics come from ``prefbench.stats``: BCa intervals over
prompts (hierarchical over seeds then prompts when there are several seeds), paired differences
between objectives with Holm-adjusted p-values, cluster-bootstrap robustness numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

from prefbench.evaluation.results import compute_results
from prefbench.evaluation.systems import REFERENCE, System, load_generations
from prefbench.judges import JudgeDiagnostics, JudgmentCache, PairJudgment, judge_many, score_outcome
from prefbench.judges.templates import prompt_text
from prefbench.tasks.base import TaskPrompt
from prefbench.util.files import atomic_write_text, write_jsonl


def judge_info(judge) -> dict:
    """The judge's entry in results.json; pairwise diagnostics are filled in by :func:`evaluate`."""
    return {"name": judge.name, "kind": "pointwise" if hasattr(judge, "score_many") else "pairwise",
            "diagnostics": None}


def judge_against(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], judge, baseline_name: str,
                  baseline: dict[str, str], task=None) -> list[dict]:
    """One judgment per (system, prompt in ``baseline``): the answer's score and its outcome against the
    baseline's text for that prompt (the reference model's answers, or gold responses), whether the answer
    ended, and, with a ``task`` that detects gaming, how it games the task's scorer (whatever the judge)."""
    by_id = {p.id: p for p in prompts}

    def _judgment(gen: dict, baseline_text: str, score: float, baseline_score: float, outcome: float) -> dict:
        row = {"system": gen["system"], "baseline": baseline_name, "id": gen["id"], "parent": gen["parent"],
               "variant": gen["variant"], "score": score, "baseline_score": baseline_score, "outcome": outcome,
               "words": gen["words"], "baseline_words": len(baseline_text.split())}
        if "finished" in gen:
            row["finished"] = gen["finished"]
        if hasattr(task, "gaming"):
            row["gaming"] = task.gaming(by_id[gen["id"]], gen["response"])
        return row

    ids = [p.id for p in prompts if p.id in baseline]
    gens = {s.name: {g["id"]: g for g in load_generations(run_dir, s)} for s in systems}
    rows: list[dict] = []
    if hasattr(judge, "score_many"):  # pointwise: score every answer, the higher score wins
        base = dict(zip(ids, judge.score_many([(by_id[i], baseline[i]) for i in ids])))
        keys = [(name, i) for name in gens for i in ids]
        for (name, i), score in zip(keys, judge.score_many([(by_id[i], gens[name][i]["response"]) for name, i in keys])):
            same = gens[name][i]["response"] == baseline[i]
            rows.append(_judgment(gens[name][i], baseline[i], score, base[i],
                                  0.5 if same else score_outcome(score, base[i])))
        return rows
    cache = JudgmentCache(Path(run_dir) / "judge_cache.jsonl")  # pairwise: both orders, identical answers tie
    for name in gens:
        # chat-message prompts (hh-helpful) are shown to the judge as a transcript
        items = [(prompt_text(by_id[i].text), gens[name][i]["response"], baseline[i]) for i in ids]
        for i, j in zip(ids, judge_many(judge, items, cache)):
            rows.append({**_judgment(gens[name][i], baseline[i], j.score, 1 - j.score, j.score),
                         "pair": j.to_json()})
    return rows


def gold_responses(prompts: list[TaskPrompt], variants: bool = False) -> dict[str, str]:
    """Gold responses (``meta["gold"]``) of the original eval prompts, when every one has one; with
    ``variants``, each variant's too (its original's gold: the perturbation does not change the task)."""
    originals = [p for p in prompts if p.variant == "original"]
    if not originals or not all(isinstance(p.meta.get("gold"), str) for p in originals):
        return {}
    return {p.id: p.meta["gold"] for p in (prompts if variants else originals)}


def evaluate(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], judge, meta: dict,
             baseline: str = REFERENCE, task=None) -> dict:
    """Judge against ``baseline`` (``reference`` or ``gold``), compute statistics, write
    ``judgments.jsonl`` and ``results.json``; returns the results (``task``: see :func:`judge_against`)."""
    run_dir = Path(run_dir)
    if baseline == REFERENCE:
        reference = {g["id"]: g["response"] for g in load_generations(run_dir, System(REFERENCE))}
        rows = judge_against(run_dir, systems, prompts, judge, REFERENCE, reference, task)
        gold = gold_responses(prompts)
        if gold:
            rows += judge_against(run_dir, systems, prompts, judge, "gold", gold, task)
    elif baseline == "gold":
        gold = gold_responses(prompts, variants=True)
        if not gold:
            raise ValueError("baseline 'gold' needs a gold response (meta['gold']) on every eval prompt")
        rows = judge_against(run_dir, systems, prompts, judge, "gold", gold, task)
    else:
        raise ValueError(f"baseline must be 'reference' or 'gold', got {baseline!r}")
    if not hasattr(judge, "score_many"):
        pairs = [PairJudgment(**{**r["pair"], "slots": tuple(r["pair"]["slots"]), "raw": tuple(r["pair"]["raw"])})
                 for r in rows if "pair" in r]
        meta = {**meta, "judge": {**meta["judge"], "diagnostics": JudgeDiagnostics.from_judgments(pairs).to_json()}}
    write_jsonl(run_dir / "judgments.jsonl", rows)
    results = compute_results(rows, systems, prompts, meta, run_dir, baseline)
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results
