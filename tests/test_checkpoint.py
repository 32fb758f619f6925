"""Checkpoints without pickle: the saved state comes back exactly, a checkpoint that cannot be verified is
refused with one line before anything is restored, and the package never unpickles."""

import json
import re
from pathlib import Path

import pytest
import torch

from prefbench.engine.checkpoint import CHECKPOINT, STATE, TENSORS, CheckpointError, resume, save_checkpoint
from prefbench.util.errors import UserError

ROOT = Path(__file__).parents[1]


def trainee(model_dir, r: int = 4):
    """A LoRA model with its AdamW and a warmup-then-halving schedule, as the trainer builds them."""
    from prefbench.engine.adapters import add_lora
    from prefbench.engine.models import load_base_model

    model = add_lora(load_base_model(str(model_dir), "none"), r=r, dropout=0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    return model, optimizer, scheduler


def train_steps(model, optimizer, scheduler, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=torch.randint(0, 50, (2, 6))).logits.pow(2).mean().backward()
        optimizer.step()
        scheduler.step()


@pytest.fixture()
def saved(tiny_model_dir, tmp_path):
    """A checkpoint after 3 steps; returns (run folder, trained model, optimizer, scheduler, next random numbers)."""
    torch.manual_seed(1)
    model, optimizer, scheduler = trainee(tiny_model_dir)
    train_steps(model, optimizer, scheduler, 3)
    save_checkpoint(model, optimizer, scheduler, 3, tmp_path / "run")
    upcoming = torch.rand(8)
    return tmp_path / "run", model, optimizer, scheduler, upcoming


def test_save_then_resume_restores_every_state_exactly(saved, tiny_model_dir):
    out, model, optimizer, scheduler, upcoming = saved
    fresh = trainee(tiny_model_dir)
    torch.manual_seed(99)                                           # another RNG position, to be overwritten
    assert resume(*fresh, out, "dpo") == 3
    new_model, new_optimizer, new_scheduler = fresh
    assert torch.equal(torch.rand(8), upcoming)                      # the RNG continues where the save left it
    assert new_scheduler.state_dict() == scheduler.state_dict()
    assert new_scheduler.get_last_lr() == [1e-2 * 0.5 ** 3]
    want, got = optimizer.state_dict(), new_optimizer.state_dict()
    assert got["param_groups"] == want["param_groups"]              # betas back as a tuple
    assert isinstance(got["param_groups"][0]["betas"], tuple)
    assert got["state"].keys() == want["state"].keys() and len(want["state"]) == len(optimizer.param_groups[0]["params"])
    for pid, values in want["state"].items():
        assert got["state"][pid].keys() == values.keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert all(torch.equal(got["state"][pid][k], v) for k, v in values.items())
        assert got["state"][pid]["step"].item() == 3.0
    trained = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    restored = new_model.state_dict()
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)   # B starts at 0: it was restored
    assert all(torch.equal(restored[k], v) for k, v in trained.items())


def test_the_checkpoint_is_safetensors_and_json_only(saved):
    out = saved[0] / CHECKPOINT
    # README.md: PEFT's model card
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                     STATE, TENSORS]
    state = json.loads((out / STATE).read_text())
    assert state["step"] == 3 and state["format"] == 1
    assert set(state["sha256"]) == {TENSORS, "adapter_model.safetensors"}


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _edit_state(folder: Path, edit) -> None:
    state = json.loads((folder / STATE).read_text())
    edit(state)
    (folder / STATE).write_text(json.dumps(state))


def _rewrite_tensors(folder: Path, edit) -> None:
    """New tensors with a matching sha256: only the checks past the checksum can refuse them."""
    import hashlib

    from safetensors.torch import load, save

    tensors = load((folder / TENSORS).read_bytes())
    edit(tensors)
    data = save(tensors)
    (folder / TENSORS).write_bytes(data)
    _edit_state(folder, lambda s: s["sha256"].update({TENSORS: hashlib.sha256(data).hexdigest()}))


def _old_pickle_format(folder: Path) -> None:
    (folder / STATE).unlink()
    (folder / "trainer_state.pt").write_bytes(b"\x80\x04pickled")


TAMPERINGS = {
    "flipped byte": (lambda f: _flip_a_byte(f / TENSORS),
                     "trainer_state.safetensors does not have the sha256 recorded in trainer_state.json"),
    "edited adapter": (lambda f: _flip_a_byte(f / "adapter_model.safetensors"),
                       "adapter_model.safetensors does not have the sha256 recorded"),
    "missing tensors": (lambda f: (f / TENSORS).unlink(), "trainer_state.safetensors is missing"),
    "truncated json": (lambda f: (f / STATE).write_text('{"format": 1, "st'), "trainer_state.json is not valid JSON"),
    "no step": (lambda f: _edit_state(f, lambda s: s.pop("step")), "trainer_state.json has no int 'step'"),
    "future format": (lambda f: _edit_state(f, lambda s: s.update(format=2)), "in format 2, this prefbench reads"),
    "old pickle": (_old_pickle_format, "trainer_state.json is missing (it is in the old pickle format"),
    "no rng": (lambda f: _rewrite_tensors(f, lambda t: t.pop("rng")), "holds no RNG state"),
    "state of no parameter": (lambda f: _rewrite_tensors(f, lambda t: t.update({"optimizer.999.exp_avg": torch.zeros(3)})),
                              "optimizer state for parameter 999, which this run does not have"),
    "reshaped moment": (lambda f: _rewrite_tensors(f, lambda t: t.update({"optimizer.0.exp_avg": torch.zeros(3, 3)})),
                        "optimizer state 0.exp_avg has shape [3, 3], its parameter"),
    "listed state": (lambda f: _edit_state(f, lambda s: s["optimizer"].update(state=[])),
                     "trainer_state.json holds a malformed optimizer state"),
    "foreign scheduler": (lambda f: _edit_state(f, lambda s: s["scheduler"].pop("base_lrs")),
                          "its scheduler state has the fields"),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_checkpoint_that_fails_a_check_is_refused_before_anything_is_restored(saved, tiny_model_dir, tampering):
    out = saved[0]
    tamper, message = TAMPERINGS[tampering]
    tamper(out / CHECKPOINT)
    model, optimizer, scheduler = trainee(tiny_model_dir)
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as refusal:
        resume(model, optimizer, scheduler, out, "dpo")
    text = str(refusal.value)
    assert isinstance(refusal.value, UserError) and "\n" not in text
    assert text.startswith(f"cannot resume from {out / CHECKPOINT}: ") and message in text, text
    assert text.endswith("delete the folder to train from step 0")
    assert optimizer.state_dict()["state"] == {} and scheduler.last_epoch == 0
    assert all(torch.equal(v, untouched[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_of_another_adapter_size_is_refused(saved, tiny_model_dir):
    """Saved with LoRA rank 4, resumed with rank 8: the optimizer's moments have other shapes."""
    with pytest.raises(CheckpointError, match=r"optimizer state 0\.exp_avg(_sq)? has shape \[4, \d+\], its parameter \[8, "):
        resume(*trainee(tiny_model_dir, r=8), saved[0], "dpo")


def test_a_run_without_checkpoint_starts_at_step_0(tiny_model_dir, tmp_path):
    assert resume(*trainee(tiny_model_dir), tmp_path / "new", "dpo") == 0


def test_the_package_never_unpickles_or_runs_downloaded_code():
    """No pickle loading and no model code from a hub repository, anywhere in the package or its objectives."""
    forbidden = re.compile(r"weights_only\s*=\s*False|^\s*(import|from)\s+(c?pickle|dill)\b|torch\.load\(|"
                           r"allow_pickle\s*=\s*True|trust_remote_code", re.MULTILINE)
    files = sorted((ROOT / "prefbench").rglob("*.py")) + sorted((ROOT / "objectives").rglob("*.py"))
    assert len(files) > 50
    found = [f"{f.relative_to(ROOT)}: {m.group(0).strip()}" for f in files
             for m in forbidden.finditer(f.read_text(encoding="utf-8"))]
    assert found == []
