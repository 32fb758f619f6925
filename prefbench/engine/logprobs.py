"""Per-sequence log-probabilities from a causal LM, for both spans an objective can use.

One forward pass gives every token's log-probability; summing it under two masks yields both
spans at no extra cost:

- ``response``: tokens of the response, given the instruction (prompt tokens masked);
- ``joint``: every real token of the formatted instruction+response sequence except the first
  (the first has nothing to condition on).

Padding may sit on either side: masks and explicit position ids make the result identical.

Training uses :func:`packed_sequence_logprobs` instead: a padding-free row of sequences
(:mod:`prefbench.engine.packing`) through the decoder, and the LM head applied only at the positions
whose tokens the objective scores, in chunks, so no [tokens, vocabulary] tensor is ever kept.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import Tensor

from prefbench.engine.attention import blocks_mask_marker
from prefbench.engine.packing import PackedBatch
from prefbench.registry import PairLogProbs, Span, UnpairedLogProbs


@dataclass(frozen=True)
class SequenceLogProbs:
    """Summed log-probs and token counts of a batch of sequences, for both spans; shape [B] each."""

    response_logps: Tensor
    response_tokens: Tensor
    joint_logps: Tensor
    joint_tokens: Tensor

    def span(self, span: Span) -> tuple[Tensor, Tensor]:
        return (self.response_logps, self.response_tokens) if span == "response" else (self.joint_logps, self.joint_tokens)

    def map(self, fn: Callable[[Tensor], Tensor]) -> "SequenceLogProbs":
        return SequenceLogProbs(*(fn(getattr(self, f.name)) for f in fields(self)))

    def select(self, index) -> "SequenceLogProbs":
        return self.map(lambda t: t[index])

    def to(self, device) -> "SequenceLogProbs":
        return self.map(lambda t: t.to(device))

    def split_pairs(self) -> tuple["SequenceLogProbs", "SequenceLogProbs"]:
        """A batch laid out as all chosen sequences, then all rejected ones -> (chosen, rejected)."""
        half = self.response_logps.shape[0] // 2
        return self.select(slice(0, half)), self.select(slice(half, None))

    @staticmethod
    def cat(parts: list["SequenceLogProbs"]) -> "SequenceLogProbs":
        return SequenceLogProbs(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(SequenceLogProbs)))


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


# Elements of the float32 log-softmax that exist at once: 2**26 is 256 MB, whatever the batch and vocabulary.
CHUNK_ELEMENTS = 2**26
# The LM head's logits, computed chunk by chunk forward and again backward: 2**24 (64 MB in float32) keeps
# the matrix products large (340 positions of a 49k vocabulary) and the transient memory small.
HEAD_CHUNK_ELEMENTS = 2**24


class _TokenLogProbs(torch.autograd.Function):
    """``logits[b, t, targets[b, t]] - logsumexp(logits[b, t])`` in float32 (or wider), a chunk of positions at a time,
    forward and backward. Autograd keeps only the logits (no float32 copy) and the [B, T] logsumexp; the
    backward writes each chunk's gradient, (onehot(target) - softmax) * grad, straight into one gradient
    tensor, where slicing under plain autograd would allocate a full-size zero gradient per chunk."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, step: int) -> Tensor:
        out = torch.empty(targets.shape, dtype=_at_least_float32(logits.dtype), device=logits.device)
        lse = torch.empty_like(out)
        for start in range(0, logits.shape[1], step):
            chunk = logits[:, start:start + step].to(out.dtype)
            lse[:, start:start + step] = torch.logsumexp(chunk, dim=-1)
            picked = chunk.gather(-1, targets[:, start:start + step, None]).squeeze(-1)
            out[:, start:start + step] = picked - lse[:, start:start + step]
        ctx.save_for_backward(logits, targets, lse)
        ctx.step = step
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, targets, lse = ctx.saved_tensors
        step = ctx.step
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[1], step):
            g = grad_out[:, start:start + step].to(lse.dtype)
            probs = (logits[:, start:start + step].to(lse.dtype) - lse[:, start:start + step, None]).exp_()
            chunk_grad = probs.mul_(-g[..., None])
            chunk_grad.scatter_add_(-1, targets[:, start:start + step, None], g[..., None])
            grad[:, start:start + step] = chunk_grad
        return grad, None, None


def token_logprobs(logits: Tensor, targets: Tensor, chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """log p(targets[b, t]) under ``logits[b, t]``, in float32, in chunks of positions.

    The float32 log-softmax over the vocabulary is the largest tensor of a training step (32
    sequences × 768 tokens × a 152k vocabulary is 15 GB); each chunk holds at most ``chunk_elements``
    of it, in the forward and the backward pass (:class:`_TokenLogProbs`).
    """
    rows, _, vocab = logits.shape
    return _TokenLogProbs.apply(logits, targets, max(1, chunk_elements // max(1, rows * vocab)))


def sequence_logprobs(logits: Tensor, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor) -> SequenceLogProbs:
    """Both spans' summed log-probs from logits [B, T, V] of ``input_ids`` [B, T].

    ``attention_mask`` marks real tokens, ``response_mask`` the response tokens (a subset).
    """
    targets = input_ids[:, 1:]
    logps = token_logprobs(logits[:, :-1], targets)
    real = attention_mask[:, 1:].bool()
    joint_mask = real & attention_mask[:, :-1].bool()  # the first real token has no real predecessor
    response = real & response_mask[:, 1:].bool()
    zero = torch.zeros((), dtype=logps.dtype, device=logps.device)
    return SequenceLogProbs(
        response_logps=torch.where(response, logps, zero).sum(-1),
        response_tokens=response.sum(-1),
        joint_logps=torch.where(joint_mask, logps, zero).sum(-1),
        joint_tokens=joint_mask.sum(-1),
    )


class _HeadLogProbs(torch.autograd.Function):
    """``log softmax(hidden @ weight.T)[n, targets[n]]`` in float32, ``step`` positions at a time. Only the
    [N] log-sum-exps are kept for the backward pass, which recomputes each chunk's logits: the LM head's
    [N, V] logits never exist whole, forward or backward. The product runs in the autocast dtype when
    autocast is on (backward too, where autocast is off), else in ``hidden``'s. ``weight`` (the frozen
    output embedding) gets no gradient."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, step: int) -> Tensor:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        h, w = hidden.to(dtype), weight.to(dtype)
        out = torch.empty(targets.shape, dtype=_at_least_float32(dtype), device=hidden.device)
        lse = torch.empty_like(out)
        with torch.autocast(device, enabled=False):
            for start in range(0, h.shape[0], step):
                logits = (h[start:start + step] @ w.T).to(out.dtype)
                lse[start:start + step] = torch.logsumexp(logits, dim=-1)
                out[start:start + step] = logits.gather(-1, targets[start:start + step, None]).squeeze(-1) - \
                    lse[start:start + step]
        ctx.save_for_backward(h, w, targets, lse)
        ctx.step, ctx.hidden_dtype = step, hidden.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, w, targets, lse = ctx.saved_tensors
        step = ctx.step
        grad = torch.empty_like(h)
        for start in range(0, h.shape[0], step):
            g = grad_out[start:start + step].to(lse.dtype)
            logits = (h[start:start + step] @ w.T).to(lse.dtype)
            grad_logits = (logits - lse[start:start + step, None]).exp_().mul_(-g[:, None])
            grad_logits.scatter_add_(-1, targets[start:start + step, None], g[:, None])
            grad[start:start + step] = grad_logits.to(w.dtype) @ w
        return grad.to(ctx.hidden_dtype), None, None, None


def head_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, chunk_elements: int = HEAD_CHUNK_ELEMENTS) -> Tensor:
    """log p(targets[n]) from final hidden states [N, d] and the LM head's weight [V, d], in float32."""
    return _HeadLogProbs.apply(hidden, weight, targets, max(1, chunk_elements // weight.shape[0]))


def packed_sequence_logprobs(model, batch: PackedBatch) -> SequenceLogProbs:
    """Both spans' statistics (the joint span only when the batch scored it; NaN otherwise) for the
    sequences of a packed batch, from one decoder forward (any Hugging Face causal LM whose logits are
    its LM head applied to the last hidden state; PEFT-wrapped too, adapters included)."""
    device = batch.input_ids.device
    hidden, head = packed_hidden(model, batch)
    logps = head_logprobs(hidden, head, batch.target)

    def sums(members: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
        if members is None:
            return (torch.full((batch.n_sequences,), float("nan"), device=device),
                    torch.zeros(batch.n_sequences, dtype=torch.long, device=device))
        seq, token = members
        total = torch.zeros(batch.n_sequences, dtype=logps.dtype, device=device).index_add(0, seq, logps[token])
        return total, torch.bincount(seq, minlength=batch.n_sequences)

    return SequenceLogProbs(*sums(batch.response), *sums(batch.joint))


def packed_hidden(model, batch: PackedBatch) -> tuple[Tensor, Tensor]:
    """The final hidden states [N, d] that predict the batch's scored tokens, from one decoder forward over
    its row, and the LM head's weight [V, d] that turns them into logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=batch.input_ids, position_ids=batch.position_ids,
                                attention_mask=blocks_mask_marker(batch.input_ids.device), blocks=batch.blocks,
                                use_cache=False).last_hidden_state[0]
    return hidden[batch.pred_index], base.get_output_embeddings().weight


def position_ids_for(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def model_sequence_logprobs(model, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor) -> SequenceLogProbs:
    """Forward ``model`` (any Hugging Face causal LM) and return both spans' statistics."""
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_for(attention_mask), use_cache=False
    ).logits
    return sequence_logprobs(logits, input_ids, attention_mask, response_mask)


def pair_logprobs(
    span: Span,
    chosen: SequenceLogProbs,
    rejected: SequenceLogProbs,
    ref_chosen: SequenceLogProbs | None = None,
    ref_rejected: SequenceLogProbs | None = None,
) -> PairLogProbs:
    """Assemble an objective's input for its span; the chosen response's own stats ride along for NLL terms."""
    chosen_logps, chosen_tokens = chosen.span(span)
    rejected_logps, rejected_tokens = rejected.span(span)
    return PairLogProbs(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
        ref_chosen_logps=ref_chosen.span(span)[0] if ref_chosen is not None else None,
        ref_rejected_logps=ref_rejected.span(span)[0] if ref_rejected is not None else None,
        chosen_response_logps=chosen.response_logps,
        chosen_response_tokens=chosen.response_tokens,
    )


def unpaired_logprobs(
    span: Span,
    examples: SequenceLogProbs,
    mismatched: SequenceLogProbs,
    desirable: Tensor,
    ref_examples: SequenceLogProbs | None = None,
    ref_mismatched: SequenceLogProbs | None = None,
) -> UnpairedLogProbs:
    """An unpaired objective's input; the mismatched sequences' policy log-probs are detached (they only
    estimate the KL reference point, as under TRL's ``torch.no_grad()``)."""
    pair = pair_logprobs(span, examples, mismatched, ref_examples, ref_mismatched)
    return UnpairedLogProbs(logps=pair.chosen_logps, tokens=pair.chosen_tokens, desirable=desirable,
                            ref_logps=pair.ref_chosen_logps,
                            kl_logps=pair.rejected_logps.detach() if ref_mismatched is not None else None,
                            ref_kl_logps=pair.ref_rejected_logps, kl_tokens=pair.rejected_tokens)
