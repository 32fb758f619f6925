"""The generate stage: every system answers every eval prompt (and its robustness variants).

The base model is loaded once (a 4-bit base dequantized once, see
:func:`prefbench.engine.models.load_inference_model`, in the run's compute dtype); each adapter is
applied to a copy of it in turn (:func:`prefbench.engine.adapters.with_adapter`). Per system the stage writes ``generations/<system>.jsonl`` (greedy answers by default) and, for
adapters, ``kl/<system>.jsonl`` (KL to the reference on policy samples of the original prompts). A
system whose files exist is skipped, so a killed stage resumes at the system it was on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefbench.engine.adapters import with_adapter
from prefbench.engine.generation import GENERATION_BATCH, GenerationSettings, generate
from prefbench.engine.kl import response_kl
from prefbench.engine.models import load_inference_model, load_tokenizer
from prefbench.evaluation.systems import System, generations_path, kl_path
from prefbench.tasks.base import TaskPrompt
from prefbench.util.files import write_jsonl

log = logging.getLogger("prefbench")


def generate_systems(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], eval_settings, model: str,
                     quantization: str, seed: int, dtype: str = "float32") -> None:
    """Write the generations (and KL estimates) of every system that lacks them; ``dtype`` is the compute
    dtype the systems were trained in."""
    todo = [s for s in systems if not _complete(run_dir, s)]
    if not todo:
        return
    tokenizer = load_tokenizer(model)
    reference = load_inference_model(model, quantization, dtype)
    greedy = GenerationSettings(max_new_tokens=eval_settings.max_new_tokens, do_sample=eval_settings.do_sample,
                                batch_size=GENERATION_BATCH, seed=seed)
    originals = [p for p in prompts if p.variant == "original"]
    for system in todo:
        policy = reference if system.objective is None else with_adapter(reference, system.adapter(run_dir))
        answers = generate(policy, tokenizer, [p.text for p in prompts], greedy, desc=f"generate {system.name}")
        if system.objective is not None:
            # samples at temperature 1 from the policy itself: the distribution the KL is about
            sampled = GenerationSettings(max_new_tokens=eval_settings.max_new_tokens, do_sample=True,
                                         num_samples=eval_settings.kl_samples, batch_size=GENERATION_BATCH, seed=seed)
            samples = generate(policy, tokenizer, [p.text for p in originals], sampled, desc=f"KL samples {system.name}")
            flat = [(p, s) for p, ss in zip(originals, samples) for s in ss]
            kls = response_kl(policy, reference, tokenizer, [p.text for p, _ in flat], [s for _, s in flat])
            write_jsonl(kl_path(run_dir, system), [{"id": p.id, "sample": s.text, "finished": s.finished, "kl": k}
                                                   for (p, s), k in zip(flat, kls)])
        write_jsonl(generations_path(run_dir, system), [
            {"system": system.name, "id": p.id, "parent": p.parent or p.id, "variant": p.variant, "prompt": p.text,
             "response": a[0].text, "words": len(a[0].text.split()), "finished": a[0].finished, "tokens": a[0].tokens}
            for p, a in zip(prompts, answers)])
        log.info("generations: %s done", system.name)


def _complete(run_dir: Path, system: System) -> bool:
    return generations_path(run_dir, system).exists() and (system.objective is None or kl_path(run_dir, system).exists())
