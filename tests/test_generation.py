"""Batched generation and the KL estimate on a tiny random model saved to disk."""

import pytest
import torch

from prefbench.engine.adapters import add_lora
from prefbench.engine.generation import Completion, GenerationSettings, generate
from prefbench.engine.models import load_base_model, load_tokenizer

PROMPTS = ["Name a fruit", "List two fruits as bullet points please", "red", "Answer briefly: what is the capital?"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_base_model(str(tiny_model_dir), "none"), load_tokenizer(str(tiny_model_dir))


def test_batched_greedy_equals_one_prompt_at_a_time(tiny):
    """Left padding and length sorting must not change any answer."""
    model, tok = tiny
    settings = GenerationSettings(max_new_tokens=8, batch_size=4)
    batched = generate(model, tok, PROMPTS, settings)
    single = [generate(model, tok, [p], settings)[0] for p in PROMPTS]
    assert batched == single
    assert all(len(a) == 1 for a in batched)


def test_sampling_is_seeded_and_gives_num_samples_each(tiny):
    model, tok = tiny
    settings = GenerationSettings(max_new_tokens=6, do_sample=True, num_samples=3, batch_size=2, seed=7)
    a, b = generate(model, tok, PROMPTS, settings), generate(model, tok, PROMPTS, settings)
    assert a == b
    assert [len(x) for x in a] == [3, 3, 3, 3]
    other = generate(model, tok, PROMPTS, GenerationSettings(max_new_tokens=6, do_sample=True, num_samples=3,
                                                             batch_size=2, seed=8))
    assert other != a


def _hf_greedy(model, tok, prompts, max_new_tokens):
    """transformers' own greedy generate, one prompt at a time: new tokens up to and including end-of-turn."""
    from prefbench.engine.formatting import encode_prompt

    out = []
    for p in prompts:
        ids = torch.tensor([encode_prompt(tok, p)])
        with torch.no_grad():
            new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
        out.append(new[:new.index(tok.eos_token_id) + 1] if tok.eos_token_id in new else new)
    return out


# 1: an ended row leaves the batch at once; 0: ended rows decode padding until the whole batch has ended
@pytest.fixture(params=[1, 0], ids=["rows-leave-at-once", "ended-rows-stay"])
def compact_at(request, monkeypatch):
    from prefbench.engine import generation

    monkeypatch.setattr(generation, "COMPACT_AT", request.param)
    return request.param


def test_greedy_equals_transformers_generate_as_rows_end_at_different_steps(tiny, compact_at):
    """The decoding loop drops ended rows from the batch and its cache (or decodes them further, unread): the
    other rows' answers must be what transformers' greedy generate gives each prompt alone."""
    import copy

    model, tok = tiny
    free = _hf_greedy(model, tok, PROMPTS, 10)
    # an end-of-turn token each prompt's free-running answer reaches at a different step (or never)
    tok = copy.deepcopy(tok)
    tok.eos_token = tok.convert_ids_to_tokens(free[1][4])
    expected = _hf_greedy(model, tok, PROMPTS, 10)
    assert sorted({len(e) for e in expected}) != [10], "the test needs rows that end early"
    got = generate(model, tok, PROMPTS, GenerationSettings(max_new_tokens=10, batch_size=4))
    for [c], e in zip(got, expected):
        assert c.tokens == len(e) and c.finished == (e[-1] == tok.eos_token_id)
        assert c.text == tok.decode(e, skip_special_tokens=True).strip()


def test_a_sampled_row_does_not_depend_on_its_batch(tiny, compact_at):
    """Each row draws from its own stream: alone or next to other prompts and greedy rows, the same samples."""
    from prefbench.engine.generation import generate_groups

    model, tok = tiny
    sampled = GenerationSettings(max_new_tokens=6, do_sample=True, num_samples=2, seed=3, temperature=0.8, top_p=0.9)
    together = generate_groups(model, tok, [(PROMPTS, sampled), (PROMPTS, GenerationSettings(max_new_tokens=6))])
    alone = generate(model, tok, PROMPTS, GenerationSettings(max_new_tokens=6, do_sample=True, num_samples=2, seed=3,
                                                             temperature=0.8, top_p=0.9, batch_size=1))
    assert together[0] == alone
    assert together[1] == generate(model, tok, PROMPTS, GenerationSettings(max_new_tokens=6))


def test_greedy_with_several_samples_is_refused():
    with pytest.raises(ValueError, match="do_sample"):
        GenerationSettings(num_samples=2)


def test_kl_is_zero_for_an_untrained_adapter_and_matches_a_direct_float64_computation(tiny_model_dir):
    """The KL of samples drawn with their logits kept, against full forwards of policy and reference in
    float64 over prompt + sampled ids; finished samples (their end-of-turn term included) and samples cut at
    the token limit (no such term) alike."""
    import copy

    from prefbench.engine.adapters import with_adapter
    from prefbench.engine.formatting import encode_prompt
    from prefbench.engine.kl import response_kl

    tok = load_tokenizer(str(tiny_model_dir))
    reference = load_base_model(str(tiny_model_dir), "none").eval()
    lora = add_lora(copy.deepcopy(reference), r=4, alpha=8, dropout=0.0, seed=0)
    prompts = ["Name a fruit", "red blue", "Answer briefly: what is the capital?"]
    sampling = GenerationSettings(max_new_tokens=6, do_sample=True, num_samples=2, seed=5, keep_logits=True)

    def samples(policy):
        flat = [(p, c) for p, cs in zip(prompts, generate(policy, tok, prompts, sampling)) for c in cs]
        return [p for p, _ in flat], [c for _, c in flat]

    assert response_kl(reference, tok, *samples(lora)) == pytest.approx([0.0] * 6, abs=1e-6)   # B = 0

    torch.manual_seed(1)
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    # an end-of-turn token the first sample reaches at its second step: samples that end and samples cut at
    # the token limit are both covered
    tok = copy.deepcopy(tok)
    tok.eos_token = tok.convert_ids_to_tokens(samples(lora)[1][0].ids[1])
    flat_prompts, drawn = samples(lora)
    assert {c.finished for c in drawn} == {True, False}
    got = response_kl(reference, tok, flat_prompts, drawn)
    for prompt, sample, value in zip(flat_prompts, drawn, got):
        head = encode_prompt(tok, prompt)
        x = torch.tensor([head + list(sample.ids)])
        with torch.no_grad():
            lp = torch.log_softmax(lora(input_ids=x).logits.double(), -1)[0]
            lq = torch.log_softmax(reference(input_ids=x).logits.double(), -1)[0]
        positions = range(len(head) - 1, len(head) - 1 + sample.tokens)   # each predicts one sampled token
        direct = sum(float((lp[t].exp() * (lp[t] - lq[t])).sum()) for t in positions)
        assert sample.tokens == len(sample.ids) == len(sample.logits)
        assert direct > 0.01 and value == pytest.approx(direct, rel=1e-4)

    lora.save_pretrained(tiny_model_dir.parent / "kl-adapter")
    merged = with_adapter(reference, tiny_model_dir.parent / "kl-adapter")
    assert response_kl(reference, tok, *samples(merged)) == pytest.approx(got, rel=1e-4)
    with pytest.raises(ValueError, match="keep_logits"):
        response_kl(reference, tok, flat_prompts[:1], [Completion("x", True, 1, ids=(5,))])


def test_completions_say_whether_they_ended(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_base_model(str(tiny_model_dir), "none").eval()
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] = 0.0
        never = generate(model, tok, PROMPTS[:2], GenerationSettings(max_new_tokens=5, batch_size=2))
        model.lm_head.weight[tok.eos_token_id] = 100.0 * model.model.norm.weight.sign()
        at_once = generate(model, tok, PROMPTS[:2], GenerationSettings(max_new_tokens=5, batch_size=2))
    assert [(c.finished, c.tokens) for [c] in never] == [(False, 5), (False, 5)]
    assert [(c.finished, c.tokens, c.text) for [c] in at_once] == [(True, 1, ""), (True, 1, "")]


def test_dequantized_copy_computes_what_the_4bit_model_computes(tiny_4bit_dir):
    from prefbench.engine.models import dequantized

    quantized = load_base_model(str(tiny_4bit_dir), "4bit")
    full = dequantized(quantized, str(tiny_4bit_dir))
    assert not any("4bit" in type(m).__name__ for m in full.modules())
    x = torch.randint(0, 200, (2, 16))
    with torch.no_grad():
        a, b = quantized(input_ids=x).logits, full(input_ids=x).logits
        original = load_base_model(str(tiny_4bit_dir), "none")(input_ids=x).logits
    quantization_error = (original - a).abs().max()
    assert quantization_error > 1e-3                      # NF4 really changed the weights ...
    assert torch.allclose(a, b, rtol=0, atol=1e-5)       # ... and the copy computes exactly what the 4-bit model does
