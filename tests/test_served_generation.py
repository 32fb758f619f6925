"""Generation through an OpenAI-compatible server (``prefbench run --generator openai:MODEL@URL``): the requests a
tiny run sends to a stub server on 127.0.0.1 (model names, max_tokens, decoding settings, chat messages), the
generations and KL rows written from its replies, retries on 500 and 429, the cache a resumed run answers from,
and the KL of served samples computed locally against a direct float64 computation."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil

import pytest
import torch
import yaml

from prefbench.cli import main
from prefbench.engine.config import ConfigError
from prefbench.engine.formatting import PLAIN_TEMPLATE, encode
from prefbench.engine.generation import GenerationSettings
from prefbench.evaluation.served import (
    GenerationCache,
    GenerationError,
    ServedGenerator,
    parse_adapter_names,
)
from prefbench.evaluation.systems import System, systems_for
from prefbench.pipeline.config import RunConfig
from tests.chat_stub import ChatStub

# test_run.py's tiny spec: 3 eval prompts, each with 2 variants; one KL sample per original prompt
SPEC = {
    "name": "tiny-ifeval", "task": "ifeval-lite", "description": "served generation",
    "data": {"train_prompts": 6, "samples_per_prompt": 3, "max_new_tokens": 10, "min_gap": 0.0001,
             "temperature": 1.0, "top_p": 1.0, "keep_truncated": True},
    "eval": {"prompts": 3, "max_new_tokens": 8, "variants": ["typo", "distractor"], "kl_samples": 1},
    "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "max_length": 512},
    "objective_params": {"dpo": {"beta": 0.1}},
    "presets": {"smoke": {}},
}


def stub_reply(body: dict) -> dict:
    """The stub's answer, a pure function of the request: it names the model asked, ends ("stop") or is cut at
    the limit ("length") by the request's hash, and reports a token count."""
    h = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return {"choices": [{"index": 0, "finish_reason": ("stop", "length")[int(h, 16) % 2],
                         "message": {"role": "assistant", "content": f" {body['model']} answers {h}\n"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3 + int(h, 16) % 5}}


class StubServer(ChatStub):
    """The models in ``models`` are served (others: 404, as vLLM answers an adapter it does not serve)."""

    def __init__(self, models=("stub", "dpo-seed0")):
        self.models = set(models)
        super().__init__(self._reply)

    def _reply(self, request: dict):
        model = request["body"]["model"]
        if model not in self.models:
            return 404, {}, json.dumps({"error": {"message": f"The model `{model}` does not exist."}})
        return 200, {}, json.dumps(stub_reply(request["body"]))


@pytest.fixture
def server():
    srv = StubServer()
    yield srv
    srv.close()


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ a tiny run

def test_a_run_with_a_served_generator_asks_the_server_and_a_resumed_run_asks_nothing(tiny_model_dir, server,
                                                                                       tmp_path, monkeypatch, capsys):
    import prefbench.evaluation.generate as gen_stage

    def forbidden(*a, **k):
        raise AssertionError("the served run generated locally")

    monkeypatch.setattr(gen_stage, "generate", forbidden)
    monkeypatch.setattr(gen_stage, "generate_groups", forbidden)
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "run"
    argv = ["run", "--benchmark", str(spec_file), "--preset", "smoke", "--objectives", "dpo", "--model",
            str(tiny_model_dir), "--quantization", "none", "--output-dir", str(out),
            "--generator", f"openai:stub@{server.url}"]
    assert main(argv) == 0

    prompts = read_jsonl(out / "data/eval.jsonl")
    texts = [p["text"] for p in prompts]
    originals = [p["text"] for p in prompts if p["variant"] == "original"]
    assert len(texts) == 9 and len(originals) == 3
    bodies = [r["body"] for r in server.requests]
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    by_model = {m: [b for b in bodies if b["model"] == m] for m in ("stub", "dpo-seed0")}
    # the reference as the served base model: one greedy answer per prompt; the adapter by its name: its greedy
    # answers, then a sample per original prompt for the KL (temperature 1, top-p 1, seeded)
    assert len(bodies) == 9 + 9 + 3 and len(by_model["stub"]) == 9 and len(by_model["dpo-seed0"]) == 12
    greedy = [b for b in bodies if b["temperature"] == 0.0]
    sampled = [b for b in bodies if b["temperature"] != 0.0]
    assert all(set(b) == {"model", "messages", "max_tokens", "temperature"} for b in greedy)
    assert all({k: b[k] for k in ("model", "temperature", "top_p", "seed")} ==
               {"model": "dpo-seed0", "temperature": 1.0, "top_p": 1.0, "seed": 0} for b in sampled)
    assert {b["max_tokens"] for b in bodies} == {8}   # the spec's eval.max_new_tokens
    # the messages the chat template is applied to: the prompt as the user's turn, nothing else
    assert sorted(b["messages"][0]["content"] for b in by_model["stub"]) == sorted(texts)
    assert all(b["messages"] == [{"role": "user", "content": b["messages"][0]["content"]}] for b in bodies)
    assert sorted(b["messages"][0]["content"] for b in sampled) == sorted(originals)

    # the generations are the server's answers, as the local path records them
    for name, model in (("reference", "stub"), ("dpo/seed0", "dpo-seed0")):
        rows = read_jsonl(out / "generations" / f"{name}.jsonl")
        assert [r["prompt"] for r in rows] == texts
        for r in rows:
            body = {"model": model, "messages": [{"role": "user", "content": r["prompt"]}], "max_tokens": 8,
                    "temperature": 0.0}
            reply = stub_reply(body)
            choice = reply["choices"][0]
            assert r["response"] == choice["message"]["content"].strip() and r["response"].startswith(model)
            assert r["finished"] == (choice["finish_reason"] == "stop")
            assert (r["tokens"], r["words"]) == (reply["usage"]["completion_tokens"], 3)
    assert {r["finished"] for name in ("reference", "dpo/seed0")
            for r in read_jsonl(out / "generations" / f"{name}.jsonl")} == {True, False}
    # the KL rows: on the server's samples, computed locally (a 2-step adapter moves the policy a little)
    kl = read_jsonl(out / "kl/dpo/seed0.jsonl")
    assert [r["sample"].split()[0] for r in kl] == ["dpo-seed0"] * 3
    assert all(r["kl"] >= 0 for r in kl) and any(r["kl"] > 0 for r in kl)
    results = json.loads((out / "results.json").read_text())
    assert results["systems"][0]["kl"]["estimate"] >= 0
    assert yaml.safe_load((out / "config.yaml").read_text())["generator"] == f"openai:stub@{server.url}"
    cached = read_jsonl(out / "generation_cache.jsonl")
    assert len(cached) == 21 and {c["generator"] for c in cached} == {f"openai:stub@{server.url}"}

    # resumed without its generations: every answer comes from the cache, and the files come back the same
    before = {p: (out / p).read_text() for p in ("generations/reference.jsonl", "generations/dpo/seed0.jsonl",
                                                 "kl/dpo/seed0.jsonl")}
    shutil.rmtree(out / "generations")
    shutil.rmtree(out / "kl")
    asked = len(server.requests)
    assert main(argv) == 0
    assert len(server.requests) == asked
    assert {p: (out / p).read_text() for p in before} == before

    # a served run resumed without --generator would be generated locally: refused
    capsys.readouterr()
    assert main(argv[:-2]) == 2
    assert "different configuration (changed: generator)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the client

def generator(server, **kwargs) -> ServedGenerator:
    return ServedGenerator(f"openai:stub@{server.url}", backoff=0.01, **kwargs)


GREEDY = GenerationSettings(max_new_tokens=5)


def test_500_and_429_are_retried_and_the_answer_is_cached(server, sleeps, tmp_path):
    server.script = [(500, {}, "internal error"), (429, {"Retry-After": "2"}, "rate limited")]
    cache = GenerationCache(tmp_path / "cache.jsonl")
    [[answer]] = generator(server).generate(System("reference"), ["Name a fruit"], GREEDY, cache)
    assert len(server.requests) == 3 and sleeps == [0.01, 2.0]   # backoff * 2**0, then the server's Retry-After
    body = server.requests[-1]["body"]
    assert body == {"model": "stub", "messages": [{"role": "user", "content": "Name a fruit"}], "max_tokens": 5,
                    "temperature": 0.0}
    assert answer.content == stub_reply(body)["choices"][0]["message"]["content"]

    again = generator(server).generate(System("reference"), ["Name a fruit"], GREEDY,
                                       GenerationCache(tmp_path / "cache.jsonl"))
    assert again == [[answer]] and len(server.requests) == 3


def test_adapter_names_default_map_and_are_checked(server, tmp_path):
    systems = systems_for(["dpo", "ipo"], [0, 1])
    served = generator(server, adapters=parse_adapter_names("dpo-seed0=my-lora, ipo-seed1 = other"))
    served.check_systems(systems)
    assert [served.served_model(s) for s in systems] == ["stub", "my-lora", "dpo-seed1", "ipo-seed0", "other"]
    with pytest.raises(ConfigError, match="names 'dpo-sed0', which is not a system of this run.*'dpo-seed0'"):
        generator(server, adapters={"dpo-sed0": "x"}).check_systems(systems)
    with pytest.raises(ConfigError, match="NAME=SERVED_NAME"):
        parse_adapter_names("dpo-seed0")
    with pytest.raises(ConfigError, match="--generator-adapters .* --generator"):
        RunConfig(objectives=["dpo"], generator_adapters={"dpo-seed0": "x"})
    for spec in ("openai:stub", "local:stub@http://x", "openai:@http://x", "openai:stub@ftp://x"):
        with pytest.raises(ConfigError if "ftp" not in spec else GenerationError):
            ServedGenerator(spec)

    # an adapter the server does not serve fails at once (no retry), naming the status and the server's words
    cache = GenerationCache(tmp_path / "cache.jsonl")
    with pytest.raises(GenerationError, match=r"HTTP 404 .*The model `ipo-seed0` does not exist"):
        served.generate(systems[3], ["q"], GREEDY, cache)
    assert len(server.requests) == 1


def test_sampling_settings_the_plain_format_and_a_reply_without_content(server, tmp_path):
    cache = GenerationCache(tmp_path / "cache.jsonl")
    settings = GenerationSettings(max_new_tokens=7, do_sample=True, temperature=0.7, top_p=0.9, num_samples=2, seed=3)
    answers = generator(server).generate(System("dpo/seed0", "dpo", 0), ["a", "b"], settings, cache, PLAIN_TEMPLATE)
    assert [len(a) for a in answers] == [2, 2]
    bodies = sorted((r["body"] for r in server.requests), key=lambda b: (b["messages"][0]["content"], b["seed"]))
    assert [(b["messages"][0]["content"], b["seed"]) for b in bodies] == [("a", 3), ("a", 4), ("b", 3), ("b", 4)]
    assert all((b["model"], b["max_tokens"], b["temperature"], b["top_p"], b["chat_template"]) ==
               ("dpo-seed0", 7, 0.7, 0.9, PLAIN_TEMPLATE) for b in bodies)
    # chat messages (a conversation) go as they are
    generator(server).generate(System("reference"), [[{"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "hello"},
                                                      {"role": "user", "content": "bye"}]], GREEDY, cache)
    assert [m["role"] for m in server.requests[-1]["body"]["messages"]] == ["user", "assistant", "user"]

    server.script = [(200, {}, '{"oops": 1}')]
    with pytest.raises(GenerationError, match=r"no choices\[0\].message.content in the reply to stub: \{'oops': 1\}"):
        generator(server).generate(System("reference"), ["new"], GREEDY, cache)


# ------------------------------------------------------------------------------------------------ the KL

def test_text_kl_of_served_samples_matches_a_direct_float64_computation(tiny_model_dir):
    """Samples given as text are tokenized after their prompt (an ended one with its end-of-turn token) and
    scored by full forwards of policy and reference: Σ_t KL(π(·|x, y<t) ‖ π_ref(·|x, y<t))."""
    from prefbench.engine.adapters import add_lora
    from prefbench.engine.kl import text_kl
    from prefbench.engine.models import load_base_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    reference = load_base_model(str(tiny_model_dir), "none").eval()
    policy = add_lora(copy.deepcopy(reference), r=4, alpha=8, dropout=0.0, seed=0)
    prompts = ["Name a fruit", "red blue", "Name a fruit", "Answer briefly: what is the capital?"]
    responses = [(" apple\n", True), ("green ocean", False), (" apple\n", False), ("Paris is the capital.", True)]
    assert text_kl(policy, reference, tok, prompts, responses) == pytest.approx([0.0] * 4, abs=1e-6)   # B = 0

    torch.manual_seed(1)
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    got = text_kl(policy, reference, tok, prompts, responses, batch_size=3)   # batches split the samples
    for prompt, (text, ended), value in zip(prompts, responses, got):
        ids, mask = encode(tok, prompt, text, ends=ended)
        x = torch.tensor([ids])
        with torch.no_grad():
            lp = torch.log_softmax(policy(input_ids=x).logits.double(), -1)[0]
            lq = torch.log_softmax(reference(input_ids=x).logits.double(), -1)[0]
        start = len(ids) - sum(mask)
        direct = sum(float((lp[t].exp() * (lp[t] - lq[t])).sum()) for t in range(start - 1, len(ids) - 1))
        assert direct > 0.01 and value == pytest.approx(direct, rel=1e-4)
    # the end-of-turn token's term is there only for the sample that ended
    assert got[0] > got[2]
