"""The SFT stage on a tiny random model: NLL falls, the merged model is the trained policy, the
release's SFT split is read with the task's formatting, and bad uses fail before any work."""

import json
from pathlib import Path

import pytest
import torch

from prefbench.cli import main
from prefbench.data.sft import load_sft_examples
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.sft import train_sft
from prefbench.formats.records import SFTExample
from prefbench.formats.release import TLDR_RELEASE_INSTRUCTION

RELEASE = Path(__file__).parent / "fixtures" / "paper" / "release"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def sft_file(tmp_path):
    rows = [{"instruction": f"Name fruit {i}", "response": "apple"} for i in range(4)] + \
           [{"prompt": f"Say a colour {i}", "completion": "red"} for i in range(4)]
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft(cfg):
    return train_sft(cfg, lambda: load_sft_examples(cfg.data))


def sft_cfg(model_dir, data, out, **kw):
    base = dict(model=str(model_dir), data=str(data), quantization="none", batch_size=4, max_steps=8, lr=1e-2,
                warmup_steps=1, objective="sft", output_dir=str(out))
    return TrainConfig(**{**base, **kw})


def test_sft_lowers_the_nll_and_saves_a_merged_model_that_is_the_trained_policy(tiny_model_dir, sft_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from prefbench.engine.checkpoint import fingerprint_logprobs
    from prefbench.engine.encoding import encode_responses
    from prefbench.engine.models import load_tokenizer

    # float32 training, so the comparison below checks the merge itself, not bfloat16 rounding
    model_dir = sft(sft_cfg(tiny_model_dir, sft_file, tmp_path / "sft", max_steps=40, lr=3e-2, compute_dtype="float32"))
    assert model_dir == tmp_path / "sft" / "model"
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    # a random tiny model's logits are nearly flat (lm_head is not adapted), so NLL only falls from ~ln(vocab)
    assert len(rows) == 40 and sum(r["loss"] for r in rows[-5:]) / 5 < rows[0]["loss"] - 0.4
    assert not (tmp_path / "cache" / "reference").exists()  # SFT never reads reference log-probs

    fp = json.loads((tmp_path / "sft" / "adapter" / "fingerprint.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = load_tokenizer(str(model_dir))
    examples = load_sft_examples(str(sft_file))
    encoded = encode_responses(examples, tokenizer, 512)
    with torch.no_grad():
        got = fingerprint_logprobs(merged, encoded, fp["pairs"], tokenizer.pad_token_id)
    assert got.response_logps.tolist() == pytest.approx(fp["response_logps"], abs=1e-4)
    info = json.loads((model_dir / "prefbench_sft.json").read_text())
    assert info["base"] == str(tiny_model_dir) and info["quantization"] == "none"


def test_a_finished_sft_is_not_redone(tiny_model_dir, sft_file, tmp_path, caplog):
    cfg = sft_cfg(tiny_model_dir, sft_file, tmp_path / "sft", max_steps=2)
    sft(cfg)
    stamp = (tmp_path / "sft" / "model" / "model.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="prefbench"):
        sft(cfg)
    assert "already merged" in caplog.text
    assert (tmp_path / "sft" / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_release_sft_split_is_read_with_the_tasks_formatting():
    examples = load_sft_examples(str(RELEASE), "tldr")
    first = json.loads((RELEASE / "data/tldr/train_sft.jsonl").read_text().splitlines()[0])
    assert examples[0] == SFTExample(TLDR_RELEASE_INSTRUCTION.format(post=first["instruction"]), first["response"])
    hh = load_sft_examples(str(RELEASE), "hh-helpful")
    assert hh and all(isinstance(e.prompt, str) for e in hh)


def test_model_fingerprint_changes_when_the_folder_is_rewritten(tiny_model_dir, tmp_path):
    import shutil

    from prefbench.engine.models import model_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    before = model_fingerprint(str(copy))
    assert model_fingerprint(str(copy)) == before and model_fingerprint("org/name") == "org/name"
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert model_fingerprint(str(copy)) != before


def test_preference_objectives_refuse_sft_data(tiny_model_dir, sft_file, tmp_path):
    from prefbench.engine.encoding import encode_responses
    from prefbench.engine.trainer import fit

    cfg = sft_cfg(tiny_model_dir, sft_file, tmp_path / "x", objective="dpo")
    with pytest.raises(ConfigError, match="dpo needs preference pairs"):
        fit(cfg, lambda tok: encode_responses(load_sft_examples(str(sft_file)), tok, 512))
    with pytest.raises(ValueError, match="trains objective 'sft'"):
        sft(cfg)


def test_cli_sft_reads_the_release_and_prints_the_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "sft"
    assert main(["sft", "--task", "tldr", "--data", str(RELEASE), "--model", str(tiny_model_dir),
                 "--quantization", "none", "--max-steps", "2", "--batch-size", "2", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"SFT model: {out / 'model'}" in printed and (out / "model" / "config.json").exists()
    assert TrainConfig.from_yaml(out / "config.yaml").objective == "sft"


@pytest.mark.parametrize("argv, message", [
    (["sft"], "no SFT data: pass --data FILE"),
    (["sft", "--data", "x.jsonl", "--objective", "dpo"], "prefbench sft trains objective 'sft'"),
])
def test_cli_sft_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
