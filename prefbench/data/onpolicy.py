"""On-policy preference data: sample the reference model, score with the benchmark's gold judge, pair.

For each training prompt, ``samples_per_prompt`` answers are sampled from the reference model (the
base model every objective starts from) and scored by the task's judge. Pairs are formed

- *conditional* (same instruction): the best remaining answer against the worst remaining one,
  while their score gap is at least ``min_gap``, up to ``max_pairs_per_prompt`` per prompt;
- *joint* (different instructions, as in JPO/DOVE): ``(I_i, R) ≻ (I_j, R')`` for a seeded random
  other prompt j, drawing among the (R, R') whose scores differ by at least ``min_gap``.

Everything is cached under ``$PREFBENCH_CACHE/onpolicy/<digest>/`` keyed by model, quantization,
task, data settings and seed, so a second build (or a second run) only copies files; the folder records its
key (key.json) and is reused only when it equals the one asked for.

An iterative objective's later rounds build their data the same way from a trained policy (the base model with
an adapter, keyed by the adapter's content) and a sampling seed of their own, on the same prompts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import NamedTuple

from prefbench.engine.adapters import adapter_digest, with_adapter
from prefbench.engine.generation import GenerationSettings, generate
from prefbench.engine.models import (
    compute_dtype,
    default_device,
    load_inference_model,
    load_tokenizer,
    model_fingerprint,
)
from prefbench.formats.preferences import write_preferences
from prefbench.formats.records import ListRecord, PreferenceRecord, make_record
from prefbench.tasks import get_task
from prefbench.tasks.base import TaskPrompt
from prefbench.util.cache import KEY_FILE, canonical_key, key_digest, stored_key
from prefbench.util.files import atomic_dir, atomic_write_text, read_json, write_jsonl
from prefbench.util.runs import cache_root

log = logging.getLogger("prefbench")

DATA_FILES = ("prompts.jsonl", "samples.jsonl", "train.jsonl", "summary.json")
# bump when pairing or sampling changes, so old caches are not reused (5: per-row streams; 6: pairs carry the
# judge's scores, which ODPO reads)
_VERSION = 6


class Answer(NamedTuple):
    """A scored sample; ``finished``: the model ended it (rather than reaching max_new_tokens)."""

    text: str
    score: float
    finished: bool = True


def _answer(values: tuple) -> Answer:
    return Answer(*values)   # (text, score) or (text, score, finished)


def conditional_pairs(prompt: TaskPrompt, answers: list[tuple], min_gap: float, max_pairs: int
                      ) -> list[PreferenceRecord]:
    """Best against worst, second best against second worst, ... while the gap holds (``answers``: Answer
    tuples; a repeated text counts once). Each pair records its two answers' scores."""
    unique = sorted({a.text: a for a in map(_answer, answers) if a.text.strip()}.values(), key=lambda a: -a.score)
    pairs = []
    lo, hi = 0, len(unique) - 1
    while lo < hi and len(pairs) < max_pairs and unique[lo].score - unique[hi].score >= min_gap:
        best, worst = unique[lo], unique[hi]
        pairs.append(make_record(prompt.text, best.text, prompt.text, worst.text, best.finished, worst.finished,
                                 best.score, worst.score))
        lo, hi = lo + 1, hi - 1
    return pairs


def joint_pairs(prompts: list[TaskPrompt], answers: list[list[tuple]], min_gap: float, per_prompt: int,
                seed: int) -> list[PreferenceRecord]:
    """Cross-instruction pairs: for each prompt i, ``per_prompt`` partners j ≠ i drawn with a seeded RNG."""
    rng = random.Random(seed)
    answers = [list(map(_answer, ans)) for ans in answers]
    pairs = []
    for i in range(len(prompts)):
        others = [j for j in range(len(prompts)) if prompts[j].text != prompts[i].text]
        for j in rng.sample(others, min(per_prompt, len(others))):
            candidates = [(a, b) for a in answers[i] for b in answers[j]
                          if a.text.strip() and b.text.strip() and a.score - b.score >= min_gap]
            if candidates:
                a, b = rng.choice(candidates)
                pairs.append(make_record(prompts[i].text, a.text, prompts[j].text, b.text, a.finished, b.finished,
                                         a.score, b.score))
    return pairs


def build_pairs(prompts: list[TaskPrompt], answers: list[list[tuple]], data, seed: int) -> list[PreferenceRecord]:
    """All conditional then all joint pairs for scored samples (``data``: the spec's DataSettings). Samples cut
    at max_new_tokens are left out unless ``data.keep_truncated``: a cut-off answer is scored as the fragment it
    is, so pairing it would teach "an ended answer beats a cut-off one" more than anything about content."""
    if not data.keep_truncated:
        answers = [[a for a in map(_answer, ans) if a.finished] for ans in answers]
    cond = [p for prompt, ans in zip(prompts, answers)
            for p in conditional_pairs(prompt, ans, data.min_gap, data.max_pairs_per_prompt)]
    return cond + joint_pairs(prompts, answers, data.min_gap, data.joint_pairs_per_prompt, seed)


def build_lists(prompts: list[TaskPrompt], answers: list[list[tuple]], data) -> list[ListRecord]:
    """Each prompt's scored samples as one list, for listwise objectives: its distinct non-empty answers (a repeated
    text counts once; cut-off ones only with ``data.keep_truncated``, as for pairs), when there are two or more and
    not all of one score (such a list ranks nothing). K is at most ``samples_per_prompt``."""
    lists = []
    for prompt, ans in zip(prompts, answers):
        kept = [a for a in map(_answer, ans) if a.text.strip() and (a.finished or data.keep_truncated)]
        unique = list({a.text: a for a in kept}.values())
        if len(unique) >= 2 and len({a.score for a in unique}) > 1:
            lists.append(ListRecord(prompt.text, tuple(a.text for a in unique), tuple(a.score for a in unique),
                                    tuple(a.finished for a in unique)))
    return lists


def cache_key(spec, model: str, quantization: str, seed: int) -> dict:
    """What fixes the cached data; the entry records it (key.json) and is reused only for an equal key."""
    ident = {"version": _VERSION, "model": model_fingerprint(model), "quantization": quantization,
             "dtype": str(compute_dtype(spec.compute_dtype)), "device": default_device(), "prompt_format": spec.prompt_format,
             "task": spec.task, "seed": seed,
             # which pairs each objective takes does not change the pairs built
             "data": {k: v for k, v in dataclasses.asdict(spec.data).items() if k != "arm"}}
    return ident


def build_data(spec, model: str, quantization: str, seed: int, out_dir: Path, base_model=None, tokenizer=None,
               adapter: str | Path | None = None, sample_seed: int | None = None) -> dict:
    """Write ``out_dir/{prompts,samples,train}.jsonl`` and ``summary.json``; returns the summary.

    Reuses the on-disk cache when present; otherwise samples with ``base_model`` (loaded here when
    not given) and fills the cache. ``adapter``: sample the policy of that adapter on ``base_model`` instead;
    ``sample_seed``: the seed of the samples and of the joint pairs' draws (default ``seed``, which draws the
    prompts).
    """
    out_dir = Path(out_dir)
    key = cache_key(spec, model, quantization, seed)
    if adapter or sample_seed is not None:
        key |= {"policy": adapter_digest(adapter) if adapter else "base",
                "sample_seed": seed if sample_seed is None else sample_seed}
    sample_seed = seed if sample_seed is None else sample_seed
    cached = cache_root() / "onpolicy" / key_digest(key, 20)
    if stored_key(cached) == canonical_key(key) and all((cached / f).exists() for f in DATA_FILES):
        log.info("on-policy data: reused cache %s", cached)
    else:
        task = get_task(spec.task)
        prompts = task.prompts("train", spec.data.train_prompts, seed)
        t0 = time.perf_counter()
        given = base_model is not None
        if not given:
            base_model = load_inference_model(model, quantization, spec.compute_dtype)
        # the caller's model stays the base model; one loaded here can take the adapter itself
        policy = with_adapter(base_model, Path(adapter), copy=given) if adapter else base_model
        tokenizer = tokenizer or load_tokenizer(model, spec.prompt_format)
        settings = GenerationSettings(max_new_tokens=spec.data.max_new_tokens, do_sample=True,
                                      temperature=spec.data.temperature, top_p=spec.data.top_p,
                                      num_samples=spec.data.samples_per_prompt, seed=sample_seed)
        completions = generate(policy, tokenizer, [p.text for p in prompts], settings,
                               desc=f"sample {'policy' if adapter else 'reference'}")
        answers = [[Answer(c.text, task.score(p, c.text), c.finished) for c in cs]
                   for p, cs in zip(prompts, completions)]
        pairs = build_pairs(prompts, answers, spec.data, sample_seed)
        scores = [a.score for ans in answers for a in ans]
        cut = [a for ans in answers for a in ans if not a.finished]
        summary = {
            "benchmark": spec.name, "task": spec.task, "model": model, "quantization": quantization, "seed": seed,
            **({"policy": str(adapter), "sample_seed": sample_seed} if "policy" in key else {}),
            "train_prompts": len(prompts), "samples": len(scores),
            "mean_score": sum(scores) / len(scores),
            "success_rate": sum(s >= 1.0 for s in scores) / len(scores),
            "truncated_samples": len(cut), "truncated_share": len(cut) / len(scores),
            "truncated_mean_score": sum(a.score for a in cut) / len(cut) if cut else None,
            "truncated_samples_paired": spec.data.keep_truncated,
            "conditional_pairs": sum(p.kind == "conditional" for p in pairs),
            "joint_pairs": sum(p.kind == "joint" for p in pairs),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if not pairs:
            raise RuntimeError(f"no preference pairs formed from {len(scores)} samples (mean score "
                               f"{summary['mean_score']:.2f}); lower min_gap or raise samples_per_prompt")
        with atomic_dir(cached) as tmp:
            write_jsonl(tmp / "prompts.jsonl", [p.to_json() for p in prompts])
            write_jsonl(tmp / "samples.jsonl", [{"id": p.id, "response": c.text, "score": a.score,
                                                  "finished": c.finished, "tokens": c.tokens}
                                                 for p, ans, cs in zip(prompts, answers, completions)
                                                 for a, c in zip(ans, cs)])
            write_preferences(pairs, tmp / "train.jsonl")
            atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
            atomic_write_text(tmp / KEY_FILE, canonical_key(key))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copyfile(cached / name, out_dir / name)
    return read_json(out_dir / "summary.json")
