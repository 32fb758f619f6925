"""Iterative objectives (iterative_dpo, accelerated_po) and what they stand on: training from a saved adapter
with that policy (or APO's extrapolation of it) as the reference, and ``prefbench run``'s on-policy rounds."""

import json
import math

import pytest
import torch
import yaml

from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.logprobs import SequenceLogProbs
from prefbench.engine.reference import ReferencePolicy, extrapolated
from prefbench.engine.trainer import train
from prefbench.registry import PairLogProbs, get_objective

LN2 = math.log(2)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))


def stats(pw, pl, rw, rl):
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    ones = torch.ones(len(pw), dtype=torch.long)
    return PairLogProbs(t(pw), t(pl), ones, ones, t(rw), t(rl))


# ---- the objectives: DPO's loss, declared iterative ----

@pytest.mark.parametrize("name, params", [("iterative_dpo", {"beta": 0.1, "rounds": 3}),
                                          ("accelerated_po", {"beta": 0.1, "rounds": 3, "extrapolation": 0.3})])
def test_iterative_objectives_declare_rounds_and_their_paper_defaults(name, params):
    obj = get_objective(name)
    assert (obj.family, obj.iterative, obj.needs_reference, obj.span) == ("iterative", True, True, "response")
    assert obj.defaults == params


@pytest.mark.parametrize("name", ["iterative_dpo", "accelerated_po"])
def test_each_round_loss_is_the_sigmoid_loss_of_the_margin_against_the_given_reference(name):
    # hand numbers: Δ_w = −3 − (−4) = 1, Δ_l = −6 − (−5) = −1, z = 2; β = 0.5: −log σ(1) = log(1 + e^−1)
    s = stats([-3.0, -2.0], [-6.0, -2.0], [-4.0, -2.0], [-5.0, -2.0])
    out = get_objective(name)(s, beta=0.5)
    assert out.losses[0].item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-12)
    assert out.losses[1].item() == pytest.approx(LN2, rel=1e-12)    # policy == reference: ln 2
    assert out.chosen_rewards.tolist() == pytest.approx([0.5, 0.0]) and out.rejected_rewards.tolist() == \
        pytest.approx([-0.5, 0.0])
    # the rounds parameter is the run's, not the loss's
    assert torch.equal(get_objective(name)(s, beta=0.5, rounds=1).losses, out.losses)
    assert torch.equal(get_objective("dpo")(s, beta=0.5).losses, out.losses)


def test_apo_reference_extrapolates_the_log_probs_on_hand_numbers():
    # log π̂ = log π_start + α (log π_start − log π_previous); α = 0.3
    start = SequenceLogProbs(torch.tensor([-2.0, -5.0], dtype=torch.float64), torch.tensor([3, 4]),
                             torch.tensor([-9.0, -12.0], dtype=torch.float64), torch.tensor([7, 9]),
                             token_logps=torch.tensor([[-1.0, -1.0], [-4.0, -1.0]], dtype=torch.float64))
    previous = SequenceLogProbs(torch.tensor([-3.0, -4.0], dtype=torch.float64), torch.tensor([3, 4]),
                                torch.tensor([-9.5, -11.0], dtype=torch.float64), torch.tensor([7, 9]),
                                token_logps=torch.tensor([[-2.0, -1.0], [-2.0, -2.0]], dtype=torch.float64))
    out = extrapolated(start, previous, 0.3)
    assert out.token_logps.flatten().tolist() == pytest.approx([-0.7, -1.0, -4.6, -0.7], rel=1e-12)   # rows too
    assert out.response_logps.tolist() == pytest.approx([-2.0 + 0.3 * 1.0, -5.0 + 0.3 * -1.0], rel=1e-12)
    assert out.joint_logps.tolist() == pytest.approx([-9.0 + 0.3 * 0.5, -12.0 + 0.3 * -1.0], rel=1e-12)
    assert out.response_tokens.tolist() == [3, 4] and out.joint_tokens.tolist() == [7, 9]
    # α = 0 is the starting policy itself: iterative_dpo's reference
    zero = extrapolated(start, previous, 0.0)
    assert torch.equal(zero.response_logps, start.response_logps) and torch.equal(zero.joint_logps, start.joint_logps)
    # the APO loss on the extrapolated reference, re-derived: policy −1.5 / −5.0 (chosen/rejected) against
    # the reference −1.7 / −5.3 (extrapolated chosen, rejected): z = 0.2 − 0.3 = −0.1, β = 1
    s = PairLogProbs(torch.tensor([-1.5], dtype=torch.float64), torch.tensor([-5.0], dtype=torch.float64),
                     torch.tensor([3]), torch.tensor([4]), out.response_logps[:1], out.response_logps[1:])
    loss = get_objective("accelerated_po")(s, beta=1.0).losses.item()
    assert loss == pytest.approx(math.log(1 + math.exp(0.1)), rel=1e-12)


def test_an_objective_without_a_rounds_parameter_cannot_be_iterative():
    from prefbench.registry import ObjectiveError, Param, register_objective

    with pytest.raises(ObjectiveError, match="no 'rounds' parameter"):
        register_objective("broken_iterative", family="iterative", span="response", needs_reference=True,
                           iterative=True, params={"beta": Param(0.1)})


# ---- the engine: training from a saved adapter ----

def cfg(model_dir, data, out, **kw):
    base = {"model": str(model_dir), "data": str(data), "quantization": "none", "batch_size": 4, "max_steps": 2,
            "lr": 5e-3, "warmup_steps": 0, "save_every": 10, "output_dir": str(out), "objective": "dpo",
            "compute_dtype": "float32"}
    return TrainConfig(**{**base, **kw})


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_extrapolation_needs_a_starting_adapter():
    with pytest.raises(ConfigError, match="set init_adapter"):
        TrainConfig(extrapolation=0.3)
    with pytest.raises(ConfigError, match="extrapolation must be a finite number >= 0"):
        TrainConfig(init_adapter="a", extrapolation=-0.1)


@pytest.mark.parametrize("objective", ["dpo", "iterative_dpo"])
def test_training_from_an_adapter_starts_at_ln2_with_that_policy_as_reference(tiny_model_dir, prefs, tmp_path,
                                                                               objective):
    first = train(cfg(tiny_model_dir, prefs, tmp_path / "first", objective=objective))
    assert rows(first)[-1]["margin"] != 0    # the first run moved the policy away from the base model
    second = train(cfg(tiny_model_dir, prefs, tmp_path / "second", objective=objective, max_steps=1,
                       init_adapter=str(first / "adapter")))
    (row,) = rows(second)
    assert row["loss"] == pytest.approx(LN2, abs=1e-6) and row["margin"] == pytest.approx(0, abs=1e-6)


def test_prefbench_train_trains_one_round_and_says_so(tiny_model_dir, prefs, tmp_path, caplog):
    """Outside a run an iterative objective trains one round; --init-adapter continues from an earlier one, which
    is its reference (ln 2 at the first step)."""
    import logging

    from prefbench.cli import main

    first = train(cfg(tiny_model_dir, prefs, tmp_path / "first", objective="iterative_dpo"))
    caplog.set_level(logging.INFO, logger="prefbench")
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(prefs), "--quantization", "none",
            "--objective", "iterative_dpo", "--max-steps", "1", "--batch-size", "4", "--compute-dtype", "float32",
            "--init-adapter", str(first / "adapter"), "--output-dir", str(tmp_path / "next")]
    assert main(argv) == 0
    assert "iterative_dpo is iterative: this trains one round" in caplog.text
    (row,) = rows(tmp_path / "next")
    assert row["loss"] == pytest.approx(LN2, abs=1e-6)


@pytest.mark.parametrize("compute_dtype, quantization", [("bfloat16", "none"), ("float32", "4bit")])
def test_a_started_policy_is_its_reference_in_bfloat16_and_4bit_too(tiny_4bit_dir, prefs, tmp_path, compute_dtype,
                                                                    quantization):
    settings = {"objective": "iterative_dpo", "compute_dtype": compute_dtype, "quantization": quantization}
    first = train(cfg(tiny_4bit_dir, prefs, tmp_path / "first", **settings))
    second = train(cfg(tiny_4bit_dir, prefs, tmp_path / "second", max_steps=1, init_adapter=str(first / "adapter"),
                       **settings))
    # up to bfloat16 rounding, as for the base model's reference (tests/test_train.py)
    assert rows(second)[0]["loss"] == pytest.approx(LN2, abs=1e-3 if compute_dtype == "bfloat16" else 1e-6)


def test_reference_of_a_started_policy_and_of_its_extrapolation(tiny_model_dir, prefs, tmp_path):
    """The reference pass under ``ReferencePolicy(start)`` is the saved adapter's policy (as PEFT reloads it),
    APO's adds α times its difference from the base model's, and the model's own adapter weights survive."""
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from prefbench.engine.adapters import add_lora
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.logprobs import model_sequence_logprobs
    from prefbench.engine.models import load_base_model, load_tokenizer
    from prefbench.engine.reference import reference_logprobs
    from prefbench.formats.preferences import load_preferences

    first = train(cfg(tiny_model_dir, prefs, tmp_path / "first"))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    pairs = encode_pairs(load_preferences(prefs), tokenizer, 512)
    model = add_lora(load_base_model(str(tiny_model_dir), "none", "cpu", "float32"), 16, 32, 0.0, seed=7)
    own = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    pad = tokenizer.pad_token_id

    def reference(policy):
        return reference_logprobs(model, pairs, pad, {"test": 1}, packed=False, policy=policy)

    start_c, start_r = reference(ReferencePolicy(str(first / "adapter")))
    base_c, base_r = reference(ReferencePolicy())
    ext_c, ext_r = reference(ReferencePolicy(str(first / "adapter"), "", 0.5))
    zero_c, zero_r = reference(ReferencePolicy(str(first / "adapter"), "", 0.0))   # APO at α = 0: iterative DPO's
    assert torch.equal(zero_c.response_logps, start_c.response_logps) and torch.equal(zero_r.joint_logps,
                                                                                      start_r.joint_logps)
    assert all(torch.equal(v, get_peft_model_state_dict(model)[k]) for k, v in own.items())

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), first / "adapter").eval()
    with torch.no_grad():
        batch = pairs.batch(list(range(len(pairs))), pad, "cpu")
        independent = model_sequence_logprobs(reloaded, **batch)
    n = len(pairs)
    assert torch.allclose(start_c.response_logps, independent.response_logps[:n], atol=1e-5)
    assert torch.allclose(start_r.response_logps, independent.response_logps[n:], atol=1e-5)
    assert not torch.allclose(start_c.response_logps, base_c.response_logps, atol=1e-3)
    for ext, start, base in ((ext_c, start_c, base_c), (ext_r, start_r, base_r)):
        moved = start.response_logps + 0.5 * (start.response_logps - base.response_logps)
        assert torch.allclose(ext.response_logps, moved)
        assert torch.allclose(ext.joint_logps, 1.5 * start.joint_logps - 0.5 * base.joint_logps, atol=1e-5)
        assert torch.equal(ext.response_tokens, start.response_tokens)


def test_the_reference_cache_key_holds_the_adapters_content(tiny_model_dir, prefs, tmp_path):
    first = train(cfg(tiny_model_dir, prefs, tmp_path / "first"))
    adapter = str(first / "adapter")
    assert ReferencePolicy().key() == {}     # the base model's entries keep their key
    assert ReferencePolicy(adapter).key() != ReferencePolicy(adapter, "", 0.3).key() != \
        ReferencePolicy(adapter, adapter, 0.3).key()
    before = ReferencePolicy(adapter).key()
    weights = first / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))   # same path, new content
    assert ReferencePolicy(adapter).key() != before


def test_an_adapter_of_other_lora_settings_is_refused(tiny_model_dir, prefs, tmp_path):
    first = train(cfg(tiny_model_dir, prefs, tmp_path / "first", lora_r=4, lora_alpha=8))
    with pytest.raises(ConfigError, match=r"first/adapter: its r is 4, this run's LoRA has 16"):
        train(cfg(tiny_model_dir, prefs, tmp_path / "second", init_adapter=str(first / "adapter")))
    with pytest.raises(ConfigError, match="not a PEFT adapter folder"):
        train(cfg(tiny_model_dir, prefs, tmp_path / "third", init_adapter=str(tmp_path)))


# ---- the run: on-policy rounds ----

SPEC = {
    "name": "tiny-ifeval", "task": "ifeval-lite", "description": "test spec",
    "data": {"train_prompts": 6, "samples_per_prompt": 3, "max_new_tokens": 10, "min_gap": 0.0001,
             "temperature": 1.0, "top_p": 1.0, "keep_truncated": True},   # a random model rarely ends an answer
    "eval": {"prompts": 3, "max_new_tokens": 8, "variants": ["typo"], "kl_samples": 1},
    "train": {"max_steps": 5, "batch_size": 2, "lr": 5e-2, "warmup_steps": 0, "max_length": 512,
              "compute_dtype": "float32"},
    "objective_params": {"iterative_dpo": {"beta": 0.1, "rounds": 2}},
    "presets": {"smoke": {}},
}


def run_config(model_dir, spec_file, out, **kw):
    from prefbench.pipeline.config import RunConfig

    return RunConfig(**{"objectives": ["iterative_dpo"], "benchmark": str(spec_file), "preset": "smoke",
                        "model": str(model_dir), "quantization": "none", "output_dir": str(out), **kw})


@pytest.fixture()
def spec_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_two_rounds_of_iterative_dpo_in_a_run(tiny_model_dir, spec_file, tmp_path, monkeypatch):
    """Round 2 samples round 1's policy, starts from it with it as reference (loss ln 2 at its first step);
    the rounds share max_steps; a run killed between rounds resumes at round 2; generation uses the last
    round's adapter."""
    import prefbench.engine.trainer as train_mod
    import prefbench.pipeline.rounds as rounds_mod
    from prefbench.engine.adapters import with_adapter
    from prefbench.engine.generation import GenerationSettings, generate
    from prefbench.engine.models import load_inference_model, load_tokenizer
    from prefbench.pipeline.run import run
    from prefbench.util.files import read_jsonl

    out = tmp_path / "run"

    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(rounds_mod, "build_data", killed)
    with pytest.raises(KeyboardInterrupt):
        run(run_config(tiny_model_dir, spec_file, out))
    monkeypatch.undo()
    seed = out / "iterative_dpo" / "seed0"
    assert (seed / "round1/train/adapter").exists() and not (seed / "round2").exists()
    assert not (seed / "adapter").exists()

    loads = []     # the trainer's model loads on resuming: round 2's only
    load = train_mod.load_base_model
    monkeypatch.setattr(train_mod, "load_base_model", lambda *a, **k: loads.append(a) or load(*a, **k))
    results = run(run_config(tiny_model_dir, spec_file, out))
    monkeypatch.undo()
    assert len(loads) == 1

    # the same total optimizer steps as any objective, split 3 + 2, numbered through in the system's metrics
    steps = read_jsonl(seed / "metrics.jsonl")
    assert [(m["step"], m["round"]) for m in steps] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    round2 = read_jsonl(seed / "round2/train/metrics.jsonl")
    assert [m["loss"] for m in steps[3:]] == [m["loss"] for m in round2]
    # round 2's reference is round 1's final policy: its first step is at ln 2, with no margin
    assert round2[0]["loss"] == pytest.approx(LN2, abs=1e-6) and round2[0]["margin"] == pytest.approx(0, abs=1e-6)
    assert steps[2]["margin"] != pytest.approx(0, abs=1e-6)    # where round 1 ended

    # round 2's samples are those generate() gives with round 1's adapter, at round 2's sampling seed
    prompts = read_jsonl(seed / "round2/data/prompts.jsonl")
    assert prompts == read_jsonl(out / "data/prompts.jsonl")   # the run's training prompts
    data = SPEC["data"]
    settings = GenerationSettings(max_new_tokens=data["max_new_tokens"], do_sample=True, temperature=1.0, top_p=1.0,
                                  num_samples=data["samples_per_prompt"], seed=rounds_mod.round_seed(0, 2))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = load_inference_model(str(tiny_model_dir), "none", "float32")
    texts = [p["text"] for p in prompts]
    policy = generate(with_adapter(base, seed / "round1/train/adapter"), tokenizer, texts, settings)
    samples = read_jsonl(seed / "round2/data/samples.jsonl")
    assert [s["response"] for s in samples] == [c.text for cs in policy for c in cs]
    assert [s["response"] for s in samples] != [c.text for cs in generate(base, tokenizer, texts, settings) for c in cs]

    # rounds.json: each round's pairs, its samples' scores, its steps' means
    record = json.loads((seed / "rounds.json").read_text())
    assert record["steps"] == [3, 2] and [r["round"] for r in record["rounds"]] == [1, 2]
    assert [r["policy"] for r in record["rounds"]] == ["reference", "round1"]
    assert [r["data"] for r in record["rounds"]] == ["data", "iterative_dpo/seed0/round2/data"]
    for r, folder in zip(record["rounds"], (out / "data", seed / "round2/data")):
        scores = [s["score"] for s in read_jsonl(folder / "samples.jsonl")]
        pairs = [p for p in read_jsonl(folder / "train.jsonl") if p["kind"] == "conditional"]
        assert r["samples"] == len(scores) == 6 * 3 and r["score_mean"] == pytest.approx(sum(scores) / len(scores))
        assert r["score_std"] == pytest.approx(torch.tensor(scores, dtype=torch.float64).std(unbiased=False).item())
        assert r["pairs"] == len(pairs) > 0
        assert r["paired_prompts"] == pytest.approx(len({p["prompt_chosen"] for p in pairs}) / 6)
    round_steps = [read_jsonl(seed / f"round{k}/train/metrics.jsonl") for k in (1, 2)]
    for r, ms in zip(record["rounds"], round_steps):
        assert r["steps"] == len(ms) and r["loss"] == pytest.approx(sum(m["loss"] for m in ms) / len(ms))
        assert r["first_loss"] == ms[0]["loss"]
    assert record["rounds"][1]["sample_seed"] == rounds_mod.round_seed(0, 2)

    # the system is the last round's policy: its adapter where generate looks, its answers judged
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (seed / "adapter" / name).read_bytes() == (seed / "round2/train/adapter" / name).read_bytes()
    assert (out / "generations/iterative_dpo/seed0.jsonl").exists()
    (system,) = results["systems"]
    assert system["name"] == "iterative_dpo" and system["training"][0]["steps"] == 5
    assert system["training"][0]["pairs"] == sum(r["pairs"] for r in record["rounds"])


def test_apo_rounds_extrapolate_each_reference_from_the_two_last_policies(tiny_model_dir, spec_file, tmp_path):
    """Round 2's reference is round 1's policy extrapolated away from the base model, round 3's is round 2's
    extrapolated away from round 1's; each round samples and starts from the last trained policy."""
    from prefbench.pipeline.run import run
    from prefbench.util.files import read_jsonl

    out = tmp_path / "run"
    run(run_config(tiny_model_dir, spec_file, out, objectives=["accelerated_po"],
                   params={"accelerated_po": {"rounds": 3, "extrapolation": 0.5}}))
    seed = out / "accelerated_po" / "seed0"
    configs = [yaml.safe_load((seed / f"round{r}/train/config.yaml").read_text()) for r in (1, 2, 3)]
    adapter = lambda r: str(seed / f"round{r}/train/adapter")
    assert [(c["init_adapter"], c["extrapolate_from"], c["extrapolation"], c["max_steps"]) for c in configs] == \
        [("", "", 0.0, 2), (adapter(1), "", 0.5, 2), (adapter(2), adapter(1), 0.5, 1)]
    record = json.loads((seed / "rounds.json").read_text())
    assert record["extrapolation"] == 0.5 and record["steps"] == [2, 2, 1]
    # against an extrapolated reference the policy no longer starts at ln 2 (round 1 does: the base model)
    firsts = [read_jsonl(seed / f"round{r}/train/metrics.jsonl")[0] for r in (1, 2, 3)]
    assert firsts[0]["loss"] == pytest.approx(LN2, abs=1e-6)
    assert all(f["loss"] != pytest.approx(LN2, abs=1e-4) for f in firsts[1:])


@pytest.mark.parametrize("rounds, says", [(2.5, "rounds must be a whole number, got 2.5"),
                                          (6, "6 rounds need at least 6 optimizer steps, max_steps is 5")])
def test_rounds_a_run_cannot_train_fail_before_any_work(tiny_model_dir, spec_file, tmp_path, rounds, says):
    from prefbench.pipeline.run import run

    with pytest.raises(ConfigError, match=says):
        run(run_config(tiny_model_dir, spec_file, tmp_path / "run", params={"iterative_dpo": {"rounds": rounds}}))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, value", [("init_adapter", "adapter"), ("extrapolation", 0.3),
                                        ("extrapolate_from", "adapter")])
def test_a_benchmark_cannot_set_what_the_rounds_set(key, value):
    from prefbench.benchmark import BenchmarkError, load_benchmark

    with pytest.raises(BenchmarkError, match=f"train: '{key}' cannot be set here"):
        load_benchmark("ifeval-lite", overrides={"train": {key: value}})


def test_a_plan_counts_the_later_rounds_samples():
    from prefbench.pipeline.config import RunConfig, resolve
    from prefbench.pipeline.plan import work

    cfg = RunConfig(objectives=["dpo", "iterative_dpo", "accelerated_po"], params={"accelerated_po": {"rounds": 2}})
    spec, params = resolve(cfg)
    # the quick preset: 80 prompts x 4 samples by the reference; per seed (2) iterative_dpo samples them again in
    # its rounds 2 and 3, accelerated_po in its round 2; the steps are every objective's 20
    w = work(cfg, spec, params)
    assert w.samples == 80 * 4 * (1 + 2 * (2 + 1))
    assert w.steps == pytest.approx(20 * 3 * 2)
