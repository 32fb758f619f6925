"""End to end on the embedded SmolLM2-135M in 4-bit (QLoRA on the CPU): slow, run with -m slow."""

import json

import pytest
import torch

from prefbench.objective import parse_objective_list

pytestmark = pytest.mark.slow


def test_demo_trains_every_objective_and_adapters_reload(tmp_path):
    from peft import PeftModel

    from prefbench.demo import run_demo
    from prefbench.models import EMBEDDED, load_base_model
    from tests.test_train import assert_reload_reproduces_policy

    names = "dpo,ipo,simpo,jpo,sft_jpo"
    results = run_demo(parse_objective_list(names), steps=4, output_dir=str(tmp_path))
    for r in results:
        assert r["last"]["accuracy"] > 0.5, r  # above chance after 4 steps on the training pairs
        assert r["last"]["loss"] < r["first"]["loss"], r
    out = tmp_path / "jpo" / "seed0"
    reloaded = PeftModel.from_pretrained(load_base_model(EMBEDDED, "4bit"), out / "adapter").eval()
    assert_reload_reproduces_policy(reloaded, out, tmp_path / "data" / "pairs.jsonl")
    # a second call reuses the finished adapters and gives the same table
    again = run_demo(parse_objective_list(names), steps=4, output_dir=str(tmp_path))
    assert [r["last"] for r in again] == [r["last"] for r in results]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
    assert torch.isfinite(torch.tensor([r["tokens_per_s"] for r in results])).all()
