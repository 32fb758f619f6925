"""Training engine on a tiny random model saved to disk: identical runs, resume, reference cache, errors."""

import json
import math

import pytest
import torch

from prefbench.engine.config import ConfigError, TrainConfig, TrainingError
from prefbench.engine.trainer import batch_order, lr_lambda, train
from prefbench.registry import PairLogProbs, get_objective, list_objectives

TIMING = ("tokens_per_s",)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))


def cfg(model_dir, data, out, **kw):
    base = dict(model=str(model_dir), data=str(data), quantization="none", batch_size=4, max_steps=6,
                lr=5e-3, warmup_steps=1, save_every=3, output_dir=str(out), objective="dpo")
    return TrainConfig(**{**base, **kw})


def metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.mark.parametrize("objective", ["dpo", "ipo", "simpo", "jpo", "sft_jpo", "kto"])
def test_each_objective_trains_and_saves_a_loadable_adapter(tiny_model_dir, prefs, tmp_path, objective):
    out = train(cfg(tiny_model_dir, prefs, tmp_path / objective, objective=objective, max_steps=8))
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["accuracy"] > 0.5
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out / "adapter").eval()
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in reloaded.state_dict().items())
    assert_reload_reproduces_policy(reloaded, out, prefs, objective)


def assert_reload_reproduces_policy(reloaded, out, prefs, objective="dpo"):
    """The reloaded adapter gives the log-probs the trained policy gave (fingerprint.json) on the sequences it
    trained on (an unpaired objective's: the pairs split into examples, each with its mismatched sequence)."""
    from prefbench.engine.encoding import encode_examples, encode_pairs
    from prefbench.formats.unpaired import load_examples
    from prefbench.engine.checkpoint import fingerprint_logprobs
    from prefbench.engine.models import load_tokenizer
    from prefbench.formats.preferences import load_preferences

    fp = json.loads((out / "adapter" / "fingerprint.json").read_text())
    tokenizer = load_tokenizer(str(reloaded.base_model.model.name_or_path))
    if get_objective(objective).data == "unpaired":
        pairs = encode_examples(load_examples(prefs), tokenizer, 512)
    else:
        pairs = encode_pairs(load_preferences(prefs), tokenizer, 512)
    compute = getattr(torch, fp["compute_dtype"].removeprefix("torch."))   # as trained: autocast below float32
    with torch.no_grad(), torch.autocast("cpu", dtype=compute, enabled=compute != torch.float32):
        got = fingerprint_logprobs(reloaded, pairs, fp["pairs"], tokenizer.pad_token_id)
    assert got.joint_logps.tolist() == pytest.approx(fp["joint_logps"], abs=1e-3)
    assert got.response_logps.tolist() == pytest.approx(fp["response_logps"], abs=1e-3)


def test_fingerprint_a_pair_at_a_time_is_the_padded_batch_in_float32(tiny_model_dir, prefs):
    """fingerprint_logprobs lays out its pair-at-a-time statistics as one padded batch of the same pairs would be
    (chosen sequences, then rejected ones): in float32 the two agree sequence by sequence."""
    from prefbench.engine.checkpoint import fingerprint_logprobs
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.logprobs import model_sequence_logprobs
    from prefbench.engine.models import load_base_model, load_tokenizer
    from prefbench.formats.preferences import load_preferences

    model, tokenizer = load_base_model(str(tiny_model_dir), "none").eval(), load_tokenizer(str(tiny_model_dir))
    pairs = encode_pairs(load_preferences(prefs), tokenizer, 512)
    indices = [2, 0, 3]
    with torch.no_grad():
        got = fingerprint_logprobs(model, pairs, indices, tokenizer.pad_token_id)
        batch = model_sequence_logprobs(model, **pairs.batch(indices, tokenizer.pad_token_id))
    assert got.response_logps.shape == (2 * len(indices),)
    assert got.response_logps.tolist() == pytest.approx(batch.response_logps.tolist(), abs=1e-4)
    assert got.joint_logps.tolist() == pytest.approx(batch.joint_logps.tolist(), abs=1e-4)
    assert got.response_tokens.tolist() == batch.response_tokens.tolist()


def test_same_config_twice_gives_identical_metrics(tiny_model_dir, prefs, tmp_path):
    a = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "a")))
    b = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "b")))
    assert a == b


# tdpo2: its reference forward (eval mode, no gradient) between the policy's forward and its recomputation
@pytest.mark.parametrize("objective", ["dpo", "tdpo2"])
def test_gradient_checkpointing_changes_memory_not_the_numbers(tiny_model_dir, prefs, tmp_path, objective):
    """Recomputing activations in backward (dropout masks included) gives the same training run."""
    plain = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "plain", objective=objective)))
    recomputed = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "ckpt", objective=objective,
                                   gradient_checkpointing=True)))
    for a, b in zip(plain, recomputed):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) for k in a)


def test_enable_checkpointing_recomputes_each_layer_in_backward(tiny_model_dir):
    from prefbench.engine.adapters import add_lora
    from prefbench.engine.models import enable_checkpointing, load_base_model

    model = add_lora(load_base_model(str(tiny_model_dir), "none"))
    model.train()
    calls = []
    # a submodule's pre-hook: the recompute runs the layer's forward, not its __call__ (whose hooks stay outside),
    # and stops as soon as the last saved tensor is back, before any module inside it returns
    model.get_base_model().model.layers[0].mlp.register_forward_pre_hook(lambda *args: calls.append(1))

    def forwards_of_layer0_in_one_step() -> int:
        calls.clear()
        model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits.sum().backward()
        return len(calls)

    assert forwards_of_layer0_in_one_step() == 1
    enable_checkpointing(model)
    assert forwards_of_layer0_in_one_step() == 2   # once forward, once recomputed for the backward


# tdpo2: a live reference forward every step, between dropout draws; sampo: its per-pair token draw
@pytest.mark.parametrize("objective", ["dpo", "kto", "lipo", "tdpo2", "sampo"])
def test_killed_run_resumes_to_identical_metrics(tiny_model_dir, prefs, tmp_path, monkeypatch, objective):
    full = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "full", objective=objective)))
    import prefbench.engine.trainer as engine

    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def dying_step(self, *a, **k):  # simulate a kill during step 5 (checkpoint saved after step 3)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        engine.train(cfg(tiny_model_dir, prefs, tmp_path / "killed", objective=objective))
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert (tmp_path / "killed" / "checkpoint" / "trainer_state.json").exists()
    assert len(metrics(tmp_path / "killed")) == 4
    resumed = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "killed", objective=objective)))
    assert resumed == full


def test_reference_logprobs_are_cached_across_objectives(tiny_model_dir, prefs, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="prefbench")
    train(cfg(tiny_model_dir, prefs, tmp_path / "dpo", max_steps=1))
    assert "reused cache" not in caplog.text
    train(cfg(tiny_model_dir, prefs, tmp_path / "jpo", objective="jpo", max_steps=1))
    assert "reference log-probs: reused cache" in caplog.text


def test_reference_log_probs_of_another_precision_are_never_reused(tiny_model_dir, prefs, tmp_path, caplog):
    """A cache filled in float32 is not read by a bfloat16 run (its reference would not be its initial policy)."""
    import logging

    caplog.set_level(logging.INFO, logger="prefbench")
    train(cfg(tiny_model_dir, prefs, tmp_path / "fp32", max_steps=1, compute_dtype="float32"))
    train(cfg(tiny_model_dir, prefs, tmp_path / "bf16", max_steps=1, compute_dtype="bfloat16"))
    assert "reused cache" not in caplog.text
    assert len(list((tmp_path / "cache" / "reference").glob("*.safetensors"))) == 2
    train(cfg(tiny_model_dir, prefs, tmp_path / "bf16-again", max_steps=1, compute_dtype="bfloat16"))
    assert "reference log-probs: reused cache" in caplog.text


def test_first_dpo_step_starts_at_ln2_in_bfloat16(tiny_model_dir, prefs, tmp_path):
    """The reference is the initial policy in the run's own precision, although the reference pass packs
    other pairs together than the first training step does: the first loss is ln 2 up to bfloat16 rounding."""
    out = train(cfg(tiny_model_dir, prefs, tmp_path / "bf16", max_steps=1, compute_dtype="bfloat16"))
    assert metrics(out)[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)


def test_forwards_of_fewer_tokens_give_the_same_training(tiny_model_dir, prefs, tmp_path):
    """A micro-batch split into several forwards (to bound activation memory) accumulates the same gradient."""
    whole = train(cfg(tiny_model_dir, prefs, tmp_path / "whole", compute_dtype="float32", max_forward_tokens=0))
    split = train(cfg(tiny_model_dir, prefs, tmp_path / "split", compute_dtype="float32", max_forward_tokens=40))
    for a, b in zip(metrics(whole), metrics(split)):
        assert a["tokens"] == b["tokens"]
        for key in ("loss", "accuracy", "margin", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("objective, forwards", [("dpo", 4), ("aot", 1), ("beta_dpo", 1), ("kto", 1)])
def test_a_batch_level_objective_sees_each_micro_batch_whole(tiny_model_dir, prefs, tmp_path, monkeypatch, objective,
                                                            forwards):
    """AOT sorts, β-DPO averages over the pairs it is given: split into forwards, its losses would change."""
    import prefbench.engine.trainer as engine

    seen = []
    real = engine._Loop.forward
    monkeypatch.setattr(engine._Loop, "forward", lambda self, idx: seen.append(list(idx)) or real(self, idx))
    train(cfg(tiny_model_dir, prefs, tmp_path / objective, objective=objective, max_steps=1, max_forward_tokens=40))
    assert len(seen) == forwards and sorted(i for idx in seen for i in idx) == sorted(set(sum(seen, [])))
    assert sum(len(idx) for idx in seen) == 4      # the step's 4 pairs, each once


def test_run_directory_from_a_different_config_is_refused(tiny_model_dir, prefs, tmp_path):
    train(cfg(tiny_model_dir, prefs, tmp_path / "run", max_steps=1))
    with pytest.raises(ConfigError, match="different configuration \\(changed: lr\\)"):
        train(cfg(tiny_model_dir, prefs, tmp_path / "run", max_steps=1, lr=1e-3))


def test_nan_loss_stops_with_a_clear_error(tiny_model_dir, prefs, tmp_path, monkeypatch):
    import prefbench.engine.statistics as statistics

    real = statistics.packed_sequence_logprobs

    def poisoned(*a, **k):
        s = real(*a, **k)
        return type(s)(s.response_logps * float("nan"), s.response_tokens, s.joint_logps * float("nan"), s.joint_tokens)

    monkeypatch.setattr(statistics, "packed_sequence_logprobs", poisoned)
    with pytest.raises(TrainingError, match="loss is nan at step 1"):
        train(cfg(tiny_model_dir, prefs, tmp_path / "nan", objective="simpo"))


def test_truncation_is_counted_and_logged(tiny_model_dir, prefs, tmp_path, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="prefbench")
    train(cfg(tiny_model_dir, prefs, tmp_path / "short", max_steps=1, max_length=30))
    assert "truncated" in caplog.text and "max_length=30" in caplog.text


@pytest.mark.parametrize("kinds, conditional, joint", [("all", 6, 6), ("conditional", 6, 0), ("joint", 0, 6)])
def test_pair_kinds_select_the_pairs_trained_on_and_are_recorded(tiny_model_dir, prefs, tmp_path, kinds,
                                                                 conditional, joint):
    out = train(cfg(tiny_model_dir, prefs, tmp_path / kinds, max_steps=2, pair_kinds=kinds))
    data = json.loads((out / "data.json").read_text())
    assert (data["pair_kinds"], data["pairs"], data["conditional"], data["joint"]) == \
        (kinds, conditional + joint, conditional, joint)
    assert data["truncated_to_max_length"] == 0 and data["tokens"] > 0


def test_pair_kinds_that_leave_no_pairs_stop_with_a_clear_error(tiny_model_dir, tmp_path):
    from prefbench.formats.preferences import write_preferences
    from prefbench.formats.records import PreferenceRecord

    only_conditional = tmp_path / "conditional.jsonl"
    write_preferences([PreferenceRecord("Name a fruit", "apple", "Name a fruit", "stone", "conditional")],
                      only_conditional)
    with pytest.raises(TrainingError, match="no joint pairs among its 1 conditional, 0 joint"):
        train(cfg(tiny_model_dir, only_conditional, tmp_path / "out", pair_kinds="joint"))


def test_schedule_and_batch_order():
    c = TrainConfig(data="x", max_steps=10, warmup_steps=2, batch_size=3)
    f = lr_lambda(c)
    assert [round(f(s), 6) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    order = batch_order(4, c)
    assert len(order) == 10 and all(len(b) == 3 for b in order)
    flat = sum(order, [])
    assert sorted(flat[:4]) == [0, 1, 2, 3]  # each epoch is a permutation
    assert order == batch_order(4, c)


@pytest.mark.parametrize("values,message", [
    ({"lrr": 1e-4}, "unknown key 'lrr' \\(did you mean 'lr'\\?\\)"),
    ({"batch_size": 6, "grad_accum": 4}, "divisible"),
    ({"quantization": "8bit"}, "quantization must be"),
    ({"pair_kinds": "conditonal"}, "pair_kinds must be one of all, conditional, joint.*did you mean 'conditional'"),
])
def test_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"data": "x", **values})


def test_bad_objective_parameter_fails_before_loading(tmp_path):
    from prefbench.registry import ObjectiveError

    with pytest.raises(ObjectiveError, match="parameter 'beta' must be > 0"):
        train(TrainConfig(data="x", objective="dpo", objective_params={"beta": -1.0}, output_dir=str(tmp_path)))


def test_a_no_grad_eval_forward_leaves_the_4bit_model_and_its_gradients_unchanged(tiny_4bit_dir):
    """bitsandbytes would repack 4-bit CPU weights in place on the first eval/no-grad forward (how reference
    log-probs are computed), changing later training forwards and corrupting their gradients."""
    from prefbench.engine.adapters import add_lora
    from prefbench.engine.logprobs import model_sequence_logprobs
    from prefbench.engine.models import load_base_model

    model = add_lora(load_base_model(str(tiny_4bit_dir), "4bit"), r=4, alpha=8, dropout=0.0)
    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    ones = torch.ones_like(ids)

    def policy_and_grads():
        model.train()
        model.zero_grad()
        out = model_sequence_logprobs(model, ids, ones, ones)
        out.response_logps.sum().backward()
        return out.response_logps.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    before, g_before = policy_and_grads()
    model.eval()
    with torch.no_grad(), model.disable_adapter():
        reference = model_sequence_logprobs(model, ids, ones, ones).response_logps
    after, g_after = policy_and_grads()
    assert torch.equal(reference, before)  # untrained adapter: reference == policy, so DPO starts at ln 2
    assert torch.equal(after, before) and torch.equal(g_after, g_before)


TRL_FAMILY = ["hinge", "exo_pair", "nca_pair", "robust_dpo", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
              "apo_down", "discopop", "dpo_norm"]


@pytest.mark.parametrize("objective", [o.name for o in list_objectives() if o.source == "built-in"])
def test_every_objective_takes_an_optimizer_step(tiny_model_dir, prefs, tmp_path, objective):
    """Every registered built-in runs through the engine: one optimizer step, a finite loss and a
    gradient that moves the adapter. For the TRL-family objectives (issue #16) the policy equals the
    reference at step 1, so the logged loss is the objective at zero log-ratios (ln 2, 1, 50, ...)."""
    out = train(cfg(tiny_model_dir, prefs, tmp_path / objective, objective=objective, max_steps=1,
                    compute_dtype="float32", max_forward_tokens=0))
    (row,) = metrics(out)
    assert math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"]) and row["grad_norm"] > 0
    from safetensors.torch import load_file

    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    if objective in TRL_FAMILY:
        zeros, ones = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.long)
        at_reference = get_objective(objective)(PairLogProbs(zeros, zeros, ones, ones, zeros, zeros)).losses.mean()
        assert row["loss"] == pytest.approx(at_reference.item(), rel=1e-4)
    if get_objective(objective).data == "listwise":
        # each conditional pair is a list of two (a joint pair has two instructions, a list one)
        summary = json.loads((out / "data.json").read_text())
        conditional = sum(1 for line in prefs.read_text().splitlines() if '"conditional"' in line)
        assert summary["lists"] == conditional and summary["responses"] == 2 * conditional
    if objective == "odpo":
        # at the reference z = 0 and every pair's scores differ by 7: −log σ(−α log 7) = log(1 + 7) at α = 1
        assert row["loss"] == pytest.approx(math.log(8), rel=1e-4)
    if get_objective(objective).family == "token-level":
        # at step 1 the policy is the reference: every per-token log-ratio (against the cached reference rows) and
        # every sequential KL (against the live reference forward) is 0, so the loss is ln 2
        assert row["loss"] == pytest.approx(math.log(2), rel=1e-4)
    if get_objective(objective).data == "unpaired":
        # the pairs split into examples (chosen desirable, rejected undesirable); at the reference KTO's loss is
        # λ(1 − σ(0)) = 1/2 per example, the mismatched sequences' KL being 0 too
        summary = json.loads((out / "data.json").read_text())
        n_pairs = sum(1 for line in prefs.read_text().splitlines() if line.strip())
        assert summary["examples"] == 2 * n_pairs and summary["desirable"] == summary["undesirable"] == n_pairs
        if objective == "kto":
            assert row["loss"] == pytest.approx(0.5, rel=1e-4)
