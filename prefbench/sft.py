"""``prefbench sft``: bring a base model to the SFT starting point preference training begins from.

The JPO paper fine-tuned Mistral-7B on each task's SFT split before preference training. Here the
same training engine runs the ``sft`` objective (token-mean NLL of the response) with (Q)LoRA on
instruction-response rows — the release's SFT files, or any JSONL of ``instruction``/``response``
(or ``prompt``/``completion``) — formatted exactly as the preference data and the evaluation
prompts are (for TL;DR, the release's instruction line around the post). The adapter is then merged
into the base, a 4-bit base dequantized first so the merged weights are the trained policy itself,
and saved as a full model folder that ``--model`` accepts:

    <output_dir>/adapter/     the SFT adapter (training engine output, with metrics.jsonl beside it)
    <output_dir>/model/       base + adapter merged (safetensors + tokenizer), written atomically

The paper's SFT updated every weight; LoRA SFT is what fits the GPUs this tool targets and reaches
the same kind of starting point (a model that answers in the task's format), not the same weights.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from prefbench.artifacts import atomic_write_text
from prefbench.config import TrainConfig
from prefbench.paper_data import RELEASE_REPO, SFTExample, is_hub_id, load_release_sft, read_sft

log = logging.getLogger("prefbench")


def load_sft_examples(data: str, task: str | None = None) -> list[SFTExample]:
    """SFT rows from a file, or — with ``task`` (tldr, hh-helpful) — from the JPO release's train split
    at ``data`` (a hub id or a local copy of the release; empty: the hub)."""
    path = Path(data) if data else None
    if task and (path is None or path.is_dir() or (not path.exists() and is_hub_id(data))):
        return load_release_sft(task, "train", data or RELEASE_REPO)
    if path is None:
        raise ValueError("no SFT data: give a file of instruction/response rows, or a task to read the JPO release")
    return read_sft(path, task)


def merged_model_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "model"


def sft(cfg: TrainConfig, task: str | None = None) -> Path:
    """Train the SFT adapter (objective ``sft``) on ``cfg.data`` and save base + adapter merged;
    returns the merged model folder. Both steps are skipped when their output exists."""
    from prefbench.train import encode_responses, fit

    if cfg.objective != "sft" or cfg.objective_params:
        raise ValueError(f"an SFT config trains objective 'sft' without parameters, got {cfg.objective!r}")
    target = merged_model_dir(cfg.output_dir)
    if (target / "config.json").exists() and (Path(cfg.output_dir) / "adapter" / "adapter_config.json").exists():
        log.info("SFT model already merged: %s", target)
        return target

    def encoded(tokenizer):
        examples = load_sft_examples(cfg.data, task)
        log.info("%d SFT examples from %s", len(examples), cfg.data or RELEASE_REPO)
        return encode_responses(examples, tokenizer, cfg.max_length)

    out = fit(cfg, encoded)
    merge_and_save(cfg.model, cfg.quantization, out / "adapter", target)
    return target


def merge_and_save(model: str, quantization: str, adapter: Path, target: Path) -> None:
    """``model`` with ``adapter`` merged into its weights, saved with its tokenizer to ``target``."""
    from prefbench.generate_stage import with_merged_adapter
    from prefbench.models import load_inference_model, load_tokenizer

    merged = with_merged_adapter(load_inference_model(model, quantization), adapter, copy=False)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    load_tokenizer(model).save_pretrained(tmp)
    atomic_write_text(tmp / "prefbench_sft.json", json.dumps({"base": model, "quantization": quantization,
                                                              "adapter": str(adapter)}, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log.info("SFT model saved: %s", target)
