"""Log-probs from a causal LM: both spans, against a direct log_softmax, and under either padding side."""

import pytest
import torch

from prefbench import get_objective
from prefbench.engine.logprobs import model_sequence_logprobs, pair_logprobs, token_logprobs

PAD = 0


def batch(sequences, prompt_lengths, side):
    """Pad token lists on ``side``; response_mask marks tokens after each prompt."""
    width = max(map(len, sequences))
    ids, attn, resp = [], [], []
    for seq, plen in zip(sequences, prompt_lengths):
        pad = [PAD] * (width - len(seq))
        real = [1] * len(seq)
        r = [0] * plen + [1] * (len(seq) - plen)
        if side == "left":
            ids.append(pad + seq), attn.append([0] * len(pad) + real), resp.append([0] * len(pad) + r)
        else:
            ids.append(seq + pad), attn.append(real + [0] * len(pad)), resp.append(r + [0] * len(pad))
    return torch.tensor(ids), torch.tensor(attn), torch.tensor(resp)


SEQS = [[5, 9, 13, 2, 44, 7, 8], [3, 4, 21, 22, 23], [11, 12, 13, 14, 15, 16, 17, 18, 19]]
PROMPTS = [3, 2, 6]


def direct(model, seq, plen):
    """Unpadded single-sequence sums computed the textbook way: log_softmax, then gather."""
    with torch.no_grad():
        logp = model(torch.tensor([seq])).logits[0].log_softmax(-1)
    per_token = [logp[t - 1, seq[t]].item() for t in range(1, len(seq))]
    return sum(per_token[plen - 1:]), len(seq) - plen, sum(per_token), len(seq) - 1


@pytest.mark.parametrize("side", ["left", "right"])
def test_spans_match_direct_computation(tiny_lm, side):
    ids, attn, resp = batch(SEQS, PROMPTS, side)
    with torch.no_grad():
        got = model_sequence_logprobs(tiny_lm, ids, attn, resp)
    for i, (seq, plen) in enumerate(zip(SEQS, PROMPTS)):
        r_sum, r_n, j_sum, j_n = direct(tiny_lm, seq, plen)
        assert got.response_logps[i].item() == pytest.approx(r_sum, abs=1e-5)
        assert got.joint_logps[i].item() == pytest.approx(j_sum, abs=1e-5)
        assert (got.response_tokens[i].item(), got.joint_tokens[i].item()) == (r_n, j_n)


def test_left_and_right_padding_agree(tiny_lm):
    with torch.no_grad():
        left = model_sequence_logprobs(tiny_lm, *batch(SEQS, PROMPTS, "left"))
        right = model_sequence_logprobs(tiny_lm, *batch(SEQS, PROMPTS, "right"))
    torch.testing.assert_close(left.response_logps, right.response_logps, rtol=0, atol=1e-5)
    torch.testing.assert_close(left.joint_logps, right.joint_logps, rtol=0, atol=1e-5)


def test_chunked_token_logprobs_equal_full_log_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 37, 101, generator=g)
    targets = torch.randint(0, 101, (3, 37), generator=g)
    expected = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    for chunk_elements in (1, 3 * 8 * 101, 10**9):   # one position, 8 positions, everything at once
        torch.testing.assert_close(token_logprobs(logits, targets, chunk_elements), expected)
    assert token_logprobs(logits.bfloat16(), targets).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_token_logprobs_give_the_log_softmax_gradient_and_keep_no_float32_copy(dtype):
    """The hand-written backward equals autograd through log_softmax, and only the logits (no float32
    copy) and per-position [B, T] tensors are kept for the backward pass."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 50, 300, generator=g).to(dtype)
    targets = torch.randint(0, 300, (4, 50), generator=g)
    weights = torch.randn(4, 50, generator=g)
    direct = base.float().clone().requires_grad_()
    expected = (direct.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1) * weights).sum()
    expected.backward()
    for chunk_elements in (1, 4 * 7 * 300, 10**9):
        logits = base.clone().requires_grad_()
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size() if t.dtype.is_floating_point else 0)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = (token_logprobs(logits, targets, chunk_elements) * weights).sum()
        loss.backward()
        torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-5, atol=1e-4)
        tol = dict(rtol=0, atol=1e-6) if dtype == torch.float32 else dict(rtol=0.02, atol=1e-3)
        torch.testing.assert_close(logits.grad.float(), direct.grad, **tol)
        assert logits.grad.dtype == dtype
        assert sum(saved) <= base.numel() * base.element_size() + 2 * 4 * weights.numel()


def test_jpo_equals_dpo_when_instructions_are_shared(tiny_lm):
    """With x_w == x_l the instruction's log-prob appears in both joint sums and cancels in z."""
    prompt = [5, 9, 13, 2]
    chosen, rejected = prompt + [44, 7, 8], prompt + [30, 31]
    ref_model = type(tiny_lm)(tiny_lm.config).double().eval()  # a different "reference" network
    with torch.no_grad():
        pol = [model_sequence_logprobs(tiny_lm, *batch([s], [4], "right")) for s in (chosen, rejected)]
        ref = [model_sequence_logprobs(ref_model, *batch([s], [4], "right")) for s in (chosen, rejected)]
    jpo = get_objective("jpo")(pair_logprobs("joint", *pol, *ref)).losses
    dpo = get_objective("dpo")(pair_logprobs("response", *pol, *ref)).losses
    assert abs(jpo.item() - torch.log(torch.tensor(2.0)).item()) > 1e-3  # a non-trivial comparison
    assert jpo.item() == pytest.approx(dpo.item(), abs=1e-5)
