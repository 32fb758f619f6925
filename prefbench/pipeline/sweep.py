"""The sweep stage (``prefbench run --sweep``): tune every objective on validation prompts before the comparison.

Per objective, every point of the spec's ``sweep`` grid (its own hyperparameters × learning rates,
:meth:`prefbench.benchmark.SweepSettings.points`) trains once on the run's data, answers the *validation*
prompts (the task's ``validation`` split: never an eval prompt, checked) and draws KL samples on them; the run's
judge compares each answer with the baseline's. The point with the highest validation win rate (ties: the lower
KL) is the objective's setting for every seed of the train stage. The same points give each objective's
score-against-KL frontier and the comparison at matched KL (:mod:`prefbench.stats.frontier`).

    runs/<name>/sweep/validation.jsonl            the validation prompts
    runs/<name>/sweep/<objective>/<point>/        each point's training (adapter/, metrics.jsonl)
    runs/<name>/sweep/generations/, kl/           answers and KL samples on the validation prompts
    runs/<name>/sweep/judgments.jsonl, results.json

Every part resumes like the run's own stages: a trained point, or a point's generations, are not redone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from prefbench.benchmark import BenchmarkSpec, SweepPoint
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.evaluation.generate import generate_systems
from prefbench.evaluation.judging import gold_responses, judge_against, judge_info
from prefbench.evaluation.results import CONFIDENCE, OUTCOMES, prompt_kl
from prefbench.evaluation.systems import REFERENCE, System, load_generations
from prefbench.pipeline.config import RunConfig, start_model, train_config
from prefbench.pipeline.executors import JOB_LOG, TrainJob
from prefbench.stats import SweepPoints, frontier_curve, matched_kl, mean_ci
from prefbench.tasks import TaskPrompt
from prefbench.util.files import atomic_write_text, read_jsonl, write_jsonl

log = logging.getLogger("prefbench")


def sweep_points(cfg: RunConfig, spec: BenchmarkSpec, params: dict) -> dict[str, list[SweepPoint]]:
    """Every objective's grid points, around its resolved parameters and the spec's learning rate."""
    lr = spec.train.get("lr", TrainConfig.lr)
    return {o: spec.sweep.points(o, params[o], lr) for o in cfg.objectives}


def validation_prompts(spec: BenchmarkSpec, eval_prompts: list[TaskPrompt], train_texts: set[str] = frozenset()
                       ) -> list[TaskPrompt]:
    """The task's validation prompts, leaving out any that repeats a training prompt's text (a small prompt space,
    e.g. sentiment's, repeats some); refused when one is also an eval prompt (by id or by text)."""
    n = spec.sweep.validation_prompts
    drawn = spec.make_task().prompts("validation", n + len(train_texts), spec.sweep.seed)
    prompts = [p for p in drawn if p.text not in train_texts][:n]
    if len(prompts) < n:
        raise ConfigError(f"benchmark {spec.name}: only {len(prompts)} of {len(drawn)} validation prompts differ from "
                          f"the training prompts; lower sweep.validation_prompts (now {n})")
    ids, texts = {p.id for p in eval_prompts}, {p.text for p in eval_prompts}
    shared = [p.id for p in prompts if p.id in ids or p.text in texts]
    if shared:
        raise ConfigError(f"benchmark {spec.name}: {len(shared)} of the {len(prompts)} validation prompts are also eval "
                          f"prompts (first: {shared[0]}); lower sweep.validation_prompts or eval.prompts")
    return prompts


def _system(point: SweepPoint, seed: int) -> System:
    return System(f"{point.objective}/{point.name}", point.objective, seed)


def point_config(cfg: RunConfig, spec: BenchmarkSpec, point: SweepPoint, run_dir: Path) -> TrainConfig:
    """A point's training: the run's training of its objective at the point's parameters and learning rate."""
    base = train_config(cfg, spec, {point.objective: point.params}, point.objective, spec.sweep.seed, run_dir,
                        lr=point.lr)
    return dataclasses.replace(base, output_dir=str(Path(run_dir) / "sweep" / point.objective / point.name),
                               tracker_run=f"sweep-{point.objective}-{point.name}")


def run_sweep(cfg: RunConfig, spec: BenchmarkSpec, params: dict, run_dir: Path, judge, eval_prompts: list[TaskPrompt],
              executor) -> dict:
    """Train (on ``executor``, pipeline/executors.py), answer and judge every point; writes ``sweep/results.json``
    and returns it."""
    sweep_dir = Path(run_dir) / "sweep"
    path = sweep_dir / "validation.jsonl"
    if not path.exists():
        trained_on = Path(run_dir) / "data" / "prompts.jsonl"     # on-policy data: the prompts the pairs answer
        train_texts = {r["text"] for r in read_jsonl(trained_on)} if trained_on.exists() else set()
        write_jsonl(path, [p.to_json() for p in validation_prompts(spec, eval_prompts, train_texts)])
    prompts = [TaskPrompt.from_json(r) for r in read_jsonl(path)]
    grid = sweep_points(cfg, spec, params)
    executor.run([TrainJob(f"sweep {point.objective} {point.name}", point_config(cfg, spec, point, run_dir), spec)
                  for points in grid.values() for point in points])
    systems = [System(REFERENCE)] + [_system(p, spec.sweep.seed) for points in grid.values() for p in points]
    # every validation prompt gets KL samples: the frontier needs each point's KL
    settings = dataclasses.replace(spec.eval, subset_prompts=0, variants=(), kl_samples=max(1, spec.eval.kl_samples))
    generate_systems(sweep_dir, systems, prompts, settings, start_model(cfg, spec, run_dir), cfg.quantization,
                     seed=0, dtype=spec.compute_dtype, prompt_format=spec.prompt_format,
                     workers=executor.generation_workers)
    baseline = spec.eval.baseline
    texts = (gold_responses(prompts) if baseline == "gold" else
             {g["id"]: g["response"] for g in load_generations(sweep_dir, System(REFERENCE))})
    rows = judge_against(sweep_dir, systems, prompts, judge, baseline, texts, spec.make_task())
    write_jsonl(sweep_dir / "judgments.jsonl", rows)
    results = {**summarize(rows, grid, prompts, sweep_dir, spec), "judge": judge_info(judge)["name"]}
    atomic_write_text(sweep_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def summarize(rows: list[dict], grid: dict[str, list[SweepPoint]], prompts: list[TaskPrompt], sweep_dir: Path,
              spec: BenchmarkSpec) -> dict:
    """Per point its validation win rate, mean score and KL (intervals over prompts); per objective the chosen
    point and its frontier; the matched-KL comparison."""
    ids = [p.id for p in prompts]

    def per_prompt(name: str, key: str) -> np.ndarray:
        mine = {r["id"]: r[key] for r in rows if r["system"] == name}
        return np.array([mine[i] for i in ids], dtype=float)

    anchor = per_prompt(REFERENCE, "outcome")

    def win_rate(outcome: np.ndarray) -> dict:
        return mean_ci(outcome, confidence=CONFIDENCE, value_range=OUTCOMES).to_json()

    out = {"validation_prompts": len(ids), "seed": spec.sweep.seed, "baseline": spec.eval.baseline,
           "confidence": CONFIDENCE,
           # against its own answers the reference ties every prompt by construction: 0.5 exactly, no interval
           "reference": {"win_rate": win_rate(anchor) if spec.eval.baseline == "gold" else
                         mean_ci(anchor, confidence=CONFIDENCE).to_json()},
           "objectives": {}}
    swept = {}
    for objective, points in grid.items():
        entries, kls, outcomes = [], [], []
        for point in points:
            system = _system(point, spec.sweep.seed)
            outcome, score = per_prompt(system.name, "outcome"), per_prompt(system.name, "score")
            kl = prompt_kl(sweep_dir, [system], ids)[0]
            kls.append(kl)
            outcomes.append(outcome)
            entries.append({**point.to_json(), "win_rate": win_rate(outcome),
                            "mean_score": float(score.mean()),
                            "kl": mean_ci(kl, confidence=CONFIDENCE).to_json(),
                            "truncated": _share([r for r in rows if r["system"] == system.name], "finished", False),
                            "gaming": _share([r for r in rows if r["system"] == system.name], "gaming", True)})
        best = max(range(len(entries)), key=lambda i: (entries[i]["win_rate"]["estimate"],
                                                        -entries[i]["kl"]["estimate"]))
        for i, entry in enumerate(entries):
            entry["chosen"] = i == best
        swept[objective] = SweepPoints(np.array(kls), np.array(outcomes))
        out["objectives"][objective] = {
            "points": entries, "chosen": entries[best]["name"],
            "frontier": frontier_curve(swept[objective].kl.mean(1), swept[objective].outcome.mean(1),
                                       (0.0, float(anchor.mean())))}
    out["matched_kl"] = matched_kl(swept, anchor, confidence=CONFIDENCE)
    return out


def _share(rows: list[dict], key: str, flagged) -> float | None:
    """Share of ``rows`` whose ``key`` is truthy (``flagged`` True) or falsy (False); None when no row has it."""
    values = [bool(r[key]) == flagged for r in rows if key in r]
    return float(np.mean(values)) if values else None


def chosen_points(results: dict, grid: dict[str, list[SweepPoint]]) -> dict[str, SweepPoint]:
    """The point each objective's sweep chose."""
    return {o: next(p for p in points if p.name == results["objectives"][o]["chosen"]) for o, points in grid.items()}


def reuse_point(point: SweepPoint, target: TrainConfig, run_dir: Path, cfg: RunConfig, spec: BenchmarkSpec) -> None:
    """The train stage's run of a chosen point at the sweep's seed is the point's own training: copy it instead
    of training it again (only when the settings are identical and the target holds nothing yet)."""
    source = point_config(cfg, spec, point, run_dir)
    src, dst = Path(source.output_dir), Path(target.output_dir)
    if dst.exists() or source.identity() != target.identity() or not (src / "adapter").exists():
        return
    partial = dst.with_name(dst.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(src, partial, ignore=shutil.ignore_patterns("checkpoint", JOB_LOG))   # the point's job log
    # results.json says so, and a plan scaling this run's train-stage time leaves the copy out
    atomic_write_text(partial / "copied_from.json", json.dumps({"copied_from": str(src)}) + "\n")
    partial.rename(dst)     # whole or not at all
    log.info("train: %s is the sweep's point %s; copied, not trained again", dst, point.name)
