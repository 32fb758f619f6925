"""``prefbench run``: config -> [sft] -> data -> train (objective × seed) -> generate -> judge -> stats -> report.

Every stage reads the previous stage's artifacts from the run directory and writes its own, and a
stage whose artifacts are complete is skipped, so a killed run resumes where it stopped and a
re-run of a finished one only re-renders the report. A run directory that holds a run of a
different configuration is refused rather than mixed.

    runs/<name>/config.yaml            the resolved configuration (benchmark preset included)
    runs/<name>/sft/                   benchmarks with an SFT stage (tldr, hh-helpful): adapter/, and model/ (merged),
                                       the reference and every objective's starting point
    runs/<name>/data/                  prompts, reference samples with scores, train.jsonl, eval.jsonl
    runs/<name>/<objective>/seed<k>/   training engine output (metrics.jsonl, adapter/)
    runs/<name>/generations/, kl/      answers of every system, KL samples
    runs/<name>/judgments.jsonl, results.json, leaderboard.csv, report.md, report.html, plots/
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from prefbench.artifacts import atomic_write_text, read_jsonl, write_jsonl
from prefbench.config import ConfigError, TrainConfig
from prefbench.models import EMBEDDED
from prefbench.objective import get_objective

log = logging.getLogger("prefbench")

DEFAULT_OBJECTIVES = ("dpo", "ipo", "simpo", "jpo", "sft_jpo")
STAGES = ("sft", "data", "train", "generate", "judge", "report")


@dataclass
class RunConfig:
    objectives: list[str] = field(default_factory=lambda: list(DEFAULT_OBJECTIVES))
    benchmark: str = "ifeval-lite"     # a shipped benchmark name or a spec YAML path
    preset: str = "quick"              # smoke | quick | full (defined per benchmark)
    seeds: list[int] = field(default_factory=lambda: [0])
    model: str = ""                    # default: the benchmark's model, else the embedded SmolLM2
    quantization: str = "4bit"
    judge: str = "gold"                # gold | reward-model:PATH | local:PATH | openai:MODEL@URL
    params: dict[str, dict[str, float]] = field(default_factory=dict)  # per-objective overrides of the preset
    overrides: dict = field(default_factory=dict)  # benchmark settings over the preset (--set data.location=...)
    output_dir: str = ""               # default runs/<benchmark>-<preset>

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ConfigError("no objectives given")
        if not self.seeds:
            raise ConfigError("no seeds given")
        self.objectives = [get_objective(o).name for o in self.objectives]  # canonical names; unknown -> did-you-mean
        for name in self.params:
            if get_objective(name).name not in self.objectives:
                raise ConfigError(f"--param for '{name}', which is not among the objectives {self.objectives}")
        self.params = {get_objective(k).name: v for k, v in self.params.items()}
        if not self.output_dir:
            self.output_dir = f"runs/{Path(self.benchmark).stem}-{self.preset}"


def resolve(cfg: RunConfig):
    """The benchmark spec for the preset, and every objective's hyperparameters (preset, then overrides),
    validated before any work starts. Fills in ``cfg.model`` when it was left to the benchmark."""
    from prefbench.benchmark_spec import load_benchmark

    spec = load_benchmark(cfg.benchmark, cfg.preset, cfg.overrides)
    cfg.model = cfg.model or spec.model or EMBEDDED
    params = {}
    for name in cfg.objectives:
        obj = get_objective(name)
        chosen = {**spec.objective_params.get(name, {}), **cfg.params.get(name, {})}
        obj.resolve_params(**chosen)
        params[name] = chosen
    return spec, params


def _identity(cfg: RunConfig, spec, params) -> dict:
    """What fixes the numbers of a run. Objectives and seeds may be added to an existing run (each
    training folder checks its own config); everything shared must match."""
    bench = {k: v for k, v in spec.to_dict().items() if k != "source"}  # where the YAML sits does not change numbers
    return {"benchmark": bench, "preset": cfg.preset, "model": cfg.model, "quantization": cfg.quantization,
            "judge": cfg.judge}


def _write_config(cfg: RunConfig, spec, params, run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    ident = _identity(cfg, spec, params)
    if path.exists():
        previous = yaml.safe_load(path.read_text())
        old = {k: previous.get(k) for k in ident}
        if old != ident:
            changed = sorted(k for k in ident if old.get(k) != ident[k])
            raise ConfigError(f"{run_dir} holds a run with a different configuration (changed: {', '.join(changed)}); "
                              "use another --output-dir or delete it")
        # objectives/seeds may grow; keep the union so the config describes everything in the folder
        cfg_objectives = list(dict.fromkeys(previous.get("objectives", []) + cfg.objectives))
        cfg_seeds = sorted(set(previous.get("seeds", []) + cfg.seeds))
        params = {**previous.get("objective_params", {}), **params}
    else:
        cfg_objectives, cfg_seeds = cfg.objectives, cfg.seeds
    resolved = {**ident, "objectives": cfg_objectives, "seeds": cfg_seeds, "objective_params": params}
    atomic_write_text(path, yaml.safe_dump(resolved, sort_keys=False))


def make_run_judge(judge_spec: str, task, judge_prompts: str):
    """The run's judge; a pairwise one renders the benchmark's conditional template (pointwise ones
    render no prompt)."""
    from prefbench.judges import make_judge
    from prefbench.judges.templates import get_judge_prompts

    pointwise = judge_spec.strip().partition(":")[0] in ("gold", "reward-model")
    return make_judge(judge_spec, task=task, template=None if pointwise else get_judge_prompts(judge_prompts).conditional)


def eval_prompts(spec, seed: int = 0) -> list:
    """The benchmark's eval prompts, each followed by its robustness variants."""
    task = spec.make_task()
    out = []
    for p in task.prompts("eval", spec.eval.prompts, seed):
        out.append(p)
        out += [v for v in task.variants(p, seed) if v.variant in spec.eval.variants]
    return out


def sft_config(cfg: RunConfig, spec, run_dir: Path) -> TrainConfig:
    """The SFT stage: the release's SFT split of the task, on the run's base model."""
    return TrainConfig.from_dict({**spec.sft, "data": spec.release_location, "objective": "sft", "model": cfg.model,
                                  "quantization": cfg.quantization, "seed": 0, "output_dir": str(run_dir / "sft")},
                                 f"benchmark {spec.name} (sft)")


def start_model(cfg: RunConfig, spec, run_dir: Path) -> str:
    """The model every objective starts from (and the reference): the SFT stage's output when the
    benchmark has one, else the base model."""
    from prefbench.sft import merged_model_dir

    return str(merged_model_dir(run_dir / "sft")) if spec.sft else cfg.model


def train_config(cfg: RunConfig, spec, params: dict, objective: str, seed: int, run_dir: Path) -> TrainConfig:
    return TrainConfig.from_dict({**spec.train, "data": str(run_dir / "data" / "train.jsonl"), "objective": objective,
                                  "objective_params": params[objective], "model": start_model(cfg, spec, run_dir),
                                  "quantization": cfg.quantization, "seed": seed,
                                  "output_dir": str(run_dir / objective / f"seed{seed}")}, f"benchmark {spec.name}")


def run(cfg: RunConfig) -> dict:
    """Run every stage that is not complete yet; returns results.json's content."""
    from tqdm.auto import tqdm

    from prefbench.data_stage import build_run_data, describe
    from prefbench.evaluate import evaluate, judge_info
    from prefbench.generate_stage import generate_systems, systems_for
    from prefbench.report import render_report
    from prefbench.tasks import TaskPrompt
    from prefbench.train import train

    spec, params = resolve(cfg)
    # fail on a bad judge (and on unreadable eval data, below) before hours of training
    judge = make_run_judge(cfg.judge, spec.make_task(), spec.eval.judge_prompts)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(cfg, spec, params, run_dir)
    timings_path = run_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def timed(stage: str, fn):
        t0 = time.perf_counter()
        value = fn()
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - t0, 1)
        atomic_write_text(timings_path, json.dumps(timings, indent=2) + "\n")
        return value

    # the eval items first: a data-backed task reads them from its dataset, which fails fast if unreachable
    prompts_path = run_dir / "data" / "eval.jsonl"
    if not prompts_path.exists():
        write_jsonl(prompts_path, [p.to_json() for p in eval_prompts(spec)])
    prompts = [TaskPrompt.from_json(r) for r in read_jsonl(prompts_path)]

    overall = tqdm(total=len(STAGES), desc=f"prefbench run {run_dir.name}", unit="stage", position=0)
    try:
        overall.set_postfix_str("sft")
        if spec.sft:
            from prefbench.sft import sft

            timed("sft", lambda: sft(sft_config(cfg, spec, run_dir), spec.task))
        model = start_model(cfg, spec, run_dir)
        overall.update()

        overall.set_postfix_str("data")
        summary = timed("data", lambda: build_run_data(spec, model, cfg.quantization, 0, run_dir / "data"))
        log.info("data: %s", describe(summary))
        overall.update()

        overall.set_postfix_str("train")
        for objective in cfg.objectives:
            for seed in cfg.seeds:
                timed("train", lambda: train(train_config(cfg, spec, params, objective, seed, run_dir)))
        overall.update()

        overall.set_postfix_str("generate")
        systems = systems_for(cfg.objectives, cfg.seeds)
        timed("generate", lambda: generate_systems(run_dir, systems, prompts, spec.eval, model,
                                                   cfg.quantization, seed=0))
        overall.update()

        overall.set_postfix_str("judge")
        meta = {"benchmark": spec.name, "preset": cfg.preset, "model": cfg.model, "params": params,
                "judge": judge_info(judge), **({"start_model": model} if spec.sft else {})}
        results = timed("judge", lambda: evaluate(run_dir, systems, prompts, judge, meta, spec.eval.baseline))
        overall.update()

        overall.set_postfix_str("report")
        results["timings"] = {**timings, "total": round(sum(timings.values()), 1)}
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
        timed("report", lambda: render_report(run_dir))
        overall.update()
    finally:
        overall.close()
    return results


def summary_table(results: dict) -> str:
    """The leaderboard as plain text for the terminal."""
    against = f"win rate vs {results.get('baseline', 'reference')} (95% CI)"
    lines = [f"{'system':<10}{against:>34}{'W/T/L':>12}{'score':>8}{'words':>7}{'drop':>8}{'KL':>7}"]
    ref = results["reference"]
    for s, kl in [*((s, f"{s['kl']['estimate']:.2f}" if s["kl"] else "—") for s in results["systems"]),
                  ({"name": "reference", **ref}, "0")]:
        w = s.get("win_rate")   # the reference has none against itself
        ci = f"{100 * w['estimate']:.1f}% [{100 * w['low']:.1f}, {100 * w['high']:.1f}]" if w else "(baseline)"
        wtl = f"{s['wins']:>5}/{s['ties']}/{s['losses']:<4}" if w else ""
        score = f"{s['mean_score']['estimate']:.3f}" if s["mean_score"] else "—"
        drop = f"{s['robustness']['drop']['estimate']:+.3f}" if s["robustness"] else "—"
        lines.append(f"{s['name']:<10}{ci:>34}{wtl:>12}{score:>8}{s['mean_length']:>7.1f}{drop:>8}{kl:>7}")
    sig = [c for c in results["comparisons"] if c["significant"]]
    lines.append("")
    lines.append("pairwise differences significant after Holm correction: " +
                 (", ".join(f"{c['a']} − {c['b']} = {100 * c['diff']['estimate']:+.1f} pts (p_holm={c['p_holm']:.3f})"
                            for c in sig) if sig else "none"))
    return "\n".join(lines)
