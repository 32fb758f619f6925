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

Token-level objectives (TOKEN_STATISTICS) get more, and only they pay for it: the per-token log-probs of
their span as [sequences, T] rows, and the per-position KL from the reference's next-token distribution to
the policy's, which needs a second, gradient-free forward of the same batch with the adapter disabled
(the reference's full distribution at every position cannot be cached: a [tokens, vocabulary] table).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields, replace
from typing import Callable

import torch
from torch import Tensor

from prefbench.engine.attention import blocks_mask_marker
from prefbench.engine.packing import PackedBatch
from prefbench.registry import ListLogProbs, PairLogProbs, Span, UnpairedLogProbs


@dataclass(frozen=True)
class SequenceLogProbs:
    """Summed log-probs and token counts of a batch of sequences, for both spans; shape [B] each.

    Computed only when a token-level objective asks, for its span alone: ``token_logps`` [B, T], the span's
    per-token log-probs left-aligned in sequence order and zero past each row's count (the very terms of the
    span's sum: a row added up left to right is it, exactly, on the packed path), and ``kl`` [B], Σ over the
    span's positions of KL(π_ref(·|prefix) ‖ π_θ(·|prefix))."""

    response_logps: Tensor
    response_tokens: Tensor
    joint_logps: Tensor
    joint_tokens: Tensor
    token_logps: Tensor | None = None
    kl: Tensor | None = None

    def span(self, span: Span) -> tuple[Tensor, Tensor]:
        return (self.response_logps, self.response_tokens) if span == "response" else (self.joint_logps, self.joint_tokens)

    def map(self, fn: Callable[[Tensor], Tensor]) -> "SequenceLogProbs":
        return SequenceLogProbs(*(None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                                  for f in fields(self)))

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
        """Batches one after another; token rows zero-padded to the widest."""
        def joined(name: str) -> Tensor | None:
            values = [getattr(p, name) for p in parts]
            if values[0] is None:
                return None
            if values[0].dim() == 2:
                values = [fit_width(v, max(v.shape[1] for v in values)) for v in values]
            return torch.cat(values)

        return SequenceLogProbs(*(joined(f.name) for f in fields(SequenceLogProbs)))


def fit_width(rows: Tensor, width: int) -> Tensor:
    """Token rows [B, T] cut or zero-padded to ``width`` columns (the cut columns hold padding only when every
    row's count is at most ``width``)."""
    if rows.shape[1] >= width:
        return rows[:, :width]
    return torch.nn.functional.pad(rows, (0, width - rows.shape[1]))


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


# Elements of the float32 log-softmax that exist at once: 2**26 is 256 MB, whatever the batch and vocabulary.
CHUNK_ELEMENTS = 2**26
# The LM head's logits, computed chunk by chunk forward and again backward: 2**22 (16 MB in float32, 85
# positions of a 49k vocabulary) is as fast as 2**24 on this CPU and its transients come on top of the
# forward's activations (the training process's peak: 0.15 GB lower than with 2**24, docs/performance.md)
HEAD_CHUNK_ELEMENTS = 2**22


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


def _kl_rows(logits: Tensor, ref_logits: Tensor) -> Tensor:
    """KL(softmax(ref_logits) ‖ softmax(logits)) of each row, in the logits' dtype (float32 or wider)."""
    logp, ref_logp = torch.log_softmax(logits, dim=-1), torch.log_softmax(ref_logits, dim=-1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1)


def _kl_rows_grad(logits: Tensor, ref_logits: Tensor, grad: Tensor) -> Tensor:
    """d KL(p_ref ‖ p_θ) / d logits_θ = softmax(logits_θ) − p_ref, times the incoming gradient of each row."""
    return (torch.softmax(logits, dim=-1) - torch.softmax(ref_logits, dim=-1)).mul_(grad[..., None])


class _TokenKL(torch.autograd.Function):
    """Per-position KL(p_ref ‖ p_θ) from logits [B, T, V] and the reference's (no gradient), ``step`` positions at
    a time in float32 (or wider), forward and backward, like :class:`_TokenLogProbs`: autograd keeps only the
    logits both models already produced."""

    @staticmethod
    def forward(ctx, logits: Tensor, ref_logits: Tensor, step: int) -> Tensor:
        dtype = _at_least_float32(logits.dtype)
        out = torch.empty(logits.shape[:2], dtype=dtype, device=logits.device)
        for start in range(0, logits.shape[1], step):
            cut = slice(start, start + step)
            out[:, cut] = _kl_rows(logits[:, cut].to(dtype), ref_logits[:, cut].to(dtype))
        ctx.save_for_backward(logits, ref_logits)
        ctx.step = step
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, ref_logits = ctx.saved_tensors
        dtype, step = _at_least_float32(logits.dtype), ctx.step
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[1], step):
            cut = slice(start, start + step)
            grad[:, cut] = _kl_rows_grad(logits[:, cut].to(dtype), ref_logits[:, cut].to(dtype),
                                         grad_out[:, cut].to(dtype))
        return grad, None, None


def token_kl(logits: Tensor, ref_logits: Tensor, chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """KL(π_ref(·|y<t) ‖ π_θ(·|y<t)) at every position of logits [B, T, V] (gradient to ``logits`` only)."""
    rows, _, vocab = logits.shape
    return _TokenKL.apply(logits, ref_logits.detach(), max(1, chunk_elements // max(1, rows * vocab)))


def _left_aligned(values: Tensor, mask: Tensor) -> Tensor:
    """The entries of ``values`` [B, T] under ``mask``, moved to the start of their row in the same order, zeros
    after; as wide as the fullest row."""
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices   # masked positions first, in order
    width = int(mask.sum(-1).max()) if mask.numel() else 0
    kept = mask.gather(1, order)[:, :width]
    return values.gather(1, order)[:, :width].where(kept, 0)


def sequence_logprobs(logits: Tensor, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor,
                      statistics: tuple[str, ...] = (), span: Span = "response",
                      ref_logits: Tensor | None = None) -> SequenceLogProbs:
    """Both spans' summed log-probs from logits [B, T, V] of ``input_ids`` [B, T].

    ``attention_mask`` marks real tokens, ``response_mask`` the response tokens (a subset). ``statistics``
    (of TOKEN_STATISTICS) adds ``span``'s per-token rows and, from the reference's logits ``ref_logits``, its
    summed per-position KL.
    """
    targets = input_ids[:, 1:]
    logps = token_logprobs(logits[:, :-1], targets)
    real = attention_mask[:, 1:].bool()
    joint_mask = real & attention_mask[:, :-1].bool()  # the first real token has no real predecessor
    response = real & response_mask[:, 1:].bool()
    zero = torch.zeros((), dtype=logps.dtype, device=logps.device)
    stats = SequenceLogProbs(
        response_logps=torch.where(response, logps, zero).sum(-1),
        response_tokens=response.sum(-1),
        joint_logps=torch.where(joint_mask, logps, zero).sum(-1),
        joint_tokens=joint_mask.sum(-1),
    )
    mask = response if span == "response" else joint_mask
    if "token_logps" in statistics:
        stats = replace(stats, token_logps=_left_aligned(logps, mask))
    if "sequence_kl" in statistics:
        kl = token_kl(logits[:, :-1], ref_logits[:, :-1])
        stats = replace(stats, kl=torch.where(mask, kl, zero).sum(-1))
    return stats


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


class _HeadKL(torch.autograd.Function):
    """KL(softmax(ref_hidden @ weight.T)[n] ‖ softmax(hidden @ weight.T)[n]) in float32, ``step`` positions at a
    time. Only the inputs are kept: the backward recomputes both chunks' logits and uses d KL / d logits_θ =
    softmax(logits_θ) − p_ref, so no [N, V] tensor exists whole. Dtypes as in :class:`_HeadLogProbs`;
    ``ref_hidden`` and ``weight`` get no gradient."""

    @staticmethod
    def forward(ctx, hidden: Tensor, ref_hidden: Tensor, weight: Tensor, step: int) -> Tensor:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        h, r, w = hidden.to(dtype), ref_hidden.to(dtype), weight.to(dtype)
        out = torch.empty(h.shape[0], dtype=_at_least_float32(dtype), device=hidden.device)
        with torch.autocast(device, enabled=False):
            for start in range(0, h.shape[0], step):
                cut = slice(start, start + step)
                out[cut] = _kl_rows((h[cut] @ w.T).to(out.dtype), (r[cut] @ w.T).to(out.dtype))
        ctx.save_for_backward(h, r, w)
        ctx.step, ctx.hidden_dtype = step, hidden.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, r, w = ctx.saved_tensors
        dtype, step = _at_least_float32(h.dtype), ctx.step
        grad = torch.empty_like(h)
        for start in range(0, h.shape[0], step):
            cut = slice(start, start + step)
            grad_logits = _kl_rows_grad((h[cut] @ w.T).to(dtype), (r[cut] @ w.T).to(dtype), grad_out[cut].to(dtype))
            grad[cut] = grad_logits.to(w.dtype) @ w
        return grad.to(ctx.hidden_dtype), None, None, None


def head_kl(hidden: Tensor, ref_hidden: Tensor, weight: Tensor, chunk_elements: int = HEAD_CHUNK_ELEMENTS) -> Tensor:
    """KL(π_ref ‖ π_θ) at each of N positions from the policy's and the reference's final hidden states [N, d] and
    the LM head's weight [V, d] (shared: LoRA leaves the head alone), in float32; gradient to ``hidden`` only."""
    return _HeadKL.apply(hidden, ref_hidden.detach(), weight, max(1, chunk_elements // weight.shape[0]))


@contextlib.contextmanager
def reference_mode(model):
    """``model`` as the reference: adapter disabled, eval mode, no gradient; its train mode restored after. In eval
    mode no dropout draws random numbers, so a reference forward between two policy forwards leaves the dropout
    masks of the training run as they were."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), model.disable_adapter():
            yield
    finally:
        model.train(was_training)


def _token_rows(values: Tensor, seq: Tensor, n_sequences: int) -> Tensor:
    """``values[m]`` of the memberships ``m`` of a span (sequence ``seq[m]``, a sequence's memberships listed in
    position order) as left-aligned rows [n_sequences, T], zeros after each row's count."""
    counts = torch.bincount(seq, minlength=n_sequences)
    order = torch.sort(seq, stable=True).indices
    column = torch.empty_like(seq)
    column[order] = torch.arange(seq.numel(), device=seq.device) - (counts.cumsum(0) - counts)[seq[order]]
    width = int(counts.max()) if seq.numel() else 0
    return values.new_zeros(n_sequences, width).index_put((seq, column), values)


def packed_sequence_logprobs(model, batch: PackedBatch, statistics: tuple[str, ...] = (),
                             span: Span = "response") -> SequenceLogProbs:
    """Both spans' statistics (the joint span only when the batch scored it; NaN otherwise) for the
    sequences of a packed batch, from one decoder forward (any Hugging Face causal LM whose logits are
    its LM head applied to the last hidden state; PEFT-wrapped too, adapters included). ``statistics`` (of
    TOKEN_STATISTICS) adds ``span``'s per-token rows and its summed per-position KL to the reference (a second,
    gradient-free decoder forward with the adapter disabled: :func:`reference_mode`)."""
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

    stats = SequenceLogProbs(*sums(batch.response), *sums(batch.joint))
    if not statistics:
        return stats
    seq, token = batch.response if span == "response" else batch.joint
    if "token_logps" in statistics:
        stats = replace(stats, token_logps=_token_rows(logps[token], seq, batch.n_sequences))
    if "sequence_kl" in statistics:
        with reference_mode(model):
            ref_hidden, _ = packed_hidden(model, batch)
        kl = head_kl(hidden, ref_hidden, head)
        stats = replace(stats, kl=torch.zeros(batch.n_sequences, dtype=kl.dtype, device=device).index_add(0, seq,
                                                                                                       kl[token]))
    return stats


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


def model_sequence_logprobs(model, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor,
                            statistics: tuple[str, ...] = (), span: Span = "response") -> SequenceLogProbs:
    """Forward ``model`` (any Hugging Face causal LM) and return both spans' statistics; ``statistics`` as in
    :func:`sequence_logprobs` (the KL's reference logits from a second forward: :func:`reference_mode`)."""
    def logits_of() -> Tensor:
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_for(attention_mask),
                     use_cache=False).logits

    ref_logits = None
    if "sequence_kl" in statistics:
        with reference_mode(model):
            ref_logits = logits_of()
    return sequence_logprobs(logits_of(), input_ids, attention_mask, response_mask, statistics, span, ref_logits)


def pair_logprobs(
    span: Span,
    chosen: SequenceLogProbs,
    rejected: SequenceLogProbs,
    ref_chosen: SequenceLogProbs | None = None,
    ref_rejected: SequenceLogProbs | None = None,
    scores: Tensor | None = None,
) -> PairLogProbs:
    """Assemble an objective's input for its span; the chosen response's own stats ride along for NLL terms, and
    the token-level statistics the sides carry (the reference's rows cut to the policy's width: the reference
    holds rows as wide as the longest sequence of the whole data). ``scores`` ([B, 2]): each pair's chosen and
    rejected scores, for an objective that reads them ("pair_scores")."""
    chosen_logps, chosen_tokens = chosen.span(span)
    rejected_logps, rejected_tokens = rejected.span(span)

    def rows(ref: SequenceLogProbs | None, policy: SequenceLogProbs) -> Tensor | None:
        if ref is None or ref.token_logps is None or policy.token_logps is None:
            return None
        return fit_width(ref.token_logps, policy.token_logps.shape[1])

    return PairLogProbs(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        chosen_tokens=chosen_tokens,
        rejected_tokens=rejected_tokens,
        ref_chosen_logps=ref_chosen.span(span)[0] if ref_chosen is not None else None,
        ref_rejected_logps=ref_rejected.span(span)[0] if ref_rejected is not None else None,
        chosen_response_logps=chosen.response_logps,
        chosen_response_tokens=chosen.response_tokens,
        chosen_token_logps=chosen.token_logps,
        rejected_token_logps=rejected.token_logps,
        ref_chosen_token_logps=rows(ref_chosen, chosen),
        ref_rejected_token_logps=rows(ref_rejected, rejected),
        chosen_kl=chosen.kl,
        rejected_kl=rejected.kl,
        chosen_scores=None if scores is None else scores[:, 0],
        rejected_scores=None if scores is None else scores[:, 1],
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


def list_logprobs(span: Span, responses: SequenceLogProbs, sizes: list[int], scores: list[tuple[float, ...]],
                  ref: SequenceLogProbs | None = None) -> ListLogProbs:
    """A listwise objective's input: the statistics of every response of B lists in turn (``sizes[b]`` of list b)
    laid out [B, K], K the longest list's size, the entries past a list's end masked out (and zero)."""
    logps, tokens = responses.span(span)
    device = logps.device
    row = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(device)
    col = torch.cat([torch.arange(n) for n in sizes]).to(device)

    def grid(values: Tensor) -> Tensor:
        return values.new_zeros((len(sizes), max(sizes))).index_put((row, col), values)

    flat_scores = torch.tensor([s for list_scores in scores for s in list_scores], dtype=torch.float64, device=device)
    return ListLogProbs(grid(logps), grid(tokens), grid(flat_scores), grid(torch.ones_like(row, dtype=torch.bool)),
                        grid(ref.span(span)[0]) if ref is not None else None)
