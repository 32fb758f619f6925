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


def test_greedy_with_several_samples_is_refused():
    with pytest.raises(ValueError, match="do_sample"):
        GenerationSettings(num_samples=2)


def test_kl_is_zero_for_an_untrained_adapter_and_matches_a_direct_float64_computation(tiny_model_dir):
    import copy

    from prefbench.engine.adapters import with_adapter
    from prefbench.engine.kl import response_kl

    tok = load_tokenizer(str(tiny_model_dir))
    reference = load_base_model(str(tiny_model_dir), "none").eval()
    lora = add_lora(copy.deepcopy(reference), r=4, alpha=8, dropout=0.0, seed=0)
    prompts = ["Name a fruit", "red blue"]
    responses = [Completion("apple banana", finished=True, tokens=3), Completion("ocean", finished=True, tokens=2)]
    assert response_kl(lora, reference, tok, prompts, responses) == pytest.approx([0.0, 0.0], abs=1e-6)  # B = 0

    torch.manual_seed(1)
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    got = response_kl(lora, reference, tok, prompts, responses, batch_size=1)
    lora.save_pretrained(tiny_model_dir.parent / "kl-adapter")
    merged = with_adapter(reference, tiny_model_dir.parent / "kl-adapter")
    assert response_kl(merged, reference, tok, prompts, responses) == pytest.approx(got, rel=1e-4)

    from prefbench.engine.formatting import encode

    cut = response_kl(lora, reference, tok, prompts, [Completion(r.text, False, r.tokens) for r in responses])
    for (prompt, response), value, value_cut in zip(zip(prompts, responses), got, cut):
        ids, mask = encode(tok, prompt, response.text)
        x = torch.tensor([ids])
        with torch.no_grad():
            lp = torch.log_softmax(lora(input_ids=x).logits.double(), -1)[0]
            lq = torch.log_softmax(reference(input_ids=x).logits.double(), -1)[0]
        per_position = [float((lp[t].exp() * (lp[t] - lq[t])).sum()) for t in range(len(ids) - 1) if mask[t + 1]]
        assert sum(per_position) > 0.01
        assert value == pytest.approx(sum(per_position), rel=1e-4)
        # a response cut at the token limit has no end-of-turn position: the last term is not counted
        assert value_cut == pytest.approx(sum(per_position[:-1]), rel=1e-4)


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
