"""Packed training batches: sequences side by side in one row without padding, a conditional pair's
instruction computed once, and log-probs taken from the LM head only where the objective scores tokens.
Every number is checked against the padded batch's, which the log-prob tests check against a direct
log-softmax."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prefbench.engine import attention
from prefbench.engine.formatting import collate
from prefbench.engine.logprobs import head_logprobs, model_sequence_logprobs, packed_sequence_logprobs
from prefbench.engine.packing import pack


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False)
    config._attn_implementation = attention.NAME
    return LlamaForCausalLM(config).double().eval()


def sequence(g, prompt: list[int], response_length: int):
    response = torch.randint(1, 50, (response_length,), generator=g).tolist()
    return prompt + response, [0] * len(prompt) + [1] * response_length


def pairs():
    """Two conditional pairs (same instruction, answers of different lengths) and two joint pairs."""
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(1, 50, (n,), generator=g).tolist() for n in (5, 7, 4, 6, 3)]
    chosen = [sequence(g, prompts[0], 3), sequence(g, prompts[1], 6), sequence(g, prompts[2], 2),
              sequence(g, prompts[3], 4)]
    rejected = [sequence(g, prompts[0], 5), sequence(g, prompts[1], 1), sequence(g, prompts[4], 4),
                sequence(g, prompts[0], 2)]
    return chosen, rejected


def padded(model, chosen, rejected):
    return model_sequence_logprobs(model, **collate(chosen + rejected, pad_id=0))


@pytest.mark.parametrize("share", [True, False])
def test_packed_log_probs_equal_the_padded_batch(model, share):
    chosen, rejected = pairs()
    batch = pack(chosen, rejected, joint=True, share_prefixes=share)
    with torch.no_grad():
        got, want = packed_sequence_logprobs(model, batch), padded(model, chosen, rejected)
    for field in ("response_logps", "joint_logps"):
        torch.testing.assert_close(getattr(got, field), getattr(want, field), rtol=0, atol=1e-10)
    assert torch.equal(got.response_tokens, want.response_tokens) and torch.equal(got.joint_tokens, want.joint_tokens)


def test_conditional_pairs_share_their_instruction_and_joint_pairs_do_not():
    chosen, rejected = pairs()
    shared, separate = pack(chosen, rejected, joint=True), pack(chosen, rejected, joint=True, share_prefixes=False)
    assert (shared.shared_pairs, separate.shared_pairs) == (2, 0)
    # a shared pair puts its instruction in the row once: 5 + 7 tokens fewer
    assert separate.length == sum(len(ids) for ids, _ in chosen + rejected)
    assert shared.length == separate.length - 5 - 7
    # the instruction's tokens are scored once and counted for both sides of the joint span
    assert shared.target.numel() == separate.target.numel() - (5 - 1) - (7 - 1)


def test_response_only_batches_skip_the_instruction_tokens(model):
    chosen, rejected = pairs()
    batch = pack(chosen, rejected, joint=False)
    assert batch.joint is None and batch.target.numel() == sum(sum(mask) for _, mask in chosen + rejected)
    with torch.no_grad():
        got, want = packed_sequence_logprobs(model, batch), padded(model, chosen, rejected)
    torch.testing.assert_close(got.response_logps, want.response_logps, rtol=0, atol=1e-10)
    assert torch.isnan(got.joint_logps).all()


def assert_same_gradients(model, chosen, rejected, batch):
    """Gradients of both spans' log-probs through the packed ``batch`` equal the padded batch's."""
    def grads(fn):
        model.zero_grad()
        out = fn()
        (out.response_logps.sum() + 0.5 * out.joint_logps.sum()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if n != "lm_head.weight"}

    model.train()
    try:
        packed = grads(lambda: packed_sequence_logprobs(model, batch))
        reference = grads(lambda: padded(model, chosen, rejected))
    finally:
        model.eval()
    for name, g in reference.items():
        torch.testing.assert_close(packed[name], g, rtol=1e-6, atol=1e-6, msg=name)   # SDPA kernels differ


def test_gradients_equal_the_padded_batch(model):
    chosen, rejected = pairs()
    assert_same_gradients(model, chosen, rejected, pack(chosen, rejected, joint=True))


def test_sft_examples_pack_as_single_sequences(model):
    chosen, _ = pairs()
    batch = pack(chosen, [], joint=True)
    assert batch.n_sequences == len(chosen) and batch.shared_pairs == 0
    with torch.no_grad():
        got = packed_sequence_logprobs(model, batch)
        want = model_sequence_logprobs(model, **collate(chosen, pad_id=0))
    torch.testing.assert_close(got.joint_logps, want.joint_logps, rtol=0, atol=1e-10)


def test_head_log_probs_and_their_gradient_equal_a_direct_log_softmax():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 8, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 50, (37,), generator=g)
    got = head_logprobs(hidden, weight, targets, chunk_elements=50 * 5)   # chunks of 5 positions
    want = (hidden @ weight.T).log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    upstream = torch.randn(37, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(got, hidden, upstream)
    (grad_want,) = torch.autograd.grad(want, hidden, upstream)
    torch.testing.assert_close(grad, grad_want, rtol=0, atol=1e-12)


def system_turn_pairs(common=(7, 8, 9)):
    """:func:`pairs` with every sequence opening with the same tokens (a chat template's system turn), one
    pair's instruction being nothing else."""
    chosen, rejected = pairs()
    g = torch.Generator().manual_seed(2)
    with_common = lambda side: [(list(common) + ids, [0] * len(common) + mask) for ids, mask in side]  # noqa: E731
    bare = sequence(g, list(common), 3), sequence(g, list(common), 2)
    return with_common(chosen) + [bare[0]], with_common(rejected) + [bare[1]]


def test_a_start_every_sequence_shares_is_computed_once_with_the_same_log_probs_and_gradients(model):
    chosen, rejected = system_turn_pairs()
    shared, separate = pack(chosen, rejected, joint=True), pack(chosen, rejected, joint=True, share_prefixes=False)
    # the 3 common tokens open the row once; the conditional pairs' instructions (3 + 5, 3 + 7, 3) once per pair
    assert shared.blocks[0] == attention.Block(0, 3)
    assert shared.length == separate.length - 3 * (len(chosen) + len(rejected) - 1) - 5 - 7
    assert shared.shared_pairs == 3
    with torch.no_grad():
        got, want = packed_sequence_logprobs(model, shared), padded(model, chosen, rejected)
    for field in ("response_logps", "joint_logps"):
        torch.testing.assert_close(getattr(got, field), getattr(want, field), rtol=0, atol=1e-10)
    assert_same_gradients(model, chosen, rejected, shared)
