"""The generate stage: every system answers every eval prompt (and its robustness variants).

A *system* is the reference model (the base, no adapter) or one trained adapter (``objective/seedK``).
The base model is loaded once (a 4-bit base dequantized once, see ``models.load_inference_model``); each adapter
is merged into a copy of it in turn. Per system the stage
writes ``generations/<system>.jsonl`` (greedy answers by default) and, for adapters,
``kl/<system>.jsonl`` (KL to the reference on policy samples of the original prompts). A system whose
files exist is skipped, so a killed stage resumes at the system it was on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from prefbench.artifacts import read_jsonl, write_jsonl
from prefbench.generation import GenerationSettings, generate
from prefbench.tasks.base import TaskPrompt

log = logging.getLogger("prefbench")

REFERENCE = "reference"


@dataclass(frozen=True)
class System:
    name: str                      # "reference" or "<objective>/seed<k>"
    objective: str | None = None
    seed: int | None = None

    def adapter(self, run_dir: Path) -> Path | None:
        return None if self.objective is None else Path(run_dir) / self.name / "adapter"


def systems_for(objectives: list[str], seeds: list[int]) -> list[System]:
    return [System(REFERENCE)] + [System(f"{o}/seed{s}", o, s) for o in objectives for s in seeds]


def generations_path(run_dir: Path, system: System) -> Path:
    return Path(run_dir) / "generations" / f"{system.name}.jsonl"


def kl_path(run_dir: Path, system: System) -> Path:
    return Path(run_dir) / "kl" / f"{system.name}.jsonl"


def generate_systems(run_dir: Path, systems: list[System], prompts: list[TaskPrompt], eval_settings, model: str,
                     quantization: str, seed: int) -> None:
    """Write the generations (and KL estimates) of every system that lacks them."""
    from prefbench.kl import response_kl
    from prefbench.models import load_inference_model, load_tokenizer

    todo = [s for s in systems if not _complete(run_dir, s)]
    if not todo:
        return
    tokenizer = load_tokenizer(model)
    reference = load_inference_model(model, quantization)
    greedy = GenerationSettings(max_new_tokens=eval_settings.max_new_tokens, do_sample=eval_settings.do_sample,
                                batch_size=32, seed=seed)
    originals = [p for p in prompts if p.variant == "original"]
    for system in todo:
        policy = reference if system.objective is None else with_merged_adapter(reference, system.adapter(run_dir))
        answers = generate(policy, tokenizer, [p.text for p in prompts], greedy, desc=f"generate {system.name}")
        if system.objective is not None:
            # samples at temperature 1 from the policy itself: the distribution the KL is about
            sampled = GenerationSettings(max_new_tokens=eval_settings.max_new_tokens, do_sample=True,
                                         num_samples=eval_settings.kl_samples, batch_size=32, seed=seed)
            samples = generate(policy, tokenizer, [p.text for p in originals], sampled, desc=f"KL samples {system.name}")
            flat = [(p, s) for p, ss in zip(originals, samples) for s in ss]
            kls = response_kl(policy, reference, tokenizer, [p.text for p, _ in flat], [s for _, s in flat])
            write_jsonl(kl_path(run_dir, system), [{"id": p.id, "sample": s, "kl": k} for (p, s), k in zip(flat, kls)])
        write_jsonl(generations_path(run_dir, system), [
            {"system": system.name, "id": p.id, "parent": p.parent or p.id, "variant": p.variant, "prompt": p.text,
             "response": a[0], "words": len(a[0].split())} for p, a in zip(prompts, answers)])
        log.info("generations: %s done", system.name)


def with_merged_adapter(base, adapter: Path, copy: bool = True):
    """``base`` with the LoRA adapter merged into its weights (W + s·BA): the trained policy with no
    per-step adapter cost. By default a copy, so ``base`` itself stays the reference."""
    import copy as copying

    from peft import PeftModel

    return PeftModel.from_pretrained(copying.deepcopy(base) if copy else base, str(adapter)).merge_and_unload().eval()


def _complete(run_dir: Path, system: System) -> bool:
    return generations_path(run_dir, system).exists() and (system.objective is None or kl_path(run_dir, system).exists())


def load_generations(run_dir: Path, system: System) -> list[dict]:
    return read_jsonl(generations_path(run_dir, system))
