"""Iterative on-policy rounds: how ``prefbench run`` trains an objective registered with ``iterative=True``
(iterative DPO, APO): sample → judge → pair → train, ``rounds`` times, each round starting where the last ended.

Fairness rule: an iterative objective takes the same number of optimizer steps as every other objective of
the run, ``max_steps`` in all, split into R = ``rounds`` rounds (the first ``max_steps mod R`` rounds take one
step more). Each round is a training run of its own, as in the papers' iterations: a fresh optimizer, the
run's schedule over the round's steps, its warmup scaled to the round's share of them. What differs from the
other objectives is the data (each later round's pairs are new samples of the policy itself), which is the
method; the sampling it costs is extra time, counted in the run's train-stage timing.

Round 1 trains on the run's data (the reference model's on-policy pairs, exactly what DPO gets) from a fresh
LoRA, the reference model as its reference. Round r > 1 samples the run's training prompts from round r−1's
policy (the base model with round r−1's adapter): ``samples_per_prompt`` answers each, at the data stage's
temperature and top-p with a sampling seed of its own (:func:`round_seed`), scored by the task's judge and
paired by the data stage's rules and settings (``min_gap``, ``max_pairs_per_prompt``; one
:func:`prefbench.data.onpolicy.build_data`). It then trains from round r−1's adapter with that policy as
its reference (iterative DPO), or, for an objective with an ``extrapolation`` parameter α (APO), with the
reference log π_{r−1} + α (log π_{r−1} − log π_{r−2}), π_0 being the base model.

    <objective>/seed<k>/round<r>/data/    round r's prompts, scored samples and pairs (round 1: the run's data/)
    <objective>/seed<k>/round<r>/train/   round r's training run (config.yaml, metrics.jsonl, adapter/)
    <objective>/seed<k>/rounds.json       per round: its pairs, its samples' scores, its steps' mean metrics
    <objective>/seed<k>/adapter/          the last round's adapter, beside metrics.jsonl (every round's steps,
                                          numbered through), data.json (the pairs of all rounds) and config.yaml:
                                          what generate, judge and report read of any objective

A killed run resumes in the round it stopped in: finished rounds (adapter saved) are skipped, and the round's
own data cache and training checkpoint do the rest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import statistics
from pathlib import Path

from prefbench.data.onpolicy import build_data
from prefbench.engine.checkpoint import ADAPTER, is_trained
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.tracking import tracker_run
from prefbench.engine.trainer import train
from prefbench.pipeline.config import RunConfig, train_config
from prefbench.registry import get_objective
from prefbench.util.files import atomic_dir, atomic_write_text, read_json, read_jsonl, write_jsonl

log = logging.getLogger("prefbench")

ROUNDS_FILE = "rounds.json"
_ROUND_SEED_STRIDE = 1000      # round r of training seed k samples with seed 1000·k + r
_SUMMED = ("pairs", "conditional", "joint", "truncated_to_max_length", "tokens")   # data.json counts over rounds


def train_objective(settings: TrainConfig, spec) -> Path:
    """The train stage's training of one objective at one seed: in rounds for an iterative objective, else one
    run of the engine."""
    return train_rounds(settings, spec) if get_objective(settings.objective).iterative else train(settings)


def round_seed(seed: int, r: int) -> int:
    """The sampling seed of round ``r`` (≥ 2) of training seed ``seed``: apart from the data stage's (round 1's)
    and from every other round's and seed's."""
    return _ROUND_SEED_STRIDE * seed + r


def round_steps(settings: TrainConfig, spec) -> list[int]:
    """Each round's optimizer steps, ``max_steps`` in all; a ConfigError for rounds that cannot be trained."""
    objective = get_objective(settings.objective)
    rounds = objective.resolve_params(**settings.objective_params)["rounds"]
    if rounds != int(rounds):
        raise ConfigError(f"{objective.name}: rounds must be a whole number, got {rounds:g}")
    rounds = int(rounds)
    if rounds > settings.max_steps:
        raise ConfigError(f"{objective.name}: {rounds} rounds need at least {rounds} optimizer steps, max_steps is "
                          f"{settings.max_steps}; lower them (--param {objective.name}.rounds={settings.max_steps}) "
                          f"or raise max_steps")
    if rounds > 1 and spec.data.source != "onpolicy":
        raise ConfigError(f"{objective.name} trains later rounds on its own judged samples of the training prompts, "
                          f"which benchmark {spec.name} does not have (its data source is '{spec.data.source}', "
                          f"not 'onpolicy'); set --param {objective.name}.rounds=1")
    share, extra = divmod(settings.max_steps, rounds)
    return [share + (r < extra) for r in range(rounds)]


def check_rounds(cfg: RunConfig, spec, params: dict, run_dir: Path) -> None:
    """Every iterative objective's rounds checked before any work (:func:`round_steps`)."""
    for objective in cfg.objectives:
        if get_objective(objective).iterative:
            round_steps(train_config(cfg, spec, params, objective, cfg.seeds[0], run_dir), spec)


def train_rounds(settings: TrainConfig, spec) -> Path:
    """Train ``settings.objective`` in its rounds into ``settings.output_dir``; returns that folder."""
    out = Path(settings.output_dir)
    settings.check_output_dir()
    if is_trained(out):
        log.info("%s is already trained (%s/adapter)", settings.objective, out)
        return out
    steps = round_steps(settings, spec)
    alpha = get_objective(settings.objective).resolve_params(**settings.objective_params).get("extrapolation", 0.0)
    out.mkdir(parents=True, exist_ok=True)
    settings.save_yaml(out / "config.yaml")
    prompt_seed = read_json(Path(settings.data).parent / "summary.json")["seed"]   # round 1's prompts, every round
    log.info("%s: %d rounds of %s optimizer steps (%d in all)", settings.objective, len(steps),
             "/".join(map(str, steps)), settings.max_steps)
    policies = [""]     # the adapter each round starts from; "" is the base model
    rows = []
    for r, n in enumerate(steps, 1):
        folder = out / f"round{r}"
        data = Path(settings.data)
        if r > 1:
            data = folder / "data" / "train.jsonl"
            if not is_trained(folder / "train"):
                build_data(spec, settings.model, settings.quantization, prompt_seed, folder / "data",
                           adapter=policies[-1], sample_seed=round_seed(settings.seed, r))
        moved = alpha if r > 1 else 0.0
        train(dataclasses.replace(
            settings, data=str(data), max_steps=n, warmup_steps=round(settings.warmup_steps * n / settings.max_steps),
            output_dir=str(folder / "train"), init_adapter=policies[-1], extrapolation=moved,
            extrapolate_from=policies[-2] if moved and r > 2 else "", tracker_run=f"{tracker_run(settings)}-round{r}"))
        policies.append(str(folder / "train" / ADAPTER))
        rows.append(_round_record(r, data.parent, folder / "train", settings))
        atomic_write_text(out / ROUNDS_FILE, json.dumps({"objective": settings.objective, "steps": steps,
                                                         "extrapolation": alpha, "rounds": rows}, indent=2) + "\n")
        log.info("%s", describe_round(settings.objective, rows[-1], len(steps)))
    _finish(out, [out / f"round{r}" / "train" for r in range(1, len(steps) + 1)], settings)
    return out


def _round_record(r: int, data_dir: Path, train_dir: Path, settings: TrainConfig) -> dict:
    """What round ``r`` trained on and how its steps went: its samples' judge scores (mean, standard deviation),
    its pairs (those of the objective's kinds) and the share of prompts that gave one, its steps' mean metrics."""
    samples = read_jsonl(data_dir / "samples.jsonl") if (data_dir / "samples.jsonl").exists() else []
    scores = [s["score"] for s in samples]
    prompts = read_jsonl(data_dir / "prompts.jsonl") if (data_dir / "prompts.jsonl").exists() else []
    pairs = [p for p in read_jsonl(data_dir / "train.jsonl")
             if settings.pair_kinds in ("all", p.get("kind", "conditional"))]
    metrics = read_jsonl(train_dir / "metrics.jsonl")
    summary = read_json(data_dir / "summary.json")
    run_dir = Path(settings.data).parent.parent     # the run's data/train.jsonl is round 1's
    return {"round": r, "policy": "reference" if r == 1 else f"round{r - 1}",
            "data": os.path.relpath(data_dir, run_dir), "sample_seed": summary.get("sample_seed", summary.get("seed")),
            "samples": len(scores),
            "score_mean": statistics.fmean(scores) if scores else None,
            "score_std": statistics.pstdev(scores) if scores else None,
            "pairs": len(pairs),
            "paired_prompts": len({p["prompt_chosen"] for p in pairs}) / len(prompts) if prompts else None,
            "steps": len(metrics), "first_loss": metrics[0]["loss"],
            **{key: statistics.fmean(m[key] for m in metrics) for key in ("loss", "accuracy", "margin")}}


def describe_round(objective: str, row: dict, rounds: int) -> str:
    """The log's line on a finished round."""
    source = "the reference model" if row["round"] == 1 else f"round {row['round'] - 1}'s policy"
    data = f"{row['pairs']} pairs" if row["score_mean"] is None else (
        f"{row['samples']} samples of {source} (judge score {row['score_mean']:.3f} ± {row['score_std']:.3f}), "
        f"{row['pairs']} pairs ({row['paired_prompts']:.0%} of prompts paired)")
    steps = f"{row['steps']} step{'s' * (row['steps'] != 1)}"
    return (f"{objective} round {row['round']}/{rounds}: {data}; {steps}: first loss {row['first_loss']:.4f}, mean "
            f"loss {row['loss']:.4f}, accuracy {row['accuracy']:.2f}, margin {row['margin']:.3f}")


def _finish(out: Path, rounds: list[Path], settings: TrainConfig) -> None:
    """The seed folder as every objective's looks: every round's steps in one metrics.jsonl (numbered through,
    each with its round), the pairs of all rounds in data.json, and the last round's adapter (written last: a
    folder with an adapter is a finished one)."""
    steps, counts = [], dict.fromkeys(_SUMMED, 0)
    for r, folder in enumerate(rounds, 1):
        done = len(steps)
        steps += [{**m, "step": done + m["step"], "round": r} for m in read_jsonl(folder / "metrics.jsonl")]
        trained = read_json(folder / "data.json")
        for key in _SUMMED:
            counts[key] += trained.get(key, 0)
    write_jsonl(out / "metrics.jsonl", steps)
    atomic_write_text(out / "data.json", json.dumps({"pair_kinds": settings.pair_kinds, **counts,
                                                     "rounds": len(rounds)}, indent=2) + "\n")
    with atomic_dir(out / ADAPTER) as tmp:
        shutil.copytree(rounds[-1] / ADAPTER, tmp, dirs_exist_ok=True)
