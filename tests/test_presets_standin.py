"""The JPO paper's presets run end to end on stand-ins: `paper` (Mistral-7B-v0.1: a SentencePiece tokenizer
without a chat template, so the paper's plain format) and `small` (Qwen2.5-0.5B-Instruct: byte-level BPE with
a ChatML template), each with the preset's own settings except the model, the step counts and the batch,
on a local copy of the release with the authors' file names."""

import json
import math
import shutil
from pathlib import Path

import pytest

from prefbench.benchmark import load_benchmark, parse_set
from prefbench.cli import main
from prefbench.engine.formatting import is_plain
from prefbench.engine.models import load_tokenizer
from prefbench.engine.sft import merged_model_dir
from prefbench.formats.release import load_release_preferences
from tests.conftest import copy_tokenizer

RELEASE = Path(__file__).parent / "fixtures" / "paper" / "release"
# the DOVE repository's names: its TL;DR preference and test files are JSON Lines under .json
AUTHORS_NAMES = {"tldr/train_conditional_pref.jsonl": "tldr/train_conditional_pref.json",
                 "tldr/train_joint_pref.jsonl": "tldr/train_joint_pref.json",
                 "tldr/val_conditional_pref.jsonl": "tldr/val_conditional_pref.json"}
SHRINK = ["sft.max_steps=1", "sft.batch_size=4", "train.max_steps=1", "train.batch_size=4", "eval.prompts=2",
          "eval.max_new_tokens=4"]


@pytest.fixture(scope="module")
def authors_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dove")
    shutil.copytree(RELEASE, folder, dirs_exist_ok=True)
    for ours, theirs in AUTHORS_NAMES.items():
        (folder / "data" / ours).rename(folder / "data" / theirs)
    return folder


@pytest.fixture(scope="module")
def tiny_qwen_dir(tiny_4bit_dir, tmp_path_factory):
    """A 64-wide tiny Qwen2 (biased attention projections, as Qwen2.5) with the ChatML BPE test tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = copy_tokenizer(tiny_4bit_dir, tmp_path_factory.mktemp("tiny-qwen2"))
    tok = load_tokenizer(str(folder))
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("bench, preset", [
    ("tldr", "paper"),
    pytest.param("hh-helpful", "paper", marks=pytest.mark.slow),
    pytest.param("tldr", "small", marks=pytest.mark.slow),
    pytest.param("hh-helpful", "small", marks=pytest.mark.slow),
])
def test_preset_runs_its_first_sft_and_training_step_on_a_stand_in(bench, preset, authors_copy, sentencepiece_dir,
                                                                   tiny_qwen_dir, tiny_model_dir, tmp_path):
    model = sentencepiece_dir if preset == "paper" else tiny_qwen_dir
    sets = [f"data.location={authors_copy}", *SHRINK]
    spec = load_benchmark(bench, preset, parse_set(sets))
    shipped = load_benchmark(bench, preset)
    kept = {k: v for k, v in shipped.train.items() if k not in ("max_steps", "batch_size")}
    assert {k: spec.train[k] for k in kept} == kept   # the preset's own settings: LoRA, lr, warmup, length, ...
    assert shipped.model == ("mistralai/Mistral-7B-v0.1" if preset == "paper" else "Qwen/Qwen2.5-0.5B-Instruct")

    run_dir = tmp_path / "run"
    argv = ["run", "--benchmark", bench, "--preset", preset, "--objectives", "jpo", "--model", str(model),
            "--judge", f"local:{tiny_model_dir}", "--output-dir", str(run_dir)]
    assert main(argv + [arg for s in sets for arg in ("--set", s)]) == 0

    # the SFT stage trained one step and its merged model formats prompts as the base model's tokenizer says
    sft_steps = (run_dir / "sft" / "metrics.jsonl").read_text().splitlines()
    assert len(sft_steps) == 1 and math.isfinite(json.loads(sft_steps[0])["loss"])
    start = load_tokenizer(str(merged_model_dir(run_dir / "sft")))
    assert is_plain(start) == (preset == "paper")
    # JPO's first step: the policy is the reference, so every margin is 0 and the loss is ln 2
    (step,) = [json.loads(x) for x in (run_dir / "jpo" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert step["loss"] == pytest.approx(math.log(2), abs=1e-3)
    results = json.loads((run_dir / "results.json").read_text())
    (jpo,) = results["systems"]
    assert results["baseline"] == "gold" and results["n_prompts"] == 2 and jpo["wins"] + jpo["ties"] + jpo["losses"] == 2
    assert jpo["training"][0]["pairs"] == len(load_release_preferences(bench, "both", source=authors_copy))
