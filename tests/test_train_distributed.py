"""Data-parallel training under ``accelerate launch``: two processes reproduce a one-process run.

Both runs see the same global batch per optimizer step (each process a contiguous half of every
micro-batch) and DDP averages the gradients, so the per-step numbers agree up to float summation
order. LoRA dropout is off: with it, each process would draw its own masks.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.trainer import process_share, train

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """import sys
from prefbench.engine.config import TrainConfig
from prefbench.engine.trainer import train
train(TrainConfig.from_yaml(sys.argv[1]))
"""


def test_each_process_takes_an_even_share_of_every_micro_batch():
    cfg = TrainConfig(data="x", batch_size=8, grad_accum=2)
    assert [process_share(cfg, n) for n in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(ConfigError, match=r"batch_size \(8\) must be divisible by grad_accum \(2\) x processes \(3\)"):
        process_share(cfg, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_processes(cfg: TrainConfig, tmp_path: Path, cache: Path) -> None:
    """``accelerate launch`` with 2 CPU processes over gloo. In accelerate 1.15 ``--cpu`` with several
    processes needs mpirun; ``--multi_gpu`` with no visible GPU starts torchrun workers on the CPU."""
    config, script = tmp_path / "two.yaml", tmp_path / "train_script.py"
    cfg.save_yaml(config)
    script.write_text(SCRIPT)
    env = {**os.environ, "PREFBENCH_CACHE": str(cache), "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(script), str(config)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def settings(model_dir, data) -> dict:
    return dict(model=str(model_dir), data=str(data), quantization="none", batch_size=4, grad_accum=2,
                max_steps=4, lr=5e-3, warmup_steps=1, save_every=2, lora_dropout=0.0, objective="dpo")


def assert_same_steps(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in b] == [r["step"] for r in a] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert rb["tokens"] == ra["tokens"]  # the two shares together are the whole batch
        assert rb["lr"] == ra["lr"]  # the schedule steps once per optimizer step, not once per process
        # the first step's numbers agree to float32 rounding (a wrong split or average would differ in the
        # leading digits); later ones drift further, since each process packs its half of the pairs into rows
        # of its own (with its own shared instruction start) and runs its products on its own threads, so sums
        # run in another order, and Adam's normalized updates (at lr 5e-3) carry those last digits into every
        # following step
        tolerance = 1e-4 if rb["step"] == 1 else 2e-3
        for key in ("loss", "accuracy", "margin", "chosen_logps", "rejected_logps", "grad_norm"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-5, rel=tolerance), (rb["step"], key)
    assert a[-1]["loss"] < a[0]["loss"]  # it trained: the comparison is not between two idle runs


@pytest.mark.slow
def test_two_processes_reproduce_one_process(tiny_model_dir, prefs, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    base = settings(tiny_model_dir, prefs)
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache-one"))
    one = train(TrainConfig(**base, output_dir=str(tmp_path / "one")))
    two = tmp_path / "two"
    # its own reference cache, so the main process computes it and the other reads it
    launch_two_processes(TrainConfig(**base, output_dir=str(two)), tmp_path, tmp_path / "cache-two")

    # one writer: exactly one line per step, no checkpoint or temp folders left behind
    assert sorted(p.name for p in two.iterdir()) == ["adapter", "config.yaml", "data.json", "metrics.jsonl"]
    assert_same_steps(rows(one), rows(two))

    wa, wb = (load_file(out / "adapter" / "adapter_model.safetensors") for out in (one, two))
    assert wa.keys() == wb.keys()
    assert any(v.abs().sum() > 0 for k, v in wa.items() if "lora_B" in k)
    # Adam moves a weight by about lr whatever its gradient's size, so a weight whose gradient is at rounding
    # level (above) may move either way in each process count: no element further apart than that, and
    # every tensor close as a whole
    for k in wa:
        assert (wb[k] - wa[k]).abs().max() <= 2 * base["lr"] * base["max_steps"], k
        assert (wb[k] - wa[k]).norm() <= 0.05 * wa[k].norm() + 1e-6, k
    fa, fb = (json.loads((out / "adapter" / "fingerprint.json").read_text()) for out in (one, two))
    assert fb["joint_logps"] == pytest.approx(fa["joint_logps"], rel=1e-3)


@pytest.mark.slow
def test_two_processes_resume_a_one_process_checkpoint(tiny_model_dir, prefs, tmp_path, monkeypatch):
    """Killed during step 3 (checkpoint after step 2), finished by two processes: the full run's numbers."""
    base = settings(tiny_model_dir, prefs)
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    full = rows(train(TrainConfig(**base, output_dir=str(tmp_path / "full"))))
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    killed = TrainConfig(**base, output_dir=str(tmp_path / "killed"))
    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(killed)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert len(rows(tmp_path / "killed")) == 2 and (tmp_path / "killed" / "checkpoint").is_dir()
    launch_two_processes(killed, tmp_path, tmp_path / "cache")
    assert_same_steps(full, rows(tmp_path / "killed"))
