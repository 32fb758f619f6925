"""Token-level statistics in the engine (TOKEN_STATISTICS): each span token's log-prob as [sequences, T] rows,
and the per-position KL from the reference's next-token distribution to the policy's, summed over the span.
Checked against a direct log-softmax of the whole model's logits, between the packed and the padded path, at
the reference (step 0: KL and its gradient exactly 0), and through the reference cache."""

import dataclasses

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prefbench.engine import attention
from prefbench.engine.adapters import add_lora
from prefbench.engine.formatting import collate
from prefbench.engine.logprobs import (
    head_kl,
    model_sequence_logprobs,
    packed_sequence_logprobs,
    pair_logprobs,
    token_kl,
)
from prefbench.engine.packing import pack
from tests.test_packing import pairs

BOTH = ("token_logps", "sequence_kl")


def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False)
    config._attn_implementation = attention.NAME
    return LlamaForCausalLM(config).double()


@pytest.fixture(scope="module")
def policy():
    """A float64 LoRA model whose adapter has moved (B random, not 0), so policy and reference differ."""
    model = add_lora(tiny_llama(), r=4, alpha=8, dropout=0.0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.train()


@pytest.fixture()
def initial():
    """A float64 LoRA model as training starts: B = 0, so the policy is the reference."""
    return add_lora(tiny_llama(), r=4, alpha=8, dropout=0.0).train()


def direct(model, sequences, span):
    """Independent float64 reference: per-token log-probs and per-position KL(p_ref ‖ p_θ) of ``span``, one
    sequence at a time, from full log-softmaxes of the policy's and the adapter-free model's logits."""
    logps, kls = [], []
    for ids, mask in sequences:
        x = torch.tensor([ids])
        logp = torch.log_softmax(model(input_ids=x).logits[0, :-1], -1)
        with torch.no_grad(), model.disable_adapter():
            ref_logp = torch.log_softmax(model(input_ids=x).logits[0, :-1], -1)
        scored = [t for t in range(1, len(ids)) if span == "joint" or mask[t] == 1]
        logps.append(torch.stack([logp[t - 1, ids[t]] for t in scored]))
        kls.append(torch.stack([(ref_logp[t - 1].exp() * (ref_logp[t - 1] - logp[t - 1])).sum() for t in scored]))
    return logps, kls


def padded(model, chosen, rejected, span, statistics=BOTH):
    return model_sequence_logprobs(model, **collate(chosen + rejected, pad_id=0), statistics=statistics, span=span)


@pytest.mark.parametrize("span", ["response", "joint"])
def test_token_rows_and_kl_equal_a_direct_computation(policy, span):
    chosen, rejected = pairs()
    got = packed_sequence_logprobs(policy, pack(chosen, rejected, joint=True), BOTH, span)
    logps, kls = direct(policy, chosen + rejected, span)
    width = max(len(v) for v in logps)
    assert got.token_logps.shape == (8, width)
    for k, (row, kl) in enumerate(zip(logps, kls)):
        n = len(row)
        torch.testing.assert_close(got.token_logps[k, :n], row, rtol=0, atol=1e-12)
        assert torch.equal(got.token_logps[k, n:], torch.zeros(width - n, dtype=torch.float64))
        torch.testing.assert_close(got.kl[k], kl.sum(), rtol=0, atol=1e-12)
    assert (got.kl > 0).all()


def left_to_right(rows):
    """Each row's values added up in order, in their dtype, as the packed path adds a sequence's tokens into its
    sum (cumsum would accumulate float32 in float64)."""
    total = torch.zeros(rows.shape[0], dtype=rows.dtype)
    for column in rows.T:
        total = total + column
    return total


@pytest.mark.parametrize("span", ["response", "joint"])
def test_token_rows_add_up_to_the_span_sums_exactly(policy, span):
    """The rows hold the very terms of the per-sequence sums the engine computes without token statistics: added
    up in sequence order they give those sums bit for bit (and the sums themselves are unchanged)."""
    chosen, rejected = pairs()
    batch = pack(chosen, rejected, joint=True)
    with torch.no_grad():
        tokens = packed_sequence_logprobs(policy, batch, ("token_logps",), span)
        plain = packed_sequence_logprobs(policy, batch)
    assert torch.equal(left_to_right(tokens.token_logps), plain.span(span)[0])
    assert torch.equal(tokens.span(span)[0], plain.span(span)[0])
    counts = tokens.span(span)[1]
    assert (tokens.token_logps.ne(0).sum(-1) == counts).all() and tokens.token_logps.shape[1] == counts.max()


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("span", ["response", "joint"])
def test_packed_equals_padded(policy, span, share):
    chosen, rejected = pairs()
    got = packed_sequence_logprobs(policy, pack(chosen, rejected, joint=True, share_prefixes=share), BOTH, span)
    want = padded(policy, chosen, rejected, span)
    torch.testing.assert_close(got.token_logps, want.token_logps, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.kl, want.kl, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.span(span)[0], want.span(span)[0], rtol=0, atol=1e-12)


def test_left_and_right_padding_agree(policy):
    """The padded path's rows are left-aligned whichever side the padding is on."""
    chosen, rejected = pairs()
    right = collate(chosen + rejected, pad_id=0)
    shifts = (right["attention_mask"] == 0).sum(-1)
    left = {k: torch.stack([row.roll(int(n)) for row, n in zip(v, shifts)]) for k, v in right.items()}
    assert (left["attention_mask"][:, 0] == 0).any()
    with torch.no_grad():
        a = model_sequence_logprobs(policy, **right, statistics=BOTH, span="joint")
        b = model_sequence_logprobs(policy, **left, statistics=BOTH, span="joint")
    torch.testing.assert_close(a.token_logps, b.token_logps, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.kl, b.kl, rtol=0, atol=1e-12)


def test_packed_and_padded_gradients_agree(policy):
    """The same loss of both statistics gives the same adapter gradient on both paths."""
    chosen, rejected = pairs()
    weights = torch.linspace(0.5, 1.5, 8, dtype=torch.float64)

    def grads(stats):
        policy.zero_grad()
        ((stats.token_logps.sum(-1) - 3 * stats.kl) * weights).sum().backward()
        return [p.grad.clone() for p in policy.parameters() if p.requires_grad]

    packed = grads(packed_sequence_logprobs(policy, pack(chosen, rejected, joint=True), BOTH, "response"))
    for a, b in zip(packed, grads(padded(policy, chosen, rejected, "response"))):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)   # SDPA kernels differ (as in test_packing)
    assert any(g.abs().sum() > 0 for g in packed)


@pytest.mark.parametrize("path", ["packed", "padded"])
def test_kl_and_its_gradient_are_zero_at_the_reference(initial, path):
    """Step 0: the adapter adds exactly 0, so p_θ = p_ref position by position and d KL / d logits = p_θ − p_ref = 0."""
    chosen, rejected = pairs()
    if path == "packed":
        stats = packed_sequence_logprobs(initial, pack(chosen, rejected, joint=True), BOTH, "response")
    else:
        stats = padded(initial, chosen, rejected, "response")
    assert torch.equal(stats.kl, torch.zeros(8, dtype=torch.float64))
    stats.kl.sum().backward()
    trainable = [p for p in initial.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.equal(p.grad, torch.zeros_like(p)) for p in trainable)
    assert initial.training, "the reference forward restores train mode"


def test_reference_forward_draws_no_random_numbers(policy):
    """Dropout is off in the reference forward, so a training run's dropout masks do not shift."""
    chosen, rejected = pairs()
    torch.manual_seed(5)
    packed_sequence_logprobs(policy, pack(chosen, rejected, joint=True), ("sequence_kl",), "response")
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)


def test_without_token_statistics_nothing_changes(policy):
    """DPO and every objective without ``statistics`` get exactly today's numbers (and no extra fields)."""
    chosen, rejected = pairs()
    batch = pack(chosen, rejected, joint=True)
    with torch.no_grad():
        plain = packed_sequence_logprobs(policy, batch)
        rows = packed_sequence_logprobs(policy, batch, ("token_logps",), "joint")
    assert plain.token_logps is None and plain.kl is None
    assert torch.equal(plain.response_logps, rows.response_logps)   # the other span untouched


# ---------------------------------------------------------------- the KL's autograd functions


def plain_kl(logits, ref_logits):
    logp, ref_logp = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


def test_head_kl_matches_plain_autograd():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ref_hidden = torch.randn(7, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(11, 5, generator=g, dtype=torch.float64)
    upstream = torch.randn(7, generator=g, dtype=torch.float64)
    got = head_kl(hidden, ref_hidden, weight, chunk_elements=3 * 11)     # 3 positions a chunk: chunks don't divide N
    want = plain_kl(hidden @ weight.T, ref_hidden @ weight.T)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-13)
    (grad_got,) = torch.autograd.grad(got, hidden, upstream)
    (grad_want,) = torch.autograd.grad(want, hidden, upstream)
    torch.testing.assert_close(grad_got, grad_want, rtol=0, atol=1e-13)
    assert torch.autograd.gradcheck(lambda h: head_kl(h, ref_hidden, weight, chunk_elements=2 * 11), (hidden,))


def test_token_kl_matches_plain_autograd():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    ref_logits = torch.randn(2, 5, 9, generator=g, dtype=torch.float64)
    upstream = torch.randn(2, 5, generator=g, dtype=torch.float64)
    got = token_kl(logits, ref_logits, chunk_elements=2 * 2 * 9)
    want = plain_kl(logits, ref_logits)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-13)
    (grad_got,) = torch.autograd.grad(got, logits, upstream)
    (grad_want,) = torch.autograd.grad(want, logits, upstream)
    torch.testing.assert_close(grad_got, grad_want, rtol=0, atol=1e-13)
    assert torch.autograd.gradcheck(lambda x: token_kl(x, ref_logits, chunk_elements=18), (logits,))


def test_head_kl_in_bfloat16_autocast_stays_close_to_float32():
    """Under autocast the products run in bfloat16, the softmaxes in float32."""
    g = torch.Generator().manual_seed(2)
    hidden, ref_hidden = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    weight = torch.randn(40, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = head_kl(hidden, ref_hidden, weight)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, plain_kl(hidden @ weight.T, ref_hidden @ weight.T), rtol=0.05, atol=0.05)


# ---------------------------------------------------------------- into the objective's input


def test_pair_logprobs_carries_the_token_statistics(policy):
    chosen, rejected = pairs()
    with torch.no_grad():
        stats = packed_sequence_logprobs(policy, pack(chosen, rejected, joint=True), BOTH, "response")
    c, r = stats.split_pairs()
    # a reference as wide as the longest sequence of all the data: cut to the batch's width
    wide = [dataclasses.replace(s, token_logps=torch.nn.functional.pad(s.token_logps, (0, 4)), kl=None) for s in (c, r)]
    pair = pair_logprobs("response", c, r, *wide)
    assert torch.equal(pair.chosen_token_logps, c.token_logps) and torch.equal(pair.rejected_kl, r.kl)
    assert torch.equal(pair.ref_chosen_token_logps, c.token_logps)
    assert torch.equal(pair.token_mask("chosen"), torch.arange(c.token_logps.shape[1]) < c.response_tokens[:, None])


# ---------------------------------------------------------------- the reference cache


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.models import load_base_model, load_tokenizer
    from prefbench.formats.records import PreferenceRecord

    tokenizer = load_tokenizer(str(tiny_model_dir))
    records = [PreferenceRecord(f"Name fruit {i}", "apple" + " pie" * i, f"Name fruit {i}", "ocean green",
                                "conditional") for i in range(3)]
    return add_lora(load_base_model(str(tiny_model_dir), "none")), encode_pairs(records, tokenizer, 64), \
        tokenizer.pad_token_id


@pytest.mark.parametrize("packed", [True, False])
def test_reference_token_rows_round_trip_through_the_cache(cache, scorer, packed, caplog):
    import logging

    from safetensors.torch import load_file, save_file

    from prefbench.engine.reference import reference_logprobs
    from prefbench.util.cache import stored_key

    model, pairs, pad_id = scorer
    key = {"model": "tiny", "packed": packed}
    first = reference_logprobs(model, pairs, pad_id, key, packed=packed, batch_size=2, token_span="response")
    plain = reference_logprobs(model, pairs, pad_id, key, packed=packed, batch_size=2)
    assert len(list((cache / "reference").iterdir())) == 2, "the token-level entry is keyed apart"
    assert plain[0].token_logps is None
    for side, base in zip(first, plain):
        # batches of 2 and 1 pairs: rows padded to the widest of all
        assert side.token_logps.shape[0] == 3 and side.token_logps.shape[1] >= int(side.response_tokens.max())
        past = torch.arange(side.token_logps.shape[1]) >= side.response_tokens[:, None]
        assert (side.token_logps[past] == 0).all() and (side.token_logps[~past] < 0).all()
        assert torch.equal(side.response_logps, base.response_logps) and torch.equal(side.joint_logps, base.joint_logps)
        if packed:
            assert torch.equal(left_to_right(side.token_logps), side.response_logps)
        else:
            torch.testing.assert_close(side.token_logps.sum(-1), side.response_logps, rtol=0, atol=1e-5)
    caplog.set_level(logging.INFO, logger="prefbench")
    again = reference_logprobs(model, pairs, pad_id, key, packed=packed, batch_size=2, token_span="response")
    assert "reused cache" in caplog.text
    for a, b in zip(first, again):
        assert torch.equal(a.token_logps, b.token_logps) and torch.equal(a.response_logps, b.response_logps)
    # an entry whose token rows were cut to one dimension is not trusted: computed again
    (path,) = [p for p in (cache / "reference").iterdir() if "token_logps" in stored_key(p)]
    tensors = load_file(path)
    save_file({k: v.flatten() for k, v in tensors.items()}, path, metadata={"key": stored_key(path)})
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="prefbench")
    recomputed = reference_logprobs(model, pairs, pad_id, key, packed=packed, batch_size=2, token_span="response")
    assert "computing them again" in caplog.text
    assert torch.equal(recomputed[0].token_logps, first[0].token_logps)


def test_sequence_kl_objective_refuses_a_starting_adapter(tiny_model_dir, prefs, tmp_path):
    """Its KL is taken against the base model (the adapter disabled), which would not be init_adapter's policy."""
    from prefbench.engine.config import ConfigError, TrainConfig
    from prefbench.engine.trainer import train

    config = TrainConfig(model=str(tiny_model_dir), data=str(prefs), objective="tdpo2", init_adapter=str(tmp_path),
                         output_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="tdpo2 takes its sequential KL against the base model"):
        train(config)
