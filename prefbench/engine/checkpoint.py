"""What a training folder holds besides metrics: the last checkpoint (adapter + optimizer,
scheduler and RNG state) while training, then the final adapter with its fingerprint."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.encoding import EncodedPairs
from prefbench.engine.logprobs import model_sequence_logprobs
from prefbench.engine.models import compute_dtype_of
from prefbench.util.files import atomic_dir, atomic_write_text

log = logging.getLogger("prefbench")

CHECKPOINT = "checkpoint"
ADAPTER = "adapter"
_STATE = "trainer_state.pt"


def is_trained(out: Path) -> bool:
    return (Path(out) / ADAPTER / "adapter_config.json").exists()


def save_checkpoint(model, optimizer, scheduler, step: int, out: Path) -> None:
    with atomic_dir(Path(out) / CHECKPOINT) as tmp:
        model.save_pretrained(tmp)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / _STATE)


def resume(model, optimizer, scheduler, out: Path, name: str) -> int:
    """Restore the last checkpoint in ``out`` (adapter, optimizer, scheduler, RNG); returns its step, 0 without one."""
    folder = Path(out) / CHECKPOINT
    if not (folder / _STATE).exists():
        return 0
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = torch.load(folder / _STATE, map_location="cpu", weights_only=False)
    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    log.info("resuming %s from step %d", name, state["step"])
    return state["step"]


def save_adapter(model, pairs: EncodedPairs, pad_id: int, out: Path) -> None:
    """The final adapter, with a fingerprint to check that it reproduces the trained policy when
    reloaded onto the base in the same compute dtype; the checkpoint is no longer needed then."""
    with atomic_dir(Path(out) / ADAPTER) as tmp:
        model.save_pretrained(tmp)
        model.eval()
        fp_pairs = list(range(min(4, len(pairs))))
        with torch.no_grad(), adapter_compute(model):
            fingerprint = model_sequence_logprobs(model, **pairs.batch(fp_pairs, pad_id, model.device))
        atomic_write_text(tmp / "fingerprint.json", json.dumps({"pairs": fp_pairs,
                                                                "compute_dtype": str(compute_dtype_of(model)),
                                                                "response_logps": fingerprint.response_logps.tolist(),
                                                                "joint_logps": fingerprint.joint_logps.tolist()}))
    shutil.rmtree(Path(out) / CHECKPOINT, ignore_errors=True)
