"""A trained LoRA adapter merged into base weights: for fast generation, and saved as a model folder."""

from __future__ import annotations

import copy as copying
import json
import logging
from pathlib import Path

from prefbench.engine.models import load_inference_model, load_tokenizer
from prefbench.util.files import atomic_dir, atomic_write_text

log = logging.getLogger("prefbench")


def with_merged_adapter(base, adapter: Path, copy: bool = True):
    """``base`` with the LoRA adapter merged into its weights (W + s·BA): the trained policy with no
    per-step adapter cost. By default a copy, so ``base`` itself stays the reference."""
    from peft import PeftModel

    return PeftModel.from_pretrained(copying.deepcopy(base) if copy else base, str(adapter)).merge_and_unload().eval()


def merge_and_save(model: str, quantization: str, adapter: Path, target: Path) -> None:
    """``model`` with ``adapter`` merged into its weights, saved with its tokenizer to ``target``."""
    merged = with_merged_adapter(load_inference_model(model, quantization), adapter, copy=False)
    with atomic_dir(target) as tmp:
        merged.save_pretrained(tmp)
        load_tokenizer(model).save_pretrained(tmp)
        atomic_write_text(tmp / "prefbench_sft.json", json.dumps({"base": model, "quantization": quantization,
                                                                  "adapter": str(adapter)}, indent=2) + "\n")
    log.info("SFT model saved: %s", target)
