"""The cache under $PREFBENCH_CACHE: an entry is reused only for the key it records, and ``prefbench cache
list|clear`` shows and empties it."""

import json
import logging
import os
import time

import pytest
import torch

from prefbench.cli import main
from prefbench.util.cache import canonical_key, key_digest, stored_key

KEY = {"model": "tiny", "dtype": "torch.float32", "device": "cpu", "versions": {"torch": "2.13.0"}}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def scorer(tiny_model_dir, tmp_path_factory):
    """A LoRA model, the encoded pairs and their pad id, for reference_logprobs."""
    from prefbench.engine.adapters import add_lora
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.models import load_base_model, load_tokenizer
    from prefbench.formats.records import PreferenceRecord

    tokenizer = load_tokenizer(str(tiny_model_dir))
    records = [PreferenceRecord(f"Name fruit {i}", "apple", f"Name fruit {i}", "ocean green", "conditional")
               for i in range(3)]
    return add_lora(load_base_model(str(tiny_model_dir), "none")), encode_pairs(records, tokenizer, 64), \
        tokenizer.pad_token_id


@pytest.fixture()
def passes(monkeypatch):
    """Counts the reference passes (batches scored) instead of trusting a log line."""
    from prefbench.engine import reference

    count = {"batches": 0}
    real = reference.BatchStatistics

    class Counted(real):
        def __call__(self, *a, **k):
            count["batches"] += 1
            return super().__call__(*a, **k)

    monkeypatch.setattr(reference, "BatchStatistics", Counted)
    return count


def reference(scorer, key):
    from prefbench.engine.reference import reference_logprobs

    model, pairs, pad_id = scorer
    return reference_logprobs(model, pairs, pad_id, key, packed=False, batch_size=2)


def same(a, b) -> bool:
    """Equal values in every field the two hold (token-level fields are None unless asked for)."""
    return all(getattr(a, f) is getattr(b, f) is None or torch.equal(getattr(a, f), getattr(b, f)) for f in vars(a))


def test_reference_cache_is_reused_for_an_equal_key_only(cache, scorer, passes):
    first = reference(scorer, KEY)
    assert passes["batches"] == 2                                # 3 pairs in batches of 2
    again = reference(scorer, json.loads(json.dumps(KEY)))       # an equal key, another dict
    assert passes["batches"] == 2 and same(first[0], again[0]) and same(first[1], again[1])
    for changed in ({"dtype": "torch.bfloat16"}, {"device": "cuda"}, {"versions": {"torch": "2.14.0"}}):
        reference(scorer, {**KEY, **changed})
    assert passes["batches"] == 2 + 3 * 2                       # each changed key computed afresh
    files = sorted((cache / "reference").iterdir())
    assert len(files) == 4 and all(f.suffix == ".safetensors" for f in files)
    recorded = sorted(json.loads(stored_key(f))["dtype"] for f in files)
    assert recorded == ["torch.bfloat16", "torch.float32", "torch.float32", "torch.float32"]


def test_an_entry_recording_another_key_is_computed_again(cache, scorer, passes, monkeypatch, caplog):
    """A digest collision (forced here) must not hand one key's numbers to another."""
    from prefbench.engine import reference as reference_module

    monkeypatch.setattr(reference_module, "key_digest", lambda key: "collision")
    caplog.set_level(logging.WARNING, logger="prefbench")
    reference(scorer, KEY)
    reference(scorer, {**KEY, "dtype": "torch.bfloat16"})
    assert passes["batches"] == 4 and "written for another key" in caplog.text
    assert json.loads(stored_key(cache / "reference" / "collision.safetensors"))["dtype"] == "torch.bfloat16"


def test_an_entry_with_its_key_but_other_values_is_computed_again(cache, scorer, passes):
    from safetensors.torch import load_file, save_file

    first = reference(scorer, KEY)
    (path,) = (cache / "reference").iterdir()
    tensors = load_file(path)
    save_file({k: v[:2] for k, v in tensors.items()}, path, metadata={"key": stored_key(path)})   # a pair dropped
    again = reference(scorer, KEY)
    assert passes["batches"] == 4 and same(first[0], again[0])


def write_entries(cache):
    """One entry of each kind with known sizes and times; returns the reference file's size in bytes (the
    others: 100 B for the old .pt, 51 + 2430 B for the on-policy entry, 1.5 MB for the model)."""
    from safetensors.torch import save

    key = {**KEY, "data": "abc"}
    path = cache / "reference" / f"{key_digest(key)}.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(save({"chosen.response_logps": torch.zeros(3)}, metadata={"key": canonical_key(key)}))
    (cache / "reference" / "0123.pt").write_bytes(b"x" * 100)                   # an older prefbench's pickle
    onpolicy = cache / "onpolicy" / "f00d"
    onpolicy.mkdir(parents=True)
    (onpolicy / "key.json").write_text(canonical_key({"model": "tiny", "task": "ifeval-lite", "seed": 0}))
    (onpolicy / "train.jsonl").write_bytes(b"y" * 2430)
    assert (onpolicy / "key.json").stat().st_size == 51
    model = cache / "models" / "smollm2-135m-instruct"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"z" * 1_500_000)
    (cache / "models" / ".smollm2.tmp123").mkdir()                             # a conversion in progress
    for entry in (path, onpolicy, model):
        os.utime(entry, (1_700_000_000, 1_700_000_000))
    return path.stat().st_size


def test_cache_list_shows_each_kind_with_entries_size_and_key(cache, capsys):
    size = write_entries(cache)
    assert main(["cache", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(1_700_000_000))
    name = f"{key_digest({**KEY, 'data': 'abc'})}.safetensors"
    assert lines[0] == f"{cache}:"
    assert lines[1] == "models (the embedded model converted to safetensors): 1 entry, 1.5 MB"
    assert lines[2] == f"  smollm2-135m-instruct  1.5 MB  {when}"
    assert lines[3] == "onpolicy (sampled and scored on-policy data): 1 entry, 2.5 kB"
    assert lines[4] == f"  f00d  2.5 kB  {when}  model=tiny, task=ifeval-lite, seed=0"
    assert lines[5] == f"reference (reference log-probs of the training pairs): 2 entries, {size + 100} B"
    assert lines[6] == f"  {name}  {size} B  {when}  model=tiny, dtype=torch.float32, device=cpu"
    assert lines[7].startswith("  0123.pt  100 B  ") and lines[7].endswith("no recorded key (never reused)")
    assert len(lines) == 8


def test_cache_clear_removes_the_named_kinds_or_all(cache, capsys):
    size = write_entries(cache)
    assert main(["cache", "clear", "reference", "--dry-run"]) == 0
    assert capsys.readouterr().out == f"would remove reference: 2 entries, {size + 100} B\n"
    assert len(list((cache / "reference").iterdir())) == 2
    assert main(["cache", "clear", "reference"]) == 0
    assert capsys.readouterr().out == f"removed reference: 2 entries, {size + 100} B\n"
    assert sorted(p.name for p in cache.iterdir()) == ["models", "onpolicy"]
    assert main(["cache", "clear", "reference"]) == 0                         # a known kind that is absent
    assert capsys.readouterr().out == f"{cache}: nothing to remove\n"
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.splitlines() == ["removed models: 1 entry, 1.5 MB",
                                                    "removed onpolicy: 1 entry, 2.5 kB"]
    assert list(cache.iterdir()) == []
    assert main(["cache", "list"]) == 0 and capsys.readouterr().out == f"{cache}: no cache\n"


def test_cache_clear_of_an_unknown_kind_is_one_line_with_a_suggestion(cache, capsys):
    write_entries(cache)
    assert main(["cache", "clear", "onpolicy", "refrence"]) == 2
    err = capsys.readouterr().err
    assert err == "prefbench: error: unknown cache kind 'refrence' (did you mean 'reference'?); " \
                  "kinds: models, onpolicy, reference\n"
    assert sorted(p.name for p in cache.iterdir()) == ["models", "onpolicy", "reference"]   # nothing removed
