"""The SFT stage: LoRA (or QLoRA) supervised fine-tuning with the training engine, then base +
adapter merged and saved as a full model folder that ``--model`` accepts.

A 4-bit base is dequantized first so the merged weights are the trained policy itself:

    <output_dir>/adapter/     the SFT adapter (training engine output, with metrics.jsonl beside it)
    <output_dir>/model/       base + adapter merged (safetensors + tokenizer), written atomically

The JPO paper's SFT updated every weight; LoRA SFT is what fits the GPUs this tool targets and reaches
the same kind of starting point (a model that answers in the task's format), not the same weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from prefbench.engine.adapters import merge_and_save
from prefbench.engine.checkpoint import ADAPTER, is_trained
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.encoding import encode_responses
from prefbench.engine.tracking import require_trackers
from prefbench.engine.trainer import fit
from prefbench.formats.records import SFTExample

log = logging.getLogger("prefbench")


def merged_model_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "model"


def train_sft(cfg: TrainConfig, load_examples: Callable[[], list[SFTExample]]) -> Path:
    """Train the SFT adapter (objective ``sft``) on the examples ``load_examples()`` returns (read
    only when there is something to train) and save base + adapter merged; returns the merged model folder.
    Both steps are skipped when their output exists."""
    if cfg.objective != "sft" or cfg.objective_params:
        raise ConfigError(f"an SFT config trains objective 'sft' without parameters, got {cfg.objective!r}")
    require_trackers(cfg.report_to)
    target = merged_model_dir(cfg.output_dir)
    if (target / "config.json").exists() and is_trained(Path(cfg.output_dir)):
        log.info("SFT model already merged: %s", target)
        return target
    examples = load_examples()   # checked before any tokenizer or model is loaded, so a bad row fails at once
    out = fit(cfg, lambda tokenizer: encode_responses(examples, tokenizer, cfg.max_length))
    merge_and_save(cfg.model, cfg.quantization, out / ADAPTER, target)
    return target
