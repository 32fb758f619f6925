"""The generate stage: every system answers every eval prompt (and its robustness variants).

The base model is loaded once (a 4-bit base dequantized once, see
:func:`prefbench.engine.models.load_inference_model`, in the run's compute dtype); each adapter is
applied to a copy of it in turn (:func:`prefbench.engine.adapters.with_adapter`). Per system the stage
writes ``generations/<system>.jsonl`` (greedy answers by default) and, for adapters, ``kl/<system>.jsonl``
(KL to the reference on policy samples of the original prompts, decoded in the same batches as the
answers, :mod:`prefbench.engine.kl`). A system whose files exist is skipped, so a killed stage resumes
at the system it was on. With ``workers`` above one (the local executor's, :mod:`prefbench.util.processes`),
systems answer in that many processes at a time, each loading the base model once and taking the next system
when it is done with one; every system's answers are the ones it gives alone.

With a served generator (``--generator``, :mod:`prefbench.evaluation.served`) the server writes the answers and
the KL samples; the KL itself is still computed here, on those samples, from one forward each of the local
policy and reference (:func:`prefbench.engine.kl.text_kl`): the model is local anyway, for training. Only
adapters need it: a stage left with the reference alone loads no model.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from prefbench.engine.adapters import with_adapter
from prefbench.engine.formatting import PLAIN_TEMPLATE, is_plain
from prefbench.engine.generation import GenerationSettings, generate, generate_groups
from prefbench.engine.kl import response_kl, text_kl
from prefbench.engine.models import load_inference_model, load_tokenizer, threads_per_worker
from prefbench.evaluation.served import CACHE_FILE, GenerationCache, ServedGenerator
from prefbench.evaluation.systems import System, generations_path, kl_path
from prefbench.tasks.base import TaskPrompt
from prefbench.util.files import write_jsonl
from prefbench.util.processes import Task, run_in_processes

log = logging.getLogger("prefbench")

# eval prompts whose KL samples decode at a time (their logits are kept until the KL is computed: 64 prompts
# of 128 tokens over a 32k vocabulary hold 0.5 GB)
KL_SLICE = 64


def generate_systems(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], eval_settings, model: str,
                     quantization: str, seed: int, dtype: str = "float32", prompt_format: str = "auto",
                     generator: ServedGenerator | None = None, workers: int = 1) -> None:
    """Write the generations (and KL estimates) of every system that lacks them; ``dtype`` is the compute
    dtype the systems were trained in, ``prompt_format`` the prompt format they were trained on; ``generator``:
    the server that answers instead of the local model; ``workers``: processes answering at a time."""
    todo = [s for s in systems if not _complete(run_dir, s)]
    if not todo:
        return
    if workers > 1 and generator is None and len(todo) > 1:
        # trained systems first: they take longest (answers and KL samples), the reference fills in at the end
        ordered = sorted(todo, key=lambda s: s.objective is None)
        tasks = [Task(s.name, _generate_one, (run_dir, s, prompts, eval_settings, model, quantization, seed, dtype,
                                              prompt_format)) for s in ordered]
        failures = run_in_processes(tasks, workers, threads_per_worker(workers), desc="generate", unit="system",
                                    total=len(systems), done=lambda: sum(_complete(run_dir, s) for s in systems))
        if failures:
            raise failures[0][1]
        return
    tokenizer = load_tokenizer(model, prompt_format)
    local = generator is None or any(s.objective is not None for s in todo)
    reference = load_inference_model(model, quantization, dtype) if local else None
    _answer(run_dir, todo, prompts, eval_settings, tokenizer, reference, seed, generator)


def _answer(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], eval_settings, tokenizer, reference,
            seed: int, generator: ServedGenerator | None = None) -> None:
    """Each system's generations (and KL rows) written, one system after the other."""
    greedy = GenerationSettings(max_new_tokens=eval_settings.max_new_tokens, do_sample=eval_settings.do_sample,
                                seed=seed)
    # samples at temperature 1 from the policy itself: the distribution the KL is about
    sampled = GenerationSettings(max_new_tokens=eval_settings.max_new_tokens, do_sample=True,
                                 num_samples=eval_settings.kl_samples, seed=seed, keep_logits=True)
    originals = [p for p in prompts if p.variant == "original"][:eval_settings.subset_prompts or None]
    cache = GenerationCache(Path(run_dir) / CACHE_FILE) if generator is not None else None
    for system in systems:
        policy = reference if system.objective is None else with_adapter(reference, system.adapter(run_dir))
        texts = [p.text for p in prompts]
        if generator is not None:
            answers, kl_rows = _served(generator, system, policy, reference, tokenizer, texts, greedy, originals,
                                       sampled, cache)
        elif system.objective is None:
            answers, kl_rows = generate(policy, tokenizer, texts, greedy, desc=f"generate {system.name}"), []
        else:
            answers, kl_rows = _answers_and_kl(policy, reference, tokenizer, texts, greedy, originals, sampled,
                                               system.name)
        if system.objective is not None:
            write_jsonl(kl_path(run_dir, system), kl_rows)
        write_jsonl(generations_path(run_dir, system), [
            {"system": system.name, "id": p.id, "parent": p.parent or p.id, "variant": p.variant, "prompt": p.text,
             "response": a[0].text, "words": len(a[0].text.split()), "finished": a[0].finished, "tokens": a[0].tokens}
            for p, a in zip(prompts, answers)])
        log.info("generations: %s done", system.name)


@functools.lru_cache(maxsize=1)
def _worker_models(model: str, quantization: str, dtype: str, prompt_format: str):
    """A worker process's tokenizer and base model, loaded for its first system and kept for the next ones."""
    return load_tokenizer(model, prompt_format), load_inference_model(model, quantization, dtype)


def _generate_one(run_dir: Path, system: System, prompts: list[TaskPrompt], eval_settings, model: str,
                  quantization: str, seed: int, dtype: str, prompt_format: str) -> None:
    """One system's generations, in a worker process."""
    tokenizer, reference = _worker_models(model, quantization, dtype, prompt_format)
    _answer(run_dir, [system], prompts, eval_settings, tokenizer, reference, seed)


def _answers_and_kl(policy, reference, tokenizer, texts: list[str], greedy, originals: list[TaskPrompt], sampled,
                    name: str):
    """The policy's answers and its KL rows. The KL samples decode in the same batches as the answers, a
    slice of prompts at a time: their logits (kept for the KL) stay in memory only until their KL is computed."""
    answers, rows = None, []
    for start in range(0, max(len(originals), 1), KL_SLICE):
        part = originals[start:start + KL_SLICE]
        groups = [([p.text for p in part], sampled)]
        if answers is None:
            groups.insert(0, (texts, greedy))
        results = generate_groups(policy, tokenizer, groups, desc=f"generate {name}")
        if answers is None:
            answers = results.pop(0)
        flat = [(p, s) for p, ss in zip(part, results[0]) for s in ss]
        kls = response_kl(reference, tokenizer, [p.text for p, _ in flat], [s for _, s in flat])
        rows += [{"id": p.id, "sample": s.text, "finished": s.finished, "kl": k} for (p, s), k in zip(flat, kls)]
    return answers, rows


def _served(generator: ServedGenerator, system: System, policy, reference, tokenizer, texts: list, greedy,
            originals: list[TaskPrompt], sampled, cache: GenerationCache):
    """The server's answers and, for an adapter, KL rows on the server's samples (the KL computed locally)."""
    template = PLAIN_TEMPLATE if is_plain(tokenizer) else None
    answers = generator.generate(system, texts, greedy, cache, template)
    if system.objective is None:
        return answers, []
    samples = generator.generate(system, [p.text for p in originals], sampled, cache, template)
    flat = [(p, s) for p, ss in zip(originals, samples) for s in ss]
    kls = text_kl(policy, reference, tokenizer, [p.text for p, _ in flat], [(s.content, s.finished) for _, s in flat])
    return answers, [{"id": p.id, "sample": s.text, "finished": s.finished, "kl": k} for (p, s), k in zip(flat, kls)]


def _complete(run_dir: Path, system: System) -> bool:
    return generations_path(run_dir, system).exists() and (system.objective is None or kl_path(run_dir, system).exists())
