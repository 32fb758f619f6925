"""Batched generation and the KL estimate on a tiny random model saved to disk."""

import pytest
import torch

from prefbench.generation import GenerationSettings, generate
from prefbench.models import add_lora, load_base_model, load_tokenizer

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
    from prefbench.kl import response_kl

    tok = load_tokenizer(str(tiny_model_dir))
    model = add_lora(load_base_model(str(tiny_model_dir), "none"), r=4, alpha=8, dropout=0.0, seed=0)
    prompts, responses = ["Name a fruit", "red blue"], ["apple banana", "ocean"]
    assert response_kl(model, tok, prompts, responses) == pytest.approx([0.0, 0.0], abs=1e-6)  # lora_B starts at 0

    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    got = response_kl(model, tok, prompts, responses, batch_size=1)

    from prefbench.formatting import encode

    for (prompt, response), value in zip(zip(prompts, responses), got):
        ids, mask = encode(tok, prompt, response)
        x = torch.tensor([ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=x).logits.double(), -1)[0]
            with model.disable_adapter():
                lq = torch.log_softmax(model(input_ids=x).logits.double(), -1)[0]
        expected = sum(float((lp[t].exp() * (lp[t] - lq[t])).sum()) for t in range(len(ids) - 1) if mask[t + 1])
        assert expected > 0.01
        assert value == pytest.approx(expected, rel=1e-4)
