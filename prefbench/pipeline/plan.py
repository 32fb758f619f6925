"""``prefbench run --plan``: what a run would do, how long it should take and what it could detect, without
training anything.

Time: the run's amount of work (training steps, answers, on-policy samples) at rates either measured by a
pilot run (``--pilot RUN``: its own stage timings over its own amount of work, on whatever machine it ran)
or, without one, the rates of the project's 2-core CPU reference machine (docs/performance.md).

Detectable difference: each head-to-head comparison's spread in the pilot's results (per-prompt variance
and, with several seeds, between-seed variance; :func:`prefbench.stats.difference_spread`), scaled to the
planned number of eval prompts and seeds at the planned Holm level (:func:`prefbench.stats.detectable_difference`).
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from prefbench.benchmark import BenchmarkSpec
from prefbench.benchmark.spec import arm_kinds
from prefbench.engine.config import TrainConfig
from prefbench.evaluation.results import CONFIDENCE, POWER
from prefbench.pipeline.config import RunConfig, resolve
from prefbench.pipeline.sweep import sweep_points
from prefbench.registry import get_objective
from prefbench.stats import detectable_difference
from prefbench.util.errors import ConfigError
from prefbench.util.files import read_jsonl


@dataclass(frozen=True)
class Work:
    steps: float          # optimizer steps of 8 pairs over every training run, a step on joint pairs counted as
                          # JOINT_STEP conditional ones (no shared instruction: more tokens)
    answers: int          # answers and KL samples over every system
    samples: int          # on-policy samples: the reference's, and each later round's of an iterative objective
                          # (0: the data comes from a release, or is cached)
    points: int = 0       # sweep points (trained once each; their steps and answers are in the figures above)


# wall seconds per unit on the reference machine (2-core CPU, embedded SmolLM2 in 4-bit, bfloat16 compute, the local
# executor's two one-thread workers), from the stage timings of the five-objective fresh-clone run of commit e4941f8
# (reports/ifeval-lite-quick, docs/performance.md): 533 s over 236 steps, 348 s over 3,056 answers; 72-77 s over
# 320 samples (the data stage samples in one process)
REFERENCE_RATES = {"step": 2.26, "answer": 0.114, "sample": 0.24}
JOINT_STEP = 1.45     # a step on conditional + joint pairs over one on conditional pairs (measured as above)


def _step_cost(spec: BenchmarkSpec, objective: str) -> float:
    """One of the objective's steps in steps of conditional pairs: joint pairs cost JOINT_STEP; lists of up to
    ``samples_per_prompt`` on-policy answers sharing their instruction about K/2 (at most: lists may be shorter)."""
    obj = get_objective(objective)
    if obj.data == "listwise":
        return spec.data.samples_per_prompt / 2 if spec.data.source == "onpolicy" else 1.0
    return JOINT_STEP if arm_kinds(spec.data.arm, obj.span) != "conditional" else 1.0


def _trains_on(spec: BenchmarkSpec, objective: str) -> str:
    obj = get_objective(objective)
    if obj.data == "listwise":
        return "scored lists" if spec.data.source == "onpolicy" else "conditional pairs as lists"
    return f"{arm_kinds(spec.data.arm, obj.span)} pairs"


def work(cfg: RunConfig, spec: BenchmarkSpec, params: dict | None = None) -> Work:
    """The run's work; with ``cfg.sweep``, the sweep's too (``params``: the objectives' resolved parameters)."""
    train = TrainConfig.from_dict({**spec.train, "data": "-", "objective": "dpo", "output_dir": "-"}, "plan")
    per_run = {o: train.max_steps * train.batch_size / 8 * _step_cost(spec, o) for o in cfg.objectives}
    runs = {o: len(cfg.seeds) for o in cfg.objectives}
    e = spec.eval
    subset = min(e.subset_prompts or e.prompts, e.prompts)
    per_system = e.prompts + subset * len(e.variants)
    systems = len(cfg.objectives) * len(cfg.seeds)
    answers = (systems + 1) * per_system + systems * subset * e.kl_samples
    points = 0
    if cfg.sweep:
        grid = sweep_points(cfg, spec, params or {o: {} for o in cfg.objectives})
        for o, listed in grid.items():
            # the chosen point's training at the sweep's seed is copied into the train stage, not redone
            runs[o] += len(listed) - (spec.sweep.seed in cfg.seeds)
            points += len(listed)
        answers += (points + 1) * spec.sweep.validation_prompts + points * spec.sweep.validation_prompts * max(
            1, e.kl_samples)
    samples = spec.data.train_prompts * spec.data.samples_per_prompt if spec.data.source == "onpolicy" else 0
    # an iterative objective samples the training prompts again in each of its rounds after the first, per seed
    later_rounds = sum(int(get_objective(o).resolve_params(**(params or {}).get(o, {}))["rounds"]) - 1
                       for o in cfg.objectives if get_objective(o).iterative)
    samples *= 1 + later_rounds * len(cfg.seeds)
    return Work(sum(per_run[o] * runs[o] for o in cfg.objectives), answers, samples, points)


def plan(cfg: RunConfig, pilot: Path | None = None) -> str:
    """The plan as text: resolved settings, expected time and detectable differences."""
    spec, params = resolve(cfg)
    mine = work(cfg, spec, params)
    e, d = spec.eval, spec.data
    subset = min(e.subset_prompts or e.prompts, e.prompts)
    lines = [f"plan: {spec.name}, preset {spec.preset}, model {cfg.model} ({cfg.quantization}), judge {cfg.judge}",
             f"objectives: {', '.join(f'{o} {params[o]}' if params[o] else o for o in cfg.objectives)}",
             f"seeds: {', '.join(map(str, cfg.seeds))}; data arm: {d.arm} ("
             + "; ".join(f"{o}: {_trains_on(spec, o)}" for o in cfg.objectives) + ")",
             f"data: {d.source}" + (f", {d.train_prompts} prompts x {d.samples_per_prompt} samples of at most "
                                    f"{d.max_new_tokens} tokens" if d.source == "onpolicy" else ""),
             f"training: {len(cfg.objectives) * len(cfg.seeds)} runs of {spec.train.get('max_steps', '?')} steps",
             f"eval: {e.prompts} prompts" + (f", {len(e.variants)} robustness variants and {e.kl_samples} KL "
                                              f"sample(s) on the first {subset}" if e.variants or e.kl_samples else "")
             + f"; {mine.answers} answers in all"]
    if cfg.sweep:
        lines.insert(-1, f"sweep: {mine.points} points on {spec.sweep.validation_prompts} validation prompts ("
                     + "; ".join(f"{o}: {', '.join(p.name for p in listed)}"
                                 for o, listed in sweep_points(cfg, spec, params).items()) + ")")
    rates, source = REFERENCE_RATES, "the reference 2-core CPU's rates (docs/performance.md)"
    results = _pilot_results(pilot) if pilot else None
    if results is not None:
        rates, source = _pilot_rates(pilot, results), f"the pilot {pilot}'s own rates"
    stages = {"data": mine.samples * rates["sample"], "training": mine.steps * rates["step"],
              "generation": mine.answers * rates["answer"]}
    lines.append("expected time: " + ", ".join(f"{k} {_minutes(v)}" for k, v in stages.items())
                 + f"; about {_minutes(sum(stages.values()))} in all, from {source}")
    lines += _detectable(cfg, spec, results, pilot)
    return "\n".join(lines)


def _detectable(cfg: RunConfig, spec: BenchmarkSpec, results: dict | None, pilot: Path | None) -> list[str]:
    pairs = list(itertools.combinations(cfg.objectives, 2))
    if not pairs:
        return ["detectable difference: one objective, nothing to compare"]
    if results is None:
        return ["detectable difference: give a previous run of this benchmark as --pilot RUN to estimate it"]
    measured = {(h["a"], h["b"]): h["spread"] for h in results.get("head_to_head") or [] if h.get("spread")}
    if not measured:
        return [f"detectable difference: {pilot} has no head-to-head spreads (a pointwise judge and two objectives "
                "are needed; re-judge it with `prefbench eval` from this version)"]
    alpha = (1 - CONFIDENCE) / len(pairs)
    lines = [f"detectable head-to-head difference (80% power, Holm over {len(pairs)} comparison"
             f"{'s' * (len(pairs) > 1)}, {spec.eval.prompts} prompts, {len(cfg.seeds)} seed"
             f"{'s' * (len(cfg.seeds) > 1)}), from {pilot}:"]
    for a, b in pairs:
        spread, note = measured.get((a, b)) or measured.get((b, a)), ""
        if spread is None:
            spread = _median_spread(list(measured.values()))
            note = " (not in the pilot: its median spread)"
        if spread["seed_variance"] is None:
            note += " (the pilot has one seed: the spread between seeds is not counted)"
        mde = detectable_difference(spread, alpha=alpha, power=POWER, prompts=spec.eval.prompts, seeds=len(cfg.seeds))
        size = "not estimable (no spread in the pilot's differences)" if mde is None else f"{100 * mde:.1f} points"
        lines.append(f"  {a} vs {b}: {size}{note}")
    return lines


def _median_spread(spreads: list[dict]) -> dict:
    seeded = [s["seed_variance"] for s in spreads if s["seed_variance"] is not None]
    return {"prompts": 1, "seeds": 1, "prompt_variance": statistics.median(s["prompt_variance"] for s in spreads),
            "seed_variance": statistics.median(seeded) if seeded else None}


def _pilot_results(pilot: Path) -> dict:
    path = Path(pilot) / "results.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"--pilot {pilot}: cannot read {path} ({e}); give a finished run directory") from e


def _pilot_rates(pilot: Path, results: dict) -> dict[str, float]:
    """Seconds per step, answer and sample in the pilot's own stage timings over the work its results and
    files record (a stage it skipped, e.g. data found in the cache, keeps the reference rate)."""
    # a run copied from a sweep point trained inside the sweep stage, not in the train stage's time
    steps = sum(t.get("steps", 0) * _recorded_step_cost(t)
                for s in results["systems"] for t in s.get("training") or [] if not t.get("copied_from"))
    answers = sum(len(read_jsonl(f)) for folder in ("generations", "kl") for f in (Path(pilot) / folder).rglob("*.jsonl"))
    samples = (results.get("data") or {}).get("samples", 0)
    timings = results.get("timings") or {}

    def rate(stage: str, amount: float, unit: str) -> float:
        seconds = timings.get(stage) or 0
        return seconds / amount if amount and seconds >= 1 else REFERENCE_RATES[unit]

    return {"step": rate("train", steps, "step"), "answer": rate("generate", answers, "answer"),
            "sample": rate("data", samples, "sample")}


def _recorded_step_cost(training: dict) -> float:
    """:func:`_step_cost` of a finished training run, from what it trained on (a list: its mean size over 2)."""
    if training.get("lists"):
        return training["responses"] / training["lists"] / 2
    return JOINT_STEP if training.get("pair_kinds") != "conditional" else 1.0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
