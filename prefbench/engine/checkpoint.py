"""What a training folder holds besides metrics: the last checkpoint (adapter + optimizer,
scheduler and RNG state) while training, then the final adapter with its fingerprint.

A checkpoint is safetensors and JSON only, never pickle: ``--resume`` on a folder received from someone else
reads data and cannot run code. ``trainer_state.json`` records the sha256 of both tensor files, and every
file is read and checked against this run's optimizer, scheduler and RNG before anything is restored, so a
corrupt, edited or foreign checkpoint is refused with one line instead of being partly applied."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.encoding import EncodedPairs
from prefbench.engine.logprobs import SequenceLogProbs, model_sequence_logprobs
from prefbench.engine.models import compute_dtype_of
from prefbench.engine.optimizer_state import join_state, split_state
from prefbench.util.errors import UserError
from prefbench.util.files import atomic_dir, atomic_write_text

log = logging.getLogger("prefbench")

CHECKPOINT = "checkpoint"
ADAPTER = "adapter"
STATE = "trainer_state.json"             # step, scheduler, optimizer groups and plain state, sha256 of the files
TENSORS = "trainer_state.safetensors"    # optimizer state tensors, the RNG state, a moving reference's log-probs
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_FORMAT = 1


class CheckpointError(UserError):
    """A checkpoint that ``--resume`` cannot verify; nothing of it has been restored."""


def is_trained(out: Path) -> bool:
    return (Path(out) / ADAPTER / "adapter_config.json").exists()


def save_checkpoint(model, optimizer, scheduler, step: int, out: Path,
                    reference: dict[str, torch.Tensor] | None = None) -> None:
    """``reference``: the reference log-probs in force, as named tensors, for a run whose reference moves during
    training (TR-DPO; :func:`saved_reference` reads them back)."""
    from safetensors.torch import save

    optimizer_tensors, optimizer_plain = split_state(optimizer.state_dict())
    tensors = {**{f"optimizer.{k}": v for k, v in optimizer_tensors.items()}, "rng": torch.get_rng_state(),
               **{f"reference.{k}": v for k, v in (reference or {}).items()}}
    with atomic_dir(Path(out) / CHECKPOINT) as tmp:
        model.save_pretrained(tmp)
        data = save(tensors)
        (tmp / TENSORS).write_bytes(data)
        sha256 = {TENSORS: hashlib.sha256(data).hexdigest(),
                  _ADAPTER_WEIGHTS: hashlib.sha256((tmp / _ADAPTER_WEIGHTS).read_bytes()).hexdigest()}
        (tmp / STATE).write_text(json.dumps({"format": _FORMAT, "step": step, "scheduler": scheduler.state_dict(),
                                             "optimizer": optimizer_plain, "sha256": sha256}), encoding="utf-8")


def resume(model, optimizer, scheduler, out: Path, name: str) -> int:
    """Restore the last checkpoint in ``out`` (adapter, optimizer, scheduler, RNG); returns its step, 0 without
    one. Every file is read and checked first: a checkpoint that fails a check raises CheckpointError with
    nothing of it restored."""
    folder = Path(out) / CHECKPOINT
    if not folder.is_dir():
        return 0
    state = _read_state(folder)
    tensors, adapter = _read_tensors(folder, TENSORS, state), _read_tensors(folder, _ADAPTER_WEIGHTS, state)
    rng = tensors.pop("rng", None)
    if rng is None or rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
        raise _refused(folder, f"{TENSORS} holds no RNG state of this torch's size")
    if set(state["scheduler"]) != set(scheduler.state_dict()):
        raise _refused(folder, f"its scheduler state has the fields {sorted(state['scheduler'])}, this run's "
                               f"{sorted(scheduler.state_dict())}")
    if any(not k.startswith(("optimizer.", "reference.")) for k in tensors):
        raise _refused(folder, f"{TENSORS} holds tensors other than optimizer state, RNG and reference log-probs")
    try:
        optimizer_state = join_state(optimizer, {k.removeprefix("optimizer."): v for k, v in tensors.items()
                                                 if k.startswith("optimizer.")}, state["optimizer"])
    except ValueError as exc:                 # a mismatch, which join_state names
        raise _refused(folder, str(exc)) from None
    except (AttributeError, KeyError, TypeError) as exc:
        raise _refused(folder, f"{STATE} holds a malformed optimizer state ({exc!r})") from None
    _restore_adapter(model, adapter, folder)
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(rng)
    log.info("resuming %s from step %d", name, state["step"])
    return state["step"]


def checkpoint_step(out: Path) -> int:
    """The step of the last checkpoint in ``out`` (the one :func:`resume` restores), 0 without one."""
    folder = Path(out) / CHECKPOINT
    return _read_state(folder)["step"] if folder.is_dir() else 0


def saved_reference(out: Path) -> dict[str, torch.Tensor]:
    """The reference log-probs the last checkpoint in ``out`` saved (``save_checkpoint(reference=...)``), by name;
    empty when it saved none."""
    folder = Path(out) / CHECKPOINT
    tensors = _read_tensors(folder, TENSORS, _read_state(folder))
    return {k.removeprefix("reference."): v for k, v in tensors.items() if k.startswith("reference.")}


def _refused(folder: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"cannot resume from {folder}: {problem}; delete the folder to train from step 0")


def _read_state(folder: Path) -> dict:
    """trainer_state.json, with the fields and types this version writes."""
    path = folder / STATE
    if not path.exists():
        old = " (it is in the old pickle format, trainer_state.pt, which is never loaded)" \
            if (folder / "trainer_state.pt").exists() else ""
        raise _refused(folder, f"{STATE} is missing{old}")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refused(folder, f"{STATE} is not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise _refused(folder, f"{STATE} is not a JSON object")
    if state.get("format") != _FORMAT:
        raise _refused(folder, f"{STATE} is in format {state.get('format')}, this prefbench reads format {_FORMAT}")
    for key, kind in {"step": int, "scheduler": dict, "optimizer": dict, "sha256": dict}.items():
        if not isinstance(state.get(key), kind):
            raise _refused(folder, f"{STATE} has no {kind.__name__} '{key}'")
    if state["step"] < 0:
        raise _refused(folder, f"{STATE} records step {state['step']}")
    return state


def _read_tensors(folder: Path, name: str, state: dict) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/name`` once its bytes have the sha256 that trainer_state.json records."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = (folder / name).read_bytes()
    except FileNotFoundError:
        raise _refused(folder, f"{name} is missing") from None
    if hashlib.sha256(data).hexdigest() != state["sha256"].get(name):
        raise _refused(folder, f"{name} does not have the sha256 recorded in {STATE} (corrupt or edited)")
    try:
        return load(data)
    except SafetensorError as exc:
        raise _refused(folder, f"{name} is not a safetensors file ({exc})") from None


def _restore_adapter(model, weights: dict[str, torch.Tensor], folder: Path) -> None:
    from peft import set_peft_model_state_dict

    try:
        loaded = set_peft_model_state_dict(model, weights)
    except RuntimeError as exc:   # torch's "size mismatch" for an adapter of another shape
        raise _refused(folder, f"{_ADAPTER_WEIGHTS} does not fit this run's adapter ({str(exc).splitlines()[-1]})"
                       ) from None
    if loaded.unexpected_keys:
        raise _refused(folder, f"{_ADAPTER_WEIGHTS} holds weights this run's adapter does not have, e.g. "
                               f"{loaded.unexpected_keys[0]}")


def _sort_target_modules(path: Path) -> None:
    """PEFT writes ``target_modules`` from a set, in an order that changes with each process's hash seed; sorted
    (in PEFT's own layout: indent 2, sorted keys), one adapter gives one file in every process."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True))


def fingerprint_logprobs(model, pairs: EncodedPairs, indices: list[int], pad_id: int) -> SequenceLogProbs:
    """The statistics fingerprint.json holds for ``indices``, laid out as ``pairs.batch(indices)`` lays them out
    (every chosen or only sequence, then every rejected one), computed a pair at a time: a padded batch's
    [B, T, V] logits were the training process's peak memory. Check a reloaded adapter with this function too:
    below float32 a sequence's log-probs depend on what else is in its batch (docs/performance.md, Precision)."""
    parts = [pairs.split(model_sequence_logprobs(model, **pairs.batch([i], pad_id, model.device))) for i in indices]
    return SequenceLogProbs.cat([c for c, _ in parts] + ([r for _, r in parts] if pairs.paired else []))


def save_adapter(model, pairs: EncodedPairs, pad_id: int, out: Path) -> None:
    """The final adapter, with a fingerprint to check that it reproduces the trained policy when
    reloaded onto the base in the same compute dtype; the checkpoint is no longer needed then."""
    with atomic_dir(Path(out) / ADAPTER) as tmp:
        model.save_pretrained(tmp)
        _sort_target_modules(tmp / "adapter_config.json")
        model.eval()
        fp_pairs = list(range(min(4, len(pairs))))
        with torch.no_grad(), adapter_compute(model):
            fingerprint = fingerprint_logprobs(model, pairs, fp_pairs, pad_id)
        atomic_write_text(tmp / "fingerprint.json", json.dumps({"pairs": fp_pairs,
                                                                "compute_dtype": str(compute_dtype_of(model)),
                                                                "response_logps": fingerprint.response_logps.tolist(),
                                                                "joint_logps": fingerprint.joint_logps.tolist()}))
    shutil.rmtree(Path(out) / CHECKPOINT, ignore_errors=True)
