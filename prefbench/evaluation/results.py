"""results.json from judgments: per system the win rate against the baseline, W/T/L, length-controlled
win rate, mean score, length, robustness and KL, each with an interval over prompts (hierarchical over
seeds then prompts when there are several), and every pair of objectives compared on the same prompts
with Holm-adjusted p-values and a minimum detectable difference (:mod:`prefbench.stats`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from prefbench.evaluation.systems import REFERENCE, System, kl_path
from prefbench.registry import get_objective
from prefbench.stats import (
    StatsError,
    detectable_difference,
    difference_spread,
    hierarchical_mean_ci,
    hierarchical_paired_difference,
    holm,
    length_controlled_win_rate,
    mean_ci,
    paired_difference,
    robustness_summary,
)
from prefbench.tasks.base import TaskPrompt
from prefbench.util.files import read_json, read_jsonl
from prefbench.util.settings import read_yaml

CONFIDENCE = 0.95
POWER = 0.8   # for the minimum detectable difference of each comparison
# What one prompt can give: an outcome (loss 0, tie 0.5, win 1) or a 0/1 flag. When every prompt agrees, the range
# is what bounds the interval (stats.mean_ci's value_range); a difference of two outcomes spans (-1, 1).
OUTCOMES = (0.0, 1.0)
OUTCOME_DIFFERENCES = (-1.0, 1.0)
SCHEMA = 1


class _Table:
    """Judgments of one system as arrays over seeds × prompts × variant columns."""

    def __init__(self, rows: list[dict], parents: list[str], columns: list[str], seeds: list[str]):
        shape = (len(seeds), len(parents), len(columns))
        self.score, self.outcome, self.words, self.baseline_words, self.gaming, self.cut = (
            np.full(shape, np.nan) for _ in range(6))
        pi, ci, si = ({v: i for i, v in enumerate(xs)} for xs in (parents, columns, seeds))
        for r in rows:
            at = (si[r["system"]], pi[r["parent"]], ci[r["variant"]])
            self.score[at], self.outcome[at], self.words[at] = r["score"], r["outcome"], r["words"]
            self.baseline_words[at] = r["baseline_words"]
            if "gaming" in r:
                self.gaming[at] = float(bool(r["gaming"]))
            if "finished" in r:
                self.cut[at] = float(not r["finished"])

    def truncated(self) -> float | None:
        """Share of the answers (robustness variants included) cut at the generation limit rather than ended
        by the model; None for judgments of generations written before answers carried the flag."""
        return None if np.isnan(self.cut).all() else float(np.nanmean(self.cut))

    def gaming_rate(self) -> dict | None:
        """Share of the original prompts' answers that game the task's scorer (interval), or None when the
        task has no detector."""
        first = self.gaming[:, :, 0]
        return None if np.isnan(first).any() else self.interval(first, OUTCOMES).to_json()

    def interval(self, values: np.ndarray, value_range: tuple[float, float] | None = None):
        """[seeds, prompts] -> Interval over prompts (and seeds, hierarchically, when there are several);
        ``value_range``: what one prompt can give, when known."""
        return mean_ci(values[0], confidence=CONFIDENCE, value_range=value_range) if values.shape[0] == 1 else \
            hierarchical_mean_ci(values, confidence=CONFIDENCE, value_range=value_range)

    def robustness(self, columns: list[str], with_outcomes: bool) -> dict:
        """Over the prompts that have variants (a run may give them to a subset of its prompts)."""
        scores, outcomes = self.score.mean(0), self.outcome.mean(0)
        varied = ~np.isnan(scores[:, 1:]).all(axis=1)
        summary = robustness_summary(scores[varied], columns, outcomes[varied] if with_outcomes else None,
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
    results = {"schema": SCHEMA, **{k: meta[k] for k in ("benchmark", "preset", "model")},
               **{k: meta[k] for k in ("arm", "data") if meta.get(k)},
               **{k: meta[k] for k in ("start_model", "sweep") if meta.get(k)}, "baseline": baseline,
               "confidence": CONFIDENCE, "n_prompts": len(parents), "correction": "holm", "judge": meta["judge"],
               "reference": {"mean_score": ref.interval(ref.score[:, :, 0]).to_json() if pointwise else None,
                             "mean_length": float(np.nanmean(ref.words[:, :, 0])),
                             "robustness": (ref.robustness(columns, not against_itself)
                                            if has_variants and (pointwise or not against_itself) else None),
                             "vs_gold": _vs_gold(gold_rows, [REFERENCE], parents),
                             "truncated": ref.truncated(),
                             "gaming_rate": ref.gaming_rate(),
                             **({} if against_itself else _win_rate(ref))},
               "systems": [], "comparisons": []}
    outcomes: dict[str, np.ndarray] = {}
    scores: dict[str, np.ndarray] = {}
    objectives = list(dict.fromkeys(s.objective for s in systems if s.objective))
    for objective in objectives:
        members = [s for s in systems if s.objective == objective]
        table = _Table([r for r in rows if r["system"] in {s.name for s in members}], parents, columns,
                       [s.name for s in members])
        outcomes[objective], scores[objective] = table.outcome[:, :, 0], table.score[:, :, 0]
        kl = prompt_kl(run_dir, members, parents)
        results["systems"].append({
            "name": objective, "objective": objective, "family": get_objective(objective).family,
            "params": meta["params"].get(objective, {}),
            "seeds": [s.seed for s in members],
            **_win_rate(table),
            "mean_score": table.interval(table.score[:, :, 0]).to_json() if pointwise else None,
            "mean_length": float(np.nanmean(table.words[:, :, 0])),
            "robustness": table.robustness(columns, True) if has_variants else None,
            "kl": table.interval(kl).to_json() if kl is not None else None,
            "vs_gold": _vs_gold(gold_rows, [s.name for s in members], parents),
            "truncated": table.truncated(),
            "gaming_rate": table.gaming_rate(),
            "training": [_training(run_dir, s) for s in members],
        })
    comparisons = []
    n_comparisons = max(1, len(objectives) * (len(objectives) - 1) // 2)
    for a, b in itertools.combinations(objectives, 2):
        x, y = outcomes[a], outcomes[b]
        if x.shape[0] == 1 and y.shape[0] == 1:
            diff, p = paired_difference(x[0], y[0], confidence=CONFIDENCE, value_range=OUTCOME_DIFFERENCES)
        else:
            diff, p = hierarchical_paired_difference(x, y, confidence=CONFIDENCE, value_range=OUTCOME_DIFFERENCES)
        comparisons.append({"a": a, "b": b, "diff": diff.to_json(), "p": p, **_mde(x, y, n_comparisons)})
    results["comparisons"] = _holm(comparisons)
    if pointwise and len(objectives) > 1:
        results["head_to_head"] = _holm([_head_to_head(a, b, scores[a], scores[b], n_comparisons)
                                         for a, b in itertools.combinations(objectives, 2)])
    results["systems"].sort(key=lambda s: -s["win_rate"]["estimate"])
    return results


def _mde(x: np.ndarray, y: np.ndarray, n_comparisons: int) -> dict:
    """The detectable difference of ``x - y`` at the strictest level Holm may apply (alpha over the number of
    comparisons), and the spread it comes from (what ``prefbench run --plan`` scales to another run's size):
    seed s against seed s when both have the same seeds (the between-seed variance counted), else per prompt
    averaged over seeds. When there is none, ``mde_note`` says why for the report."""
    d = x - y if x.shape == y.shape else np.nanmean(x, axis=0) - np.nanmean(y, axis=0)
    if d.shape[-1] < 2:
        return {"mde": None, "mde_note": "fewer than 2 prompts"}
    spread = difference_spread(d)
    mde = detectable_difference(spread, alpha=(1 - CONFIDENCE) / n_comparisons, power=POWER)
    return {"mde": mde, "spread": spread, **({"mde_note": "no spread in the differences"} if mde is None else {})}


def _holm(comparisons: list[dict]) -> list[dict]:
    for c, adjusted in zip(comparisons, holm([c["p"] for c in comparisons])):
        c["p_holm"] = adjusted
        c["significant"] = adjusted < 1 - CONFIDENCE
    return comparisons


def _head_to_head(a: str, b: str, x: np.ndarray, y: np.ndarray, n_comparisons: int) -> dict:
    """``a``'s answer against ``b``'s on each prompt by their gold scores (seed s against seed s): the share
    ``a`` wins (a tie counts half), its interval, the test of 50% and the detectable difference from 50%. One
    comparison of the two answers, where a difference of two win rates against the reference compares each
    with a third answer and adds that comparison's noise twice."""
    if x.shape != y.shape:      # different seeds: every seed of a against the seed-average of b's scores
        y = np.broadcast_to(np.nanmean(y, axis=0), x.shape)
    h = np.where(x > y, 1.0, np.where(x < y, 0.0, 0.5))
    half = np.full(h.shape[-1], 0.5)
    within = (-0.5, 0.5)   # an outcome minus one half
    if h.shape[0] == 1:
        diff, p = paired_difference(h[0], half, confidence=CONFIDENCE, value_range=within)
    else:
        diff, p = hierarchical_paired_difference(h, half, confidence=CONFIDENCE, value_range=within)
    win = {k: v + 0.5 if k in ("estimate", "low", "high") else v for k, v in diff.to_json().items()}
    flat = h.ravel()
    return {"a": a, "b": b, "win_rate": win, "wins": int((flat == 1).sum()), "ties": int((flat == 0.5).sum()),
            "losses": int((flat == 0).sum()), "p": p, **_mde(h, np.broadcast_to(half, h.shape), n_comparisons)}


def _outcomes(table: _Table) -> dict:
    """Win rate (CI) and W/T/L of a table's original prompts."""
    first = table.outcome[:, :, 0]
    flat = first.ravel()
    return {"win_rate": table.interval(first, OUTCOMES).to_json(), "wins": int((flat == 1).sum()),
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


def prompt_kl(run_dir: Path, members: list[System], parents: list[str]) -> np.ndarray | None:
    """[seeds, prompts with KL samples] mean KL per prompt (a run may draw them for a subset of its prompts), or
    None when no KL samples were drawn."""
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
    out = out[:, ~np.isnan(out).any(axis=0)]
    return out if out.size else None


def _training(run_dir: Path, system: System) -> dict:
    """Where a system's training metrics are, and what it trained on: the pair kinds it took, its pairs of
    each kind, the optimizer steps it took and the tokens those steps processed (both sides of every pair)."""
    entry: dict = {"seed": system.seed, "metrics": f"{system.name}/metrics.jsonl"}
    data = Path(run_dir) / system.name / "data.json"
    if data.exists():
        entry.update(read_json(data))
    copied = Path(run_dir) / system.name / "copied_from.json"   # a sweep point's own run, not trained here
    if copied.exists():
        entry.update(read_json(copied))
    config = Path(run_dir) / system.name / "config.yaml"
    if config.exists():       # the learning rate it trained at (a sweep chooses one per objective)
        settings = read_yaml(config)
        entry["lr"] = settings.get("lr") if isinstance(settings, dict) else None
    metrics = Path(run_dir) / entry["metrics"]
    if metrics.exists():
        steps = read_jsonl(metrics)
        entry.update(steps=len(steps), tokens_seen=int(sum(r.get("tokens", 0) for r in steps)))
    return entry
