"""``prefbench run``: config -> [sft] -> data -> [sweep] -> train (objective × seed) -> generate -> judge -> stats -> report.

Every stage reads the previous stage's artifacts from the run directory and writes its own, and a
stage whose artifacts are complete is skipped, so a killed run resumes where it stopped and a
re-run of a finished one only re-renders the report. A run directory that holds a run of a
different configuration is refused rather than mixed.

    runs/<name>/config.yaml            the resolved configuration (benchmark preset included)
    runs/<name>/sft/                   benchmarks with an SFT stage (tldr, hh-helpful): adapter/, and model/ (merged),
                                       the reference and every objective's starting point
    runs/<name>/data/                  prompts, reference samples with scores, train.jsonl, eval.jsonl
    runs/<name>/sweep/                 with --sweep: each objective's grid on validation prompts (pipeline/sweep.py)
    runs/<name>/<objective>/seed<k>/   training engine output (metrics.jsonl, adapter/); an iterative objective's
                                       rounds in round<r>/ beside them, with rounds.json (pipeline/rounds.py)
    runs/<name>/generations/, kl/      answers of every system, KL samples (with --generator, written by a server:
                                       evaluation/served.py, its replies cached in generation_cache.jsonl)
    runs/<name>/judgments.jsonl, results.json, leaderboard.csv, report.md, report.html, plots/
    runs/<name>/tensorboard/<training>/ with --report-to tensorboard: each training's event files (<objective>-seed<k>,
                                       sft, sweep-<objective>-<point>, <objective>-seed<k>-round<r>; engine/tracking.py)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from prefbench.data.sft import load_sft_examples
from prefbench.data.stage import build_run_data, describe
from prefbench.engine.config import ConfigError
from prefbench.engine.sft import merged_model_dir, train_sft
from prefbench.engine.tracking import require_trackers
from prefbench.evaluation.generate import generate_systems
from prefbench.evaluation.judging import evaluate, judge_info
from prefbench.evaluation.systems import systems_for
from prefbench.pipeline.config import (
    RunConfig,
    eval_prompts,
    make_run_generator,
    make_run_judge,
    resolve,
    sft_config,
    start_model,
    train_config,
    write_config,
)
from prefbench.pipeline.executors import TrainJob, make_executor
from prefbench.pipeline.rounds import check_rounds
from prefbench.pipeline.sweep import chosen_points, reuse_point, run_sweep, sweep_points
from prefbench.reporting.report import render_report
from prefbench.tasks import TaskPrompt, get_task
from prefbench.util.files import atomic_write_text, read_json, read_jsonl, write_jsonl
from prefbench.util.runs import run_lock
from prefbench.util.settings import read_yaml

log = logging.getLogger("prefbench")

STAGES = ("sft", "data", "sweep", "train", "generate", "judge", "report")


class _Timings:
    """Wall time per stage, accumulated across resumed invocations in ``timings.json``."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "timings.json"
        self.values = read_json(self.path) if self.path.exists() else {}

    def __call__(self, stage: str, fn):
        t0 = time.perf_counter()
        value = fn()
        self.values[stage] = round(self.values.get(stage, 0.0) + time.perf_counter() - t0, 1)
        atomic_write_text(self.path, json.dumps(self.values, indent=2) + "\n")
        return value

    def summary(self) -> dict:
        return {**self.values, "total": round(sum(self.values.values()), 1)}


def run(cfg: RunConfig) -> dict:
    """Run every stage that is not complete yet; returns results.json's content."""
    executor = make_executor(cfg.executor, cfg.executor_options, Path(cfg.output_dir))  # its library, before work
    require_trackers(cfg.report_to)   # the libraries of --report-to, before any work
    spec, params = resolve(cfg)
    # fail on a bad judge (and on unreadable eval data, below) before hours of training
    judge = make_run_judge(cfg.judge, spec.make_task(), spec.eval.judge_prompts)
    generator = make_run_generator(cfg)
    if generator is not None:
        generator.check_systems(systems_for(cfg.objectives, cfg.seeds))
    check_rounds(cfg, spec, params, Path(cfg.output_dir))
    with run_lock(Path(cfg.output_dir)):
        return _run(cfg, spec, params, judge, executor, generator)


def _run(cfg: RunConfig, spec, params: dict, judge, executor, generator) -> dict:
    run_dir = Path(cfg.output_dir)
    write_config(cfg, spec, params, run_dir)
    timed = _Timings(run_dir)
    # the eval items first: a data-backed task reads them from its dataset, which fails fast if unreachable
    prompts_path = run_dir / "data" / "eval.jsonl"
    if not prompts_path.exists():
        write_jsonl(prompts_path, [p.to_json() for p in eval_prompts(spec)])

    stages = [name for name in STAGES if name != "sweep" or cfg.sweep]
    overall = tqdm(total=len(stages), desc=f"prefbench run {run_dir.name}", unit="stage", position=0)

    def stage(name: str, fn):
        overall.set_postfix_str(name)
        value = fn()
        overall.update()
        return value

    try:
        stage("sft", lambda: timed("sft", lambda: _sft_stage(cfg, spec, run_dir)) if spec.sft else None)
        model = start_model(cfg, spec, run_dir)
        summary = stage("data", lambda: timed("data", lambda: build_run_data(spec, model, cfg.quantization, 0,
                                                                               run_dir / "data")))
        log.info("data: %s", describe(summary))
        rates: dict[str, float] = {}
        if cfg.sweep:
            swept = stage("sweep", lambda: timed("sweep", lambda: run_sweep(cfg, spec, params, run_dir, judge,
                                                                            read_eval_prompts(run_dir), executor)))
            chosen = chosen_points(swept, sweep_points(cfg, spec, params))
            params = {o: p.params for o, p in chosen.items()}
            rates = {o: p.lr for o, p in chosen.items()}
            write_config(cfg, spec, params, run_dir)   # the record names the settings the objectives train at
            log.info("sweep: chose %s", ", ".join(f"{o} {p.name}" for o, p in chosen.items()))

        def train_job(objective: str, seed: int) -> TrainJob:
            settings = train_config(cfg, spec, params, objective, seed, run_dir, lr=rates.get(objective))
            if cfg.sweep:
                reuse_point(chosen[objective], settings, run_dir, cfg, spec)
            return TrainJob(f"{objective} seed {seed}", settings, spec)

        # in rounds for an iterative objective (pipeline/rounds.py); the grid's jobs on cfg.executor
        stage("train", lambda: timed("train", lambda: executor.run([train_job(o, s) for o in cfg.objectives
                                                                    for s in cfg.seeds])))
        stage("generate", lambda: timed("generate", lambda: generate_systems(
            run_dir, systems_for(cfg.objectives, cfg.seeds), read_eval_prompts(run_dir), spec.eval, model,
            cfg.quantization, seed=0, dtype=spec.compute_dtype, prompt_format=spec.prompt_format,
            generator=generator, workers=executor.generation_workers)))
        results = stage("judge", lambda: timed("judge", lambda: judge_run(run_dir, judge, cfg.objectives, cfg.seeds)))
        results["timings"] = timed.summary()
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
        stage("report", lambda: timed("report", lambda: render_report(run_dir)))
    finally:
        overall.close()
    return results


def _sft_stage(cfg: RunConfig, spec, run_dir: Path) -> Path:
    """Benchmarks with an ``sft`` section (tldr, hh-helpful): LoRA SFT on the task's SFT split, merged."""
    sft_cfg = sft_config(cfg, spec, run_dir)
    return train_sft(sft_cfg, lambda: load_sft_examples(sft_cfg.data, spec.task))


def read_eval_prompts(run_dir: Path) -> list[TaskPrompt]:
    return [TaskPrompt.from_json(r) for r in read_jsonl(run_dir / "data" / "eval.jsonl")]


# what eval and the judge stage read from a run's config.yaml
_RUN_CONFIG_KEYS = ("benchmark", "preset", "model", "judge", "objectives", "seeds", "objective_params")


def _run_config_file(run_dir: Path) -> Path:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: not found; is {run_dir} a prefbench run directory?")
    return path


def read_run_config(run_dir: Path) -> dict:
    path = _run_config_file(run_dir)
    config = read_yaml(path)
    found = config if isinstance(config, dict) else {}
    bench = found.get("benchmark") if isinstance(found.get("benchmark"), dict) else {}
    missing = [k for k in _RUN_CONFIG_KEYS if k not in found] + [f"benchmark.{k}" for k in ("name", "task")
                                                                 if k not in bench]
    if missing:
        raise ConfigError(f"{path}: not a run's configuration ('{missing[0]}' is missing); prefbench run writes "
                          "this file: restore it, or run again into another --output-dir")
    return config


def judge_run(run_dir: Path, judge, objectives: list[str], seeds: list[int]) -> dict:
    """The judge and stats stages for a run directory's generations: ``judgments.jsonl`` and ``results.json``."""
    config = read_run_config(run_dir)
    bench = config["benchmark"]
    meta = {"benchmark": bench["name"], "preset": config["preset"], "model": config["model"],
            "arm": bench.get("data", {}).get("arm"),
            "data": _read_json(Path(run_dir) / "data" / "summary.json"),
            "params": config["objective_params"], "judge": judge_info(judge),
            **({"start_model": str(merged_model_dir(run_dir / "sft"))} if bench.get("sft") else {}),
            **({"sweep": _read_json(Path(run_dir) / "sweep" / "results.json")} if config.get("sweep") else {})}
    return evaluate(run_dir, systems_for(objectives, seeds), read_eval_prompts(run_dir), judge, meta,
                    bench.get("eval", {}).get("baseline", "reference"), task=get_task(bench["task"]))


def _read_json(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None


def reevaluate(run_dir: Path, judge_spec: str | None = None) -> dict:
    """Judge a finished run again (with its own judge, or ``judge_spec``), recompute its statistics and
    re-render everything derived from them (leaderboard, report, plots), so nothing stale remains."""
    run_dir = Path(run_dir)
    _run_config_file(run_dir)   # a run directory, before its lock is taken (which would create the folder)
    with run_lock(run_dir):      # and its config read under the lock, which a run writing it holds
        return _reevaluate(run_dir, read_run_config(run_dir), judge_spec)


def _reevaluate(run_dir: Path, config: dict, judge_spec: str | None) -> dict:
    evaluation = config["benchmark"].get("eval", {})
    task = get_task(config["benchmark"]["task"])  # the eval items are read from data/eval.jsonl, not from the task
    judge = make_run_judge(judge_spec or config["judge"], task, evaluation.get("judge_prompts", "general"))
    results = judge_run(run_dir, judge, config["objectives"], config["seeds"])
    timings = run_dir / "timings.json"
    if timings.exists():
        values = read_json(timings)
        results["timings"] = {**values, "total": round(sum(values.values()), 1)}
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    render_report(run_dir)
    return results
