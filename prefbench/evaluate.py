"""The judge and stats stages: generations -> ``judgments.jsonl`` -> ``results.json`` + ``leaderboard.csv``.

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

import csv
import io
import itertools
import json
from pathlib import Path

import numpy as np

from prefbench.artifacts import atomic_write_text, read_jsonl, write_jsonl
from prefbench.generate_stage import REFERENCE, System, kl_path, load_generations
from prefbench.judges import JudgeDiagnostics, JudgmentCache, judge_many, score_outcome
from prefbench.stats import (StatsError, hierarchical_mean_ci, hierarchical_paired_difference, holm,
                             length_controlled_win_rate, mean_ci, minimum_detectable_difference, paired_difference,
                             robustness_summary)
from prefbench.tasks.base import TaskPrompt

CONFIDENCE = 0.95
POWER = 0.8   # for the minimum detectable difference of each comparison


def judge_info(judge) -> dict:
    """The judge's entry in results.json; pairwise diagnostics are filled in by :func:`evaluate`."""
    return {"name": judge.name, "kind": "pointwise" if hasattr(judge, "score_many") else "pairwise",
            "diagnostics": None}


def judge_against(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], judge, baseline_name: str,
                  baseline: dict[str, str]) -> list[dict]:
    """One judgment per (system, prompt in ``baseline``): the answer's score and its outcome against the
    baseline's text for that prompt (the reference model's answers, or gold responses)."""
    from prefbench.judges.templates import prompt_text

    by_id = {p.id: p for p in prompts}
    ids = [p.id for p in prompts if p.id in baseline]
    gens = {s.name: {g["id"]: g for g in load_generations(run_dir, s)} for s in systems}
    rows: list[dict] = []
    if hasattr(judge, "score_many"):  # pointwise: score every answer, the higher score wins
        base = dict(zip(ids, judge.score_many([(by_id[i], baseline[i]) for i in ids])))
        keys = [(name, i) for name in gens for i in ids]
        for (name, i), score in zip(keys, judge.score_many([(by_id[i], gens[name][i]["response"]) for name, i in keys])):
            same = gens[name][i]["response"] == baseline[i]
            rows.append(_judgment(gens[name][i], baseline_name, baseline[i], score, base[i],
                                  0.5 if same else score_outcome(score, base[i])))
        return rows
    cache = JudgmentCache(Path(run_dir) / "judge_cache.jsonl")  # pairwise: both orders, identical answers tie
    for name in gens:
        # chat-message prompts (hh-helpful) are shown to the judge as a transcript
        items = [(prompt_text(by_id[i].text), gens[name][i]["response"], baseline[i]) for i in ids]
        for i, j in zip(ids, judge_many(judge, items, cache)):
            rows.append({**_judgment(gens[name][i], baseline_name, baseline[i], j.score, 1 - j.score, j.score),
                         "pair": j.to_json()})
    return rows


def gold_responses(prompts: list[TaskPrompt], variants: bool = False) -> dict[str, str]:
    """Gold responses (``meta["gold"]``) of the original eval prompts, when every one has one; with
    ``variants``, each variant's too (its original's gold: the perturbation does not change the task)."""
    originals = [p for p in prompts if p.variant == "original"]
    if not originals or not all(isinstance(p.meta.get("gold"), str) for p in originals):
        return {}
    return {p.id: p.meta["gold"] for p in (prompts if variants else originals)}


def _judgment(gen: dict, baseline: str, baseline_text: str, score: float, baseline_score: float, outcome: float
              ) -> dict:
    return {"system": gen["system"], "baseline": baseline, "id": gen["id"], "parent": gen["parent"],
            "variant": gen["variant"], "score": score, "baseline_score": baseline_score, "outcome": outcome,
            "words": gen["words"], "baseline_words": len(baseline_text.split())}


class _Table:
    """Judgments of one system as arrays over seeds × prompts × variant columns."""

    def __init__(self, rows: list[dict], parents: list[str], columns: list[str], seeds: list[str]):
        shape = (len(seeds), len(parents), len(columns))
        self.score, self.outcome, self.words, self.baseline_words = (np.full(shape, np.nan) for _ in range(4))
        pi, ci, si = ({v: i for i, v in enumerate(xs)} for xs in (parents, columns, seeds))
        for r in rows:
            at = (si[r["system"]], pi[r["parent"]], ci[r["variant"]])
            self.score[at], self.outcome[at], self.words[at] = r["score"], r["outcome"], r["words"]
            self.baseline_words[at] = r["baseline_words"]

    def interval(self, values: np.ndarray):
        """[seeds, prompts] -> Interval over prompts (and seeds, hierarchically, when there are several)."""
        return mean_ci(values[0], confidence=CONFIDENCE) if values.shape[0] == 1 else \
            hierarchical_mean_ci(values, confidence=CONFIDENCE)

    def robustness(self, columns: list[str], with_outcomes: bool) -> dict:
        summary = robustness_summary(self.score.mean(0), columns, self.outcome.mean(0) if with_outcomes else None,
                                     confidence=CONFIDENCE)
        return {k: (v.to_json() if hasattr(v, "to_json") else v) for k, v in summary.items()}


def compute_results(rows: list[dict], systems: list[System], prompts: list[TaskPrompt], meta: dict,
                    run_dir: Path, baseline: str = REFERENCE) -> dict:
    parents = [p.id for p in prompts if p.variant == "original"]
    columns = ["original"] + sorted({p.variant for p in prompts} - {"original"},
                                    key=lambda v: [p.variant for p in prompts].index(v))
    has_variants = len(columns) > 1
    gold_rows = [r for r in rows if r["baseline"] == "gold"] if baseline == REFERENCE else []
    rows = [r for r in rows if r["baseline"] == baseline]
    ref_rows = [r for r in rows if r["system"] == REFERENCE]
    ref = _Table(ref_rows, parents, columns, [REFERENCE])
    pointwise = meta["judge"]["kind"] == "pointwise"
    against_itself = baseline == REFERENCE   # then its outcomes are all ties by construction
    results = {"schema": 1, **{k: meta[k] for k in ("benchmark", "preset", "model")},
               **({"start_model": meta["start_model"]} if meta.get("start_model") else {}), "baseline": baseline,
               "confidence": CONFIDENCE, "n_prompts": len(parents), "correction": "holm", "judge": meta["judge"],
               "reference": {"mean_score": ref.interval(ref.score[:, :, 0]).to_json() if pointwise else None,
                             "mean_length": float(np.nanmean(ref.words[:, :, 0])),
                             "robustness": (ref.robustness(columns, not against_itself)
                                            if has_variants and (pointwise or not against_itself) else None),
                             "vs_gold": _vs_gold(gold_rows, [REFERENCE], parents),
                             **({} if against_itself else _win_rate(ref))},
               "systems": [], "comparisons": []}
    outcomes: dict[str, np.ndarray] = {}
    objectives = list(dict.fromkeys(s.objective for s in systems if s.objective))
    for objective in objectives:
        members = [s for s in systems if s.objective == objective]
        table = _Table([r for r in rows if r["system"] in {s.name for s in members}], parents, columns,
                       [s.name for s in members])
        outcomes[objective] = table.outcome[:, :, 0]
        kl = _kl(run_dir, members, parents)
        results["systems"].append({
            "name": objective, "objective": objective, "params": meta["params"].get(objective, {}),
            "seeds": [s.seed for s in members],
            **_win_rate(table),
            "mean_score": table.interval(table.score[:, :, 0]).to_json() if pointwise else None,
            "mean_length": float(np.nanmean(table.words[:, :, 0])),
            "robustness": table.robustness(columns, True) if has_variants else None,
            "kl": table.interval(kl).to_json() if kl is not None else None,
            "vs_gold": _vs_gold(gold_rows, [s.name for s in members], parents),
            "training": [{"seed": s.seed, "metrics": f"{s.name}/metrics.jsonl"} for s in members],
        })
    comparisons = []
    n_comparisons = max(1, len(objectives) * (len(objectives) - 1) // 2)
    for a, b in itertools.combinations(objectives, 2):
        x, y = outcomes[a], outcomes[b]
        if x.shape[0] == 1 and y.shape[0] == 1:
            diff, p = paired_difference(x[0], y[0], confidence=CONFIDENCE)
        else:
            diff, p = hierarchical_paired_difference(x, y, confidence=CONFIDENCE)
        # at the strictest level Holm may apply (alpha / number of comparisons), per prompt averaged over seeds
        per_prompt = np.nanmean(x, axis=0) - np.nanmean(y, axis=0)
        mde = minimum_detectable_difference(per_prompt, alpha=(1 - CONFIDENCE) / n_comparisons, power=POWER) \
            if len(per_prompt) > 1 else None
        comparisons.append({"a": a, "b": b, "diff": diff.to_json(), "p": p, "mde": mde})
    for c, adjusted in zip(comparisons, holm([c["p"] for c in comparisons])):
        c["p_holm"] = adjusted
        c["significant"] = adjusted < 1 - CONFIDENCE
    results["comparisons"] = comparisons
    results["systems"].sort(key=lambda s: -s["win_rate"]["estimate"])
    return results


def _outcomes(table: _Table) -> dict:
    """Win rate (CI) and W/T/L of a table's original prompts."""
    first = table.outcome[:, :, 0]
    flat = first.ravel()
    return {"win_rate": table.interval(first).to_json(), "wins": int((flat == 1).sum()),
            "ties": int((flat == 0.5).sum()), "losses": int((flat == 0).sum())}


def _win_rate(table: _Table) -> dict:
    """:func:`_outcomes` and the length-controlled win rate against the baseline."""
    try:
        lc = length_controlled_win_rate(table.outcome[:, :, 0].ravel(), table.words[:, :, 0].ravel(),
                                        table.baseline_words[:, :, 0].ravel())
    except StatsError:  # length differences identical everywhere: length cannot be separated out
        lc = None
    return {**_outcomes(table), "lc_win_rate": lc}


def _vs_gold(gold_rows: list[dict], names: list[str], parents: list[str]) -> dict | None:
    """Win rate (CI) and W/T/L of a system's answers against the gold responses, or None without gold."""
    mine = [r for r in gold_rows if r["system"] in names]
    return _outcomes(_Table(mine, parents, ["original"], names)) if mine else None


def _kl(run_dir: Path, members: list[System], parents: list[str]) -> np.ndarray | None:
    """[seeds, prompts] mean KL per prompt, or None when no KL samples were drawn."""
    if not all(kl_path(run_dir, s).exists() for s in members):
        return None
    out = np.full((len(members), len(parents)), np.nan)
    index = {pid: i for i, pid in enumerate(parents)}
    for k, s in enumerate(members):
        per_prompt: dict[str, list[float]] = {}
        for r in read_jsonl(kl_path(run_dir, s)):
            per_prompt.setdefault(r["id"], []).append(r["kl"])
        for pid, values in per_prompt.items():
            out[k, index[pid]] = float(np.mean(values))
    return None if np.isnan(out).any() else out


def leaderboard_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["system", "win_rate", "win_low", "win_high", "wins", "ties", "losses", "lc_win_rate", "mean_score",
                "mean_length", "robustness_drop", "kl"])
    ref = results["reference"]
    # against itself the reference has no win rate; against gold responses it has one like any system
    for s, kl in [*((s, _r(s["kl"] and s["kl"]["estimate"])) for s in results["systems"]), ({"name": REFERENCE, **ref}, 0.0)]:
        rate = s.get("win_rate")
        w.writerow([s["name"], *(round(rate[k], 4) if rate else "" for k in ("estimate", "low", "high")),
                    *(s.get(k, "") for k in ("wins", "ties", "losses")), _r(s.get("lc_win_rate")),
                    _r(s["mean_score"] and s["mean_score"]["estimate"]), round(s["mean_length"], 2),
                    _r(s["robustness"] and s["robustness"]["drop"]["estimate"]), kl])
    return buf.getvalue()


def _r(x) -> object:
    return "" if x is None else round(x, 4)


def evaluate(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], judge, meta: dict,
             baseline: str = REFERENCE) -> dict:
    """Judge against ``baseline`` (``reference`` or ``gold``), compute statistics, write
    ``judgments.jsonl``, ``results.json`` and ``leaderboard.csv``."""
    run_dir = Path(run_dir)
    if baseline == REFERENCE:
        reference = {g["id"]: g["response"] for g in load_generations(run_dir, System(REFERENCE))}
        rows = judge_against(run_dir, systems, prompts, judge, REFERENCE, reference)
        gold = gold_responses(prompts)
        if gold:
            rows += judge_against(run_dir, systems, prompts, judge, "gold", gold)
    elif baseline == "gold":
        gold = gold_responses(prompts, variants=True)
        if not gold:
            raise ValueError("baseline 'gold' needs a gold response (meta['gold']) on every eval prompt")
        rows = judge_against(run_dir, systems, prompts, judge, "gold", gold)
    else:
        raise ValueError(f"baseline must be 'reference' or 'gold', got {baseline!r}")
    if not hasattr(judge, "score_many"):
        from prefbench.judges import PairJudgment

        pairs = [PairJudgment(**{**r["pair"], "slots": tuple(r["pair"]["slots"]), "raw": tuple(r["pair"]["raw"])})
                 for r in rows if "pair" in r]
        meta = {**meta, "judge": {**meta["judge"], "diagnostics": JudgeDiagnostics.from_judgments(pairs).to_json()}}
    write_jsonl(run_dir / "judgments.jsonl", rows)
    results = compute_results(rows, systems, prompts, meta, run_dir, baseline)
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(run_dir / "leaderboard.csv", leaderboard_csv(results))
    return results
