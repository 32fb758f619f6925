"""Training sequences as token ids: every pair's chosen and rejected side, or SFT examples alone, or
labelled unpaired examples each with its mismatched sequence as the second side, or lists of scored
responses to one instruction each."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field

import torch

from prefbench.engine.config import TrainingError
from prefbench.engine.formatting import collate, encode
from prefbench.engine.logprobs import SequenceLogProbs
from prefbench.engine.packing import PackedBatch, pack, pack_lists, shared_prompt_length
from prefbench.formats.records import ListRecord, PreferenceRecord

log = logging.getLogger("prefbench")


@dataclass
class EncodedPairs:
    """Token ids and response masks of every pair's chosen and rejected side. SFT data has no
    rejected side (``rejected`` empty): then each example is one sequence."""

    chosen: list[tuple[list[int], list[int]]]
    rejected: list[tuple[list[int], list[int]]]
    truncated: int                                   # sequences cut to max_length
    kinds: list[str] = field(default_factory=list)   # each pair's kind (conditional | joint); empty for SFT data
    # unpaired data: each example's desirable label; ``chosen`` holds the examples, ``rejected`` their mismatched
    # sequences (the example's prompt, the next example's response), so every pair path serves it unchanged
    labels: list[bool] | None = None
    # listwise data: each list's responses, a run of consecutive ``chosen`` sequences (``rejected`` is empty), and
    # their scores. Indices then count lists: a batch of lists holds all their responses.
    # Pairs: each pair's (chosen, rejected) scores when every pair has them (ODPO reads them), else None
    lists: list[range] | None = None
    scores: list[tuple[float, ...]] | None = None

    def __len__(self) -> int:
        return len(self.lists) if self.lists is not None else len(self.chosen)

    def sequences(self, indices: list[int]) -> list[int]:
        """The ``chosen`` sequences of items ``indices``: the items themselves, or every response of each list."""
        return list(indices) if self.lists is None else [s for i in indices for s in self.lists[i]]

    def group(self, i: int) -> list[tuple[list[int], list[int]]]:
        """The sequences of item ``i``: a pair's two sides, an SFT example, or a list's responses."""
        if self.lists is not None:
            return [self.chosen[s] for s in self.lists[i]]
        return [self.chosen[i], self.rejected[i]] if self.paired else [self.chosen[i]]

    @property
    def paired(self) -> bool:
        return bool(self.rejected)

    def batch(self, indices: list[int], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Chosen sequences first, then rejected, in one padded batch (one forward pass for both)."""
        rejected = [self.rejected[i] for i in indices] if self.paired else []
        tensors = collate([self.chosen[s] for s in self.sequences(indices)] + rejected, pad_id)
        return {k: v.to(device) for k, v in tensors.items()}

    def packed(self, indices: list[int], joint: bool, share_prefixes: bool) -> PackedBatch:
        """The same sequences as :meth:`batch`, in one padding-free row (:func:`~prefbench.engine.packing.pack`)."""
        if self.lists is not None:
            return pack_lists([self.group(i) for i in indices], joint, share_prefixes)
        return pack([self.chosen[i] for i in indices], [self.rejected[i] for i in indices] if self.paired else [],
                    joint, share_prefixes)

    def row_tokens(self, i: int, share_prefixes: bool) -> int:
        """Tokens item ``i`` puts into a packed row (its instruction once when its sequences share it)."""
        group = self.group(i)
        shared = shared_prompt_length(group) if share_prefixes else 0
        return sum(len(ids) for ids, _ in group) - (len(group) - 1) * shared

    def forward_chunks(self, indices: list[int], max_tokens: int, share_prefixes: bool) -> list[list[int]]:
        """``indices`` in consecutive runs whose packed rows hold at most ``max_tokens`` tokens each (a pair
        longer than that alone); 0: one run. Activation memory grows with the tokens of one forward."""
        chunks: list[list[int]] = []
        used = 0
        for i in indices:
            n = self.row_tokens(i, share_prefixes)
            if not chunks or (max_tokens and used + n > max_tokens):
                chunks.append([])
                used = 0
            chunks[-1].append(i)
            used += n
        return chunks

    def tokens(self, indices: list[int]) -> int:
        """Tokens of the sequences of ``indices`` (both sides of a pair, every response of a list), as in a padded batch
        without its padding."""
        return sum(len(self.chosen[s][0]) for s in self.sequences(indices)) + \
            sum(len(self.rejected[i][0]) for i in indices if self.paired)

    def split(self, stats: SequenceLogProbs) -> tuple[SequenceLogProbs, SequenceLogProbs]:
        """A batch's statistics as (chosen, rejected); without a rejected side both are the one sequence."""
        return stats.split_pairs() if self.paired else (stats, stats)

    def summary(self) -> dict:
        """What the data holds, for the run's record: pairs (or SFT examples) by kind, sequences cut to
        max_length, and tokens over both sides."""
        if self.lists is not None:
            return {"lists": len(self), "responses": len(self.chosen), "truncated_to_max_length": self.truncated,
                    "tokens": self.tokens(list(range(len(self))))}
        if self.labels is not None:
            return {"examples": len(self), "desirable": sum(self.labels), "undesirable": len(self) - sum(self.labels),
                    "truncated_to_max_length": self.truncated, "tokens": self.tokens(list(range(len(self))))}
        kinds = {k: self.kinds.count(k) for k in ("conditional", "joint")} if self.paired else {}
        return {"pairs" if self.paired else "examples": len(self), **kinds, "truncated_to_max_length": self.truncated,
                "tokens": self.tokens(list(range(len(self))))}

    def digest(self) -> str:
        h = hashlib.sha256()
        for side in (self.chosen, self.rejected):
            for ids, mask in side:
                h.update(json.dumps([ids, mask]).encode())
        return h.hexdigest()


def _encode_sequences(items: list[tuple], tokenizer, max_length: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """``(prompt, response, finished)`` items as (ids, response mask), cut to ``max_length``; and how many were
    cut. Only a finished response is followed by the end-of-turn token."""
    out, truncated = [], 0
    for prompt, response, finished in items:
        ids, mask = encode(tokenizer, prompt, response, ends=finished)
        if len(ids) > max_length:
            truncated += 1
            ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            raise TrainingError(f"a prompt is longer than max_length={max_length} tokens, leaving no response "
                                f"tokens; raise max_length or shorten the prompt ({str(prompt)[:60]!r}...)")
        out.append((ids, mask))
    if truncated:
        log.warning("truncated %d of %d sequences to max_length=%d tokens", truncated, len(items), max_length)
    return out, truncated


def encode_pairs(records: list[PreferenceRecord], tokenizer, max_length: int) -> EncodedPairs:
    items = [(r.prompt_chosen, r.response_chosen, r.chosen_finished) for r in records] + \
            [(r.prompt_rejected, r.response_rejected, r.rejected_finished) for r in records]
    encoded, truncated = _encode_sequences(items, tokenizer, max_length)
    scores = [(r.score_chosen, r.score_rejected) for r in records] if all(r.scored for r in records) else None
    return EncodedPairs(encoded[:len(records)], encoded[len(records):], truncated, [r.kind for r in records],
                        scores=scores)


def encode_examples(examples: list, tokenizer, max_length: int) -> EncodedPairs:
    """Labelled unpaired examples (``.prompt``, ``.completion``, ``.desirable``, ``.finished``), each with a
    mismatched sequence for KTO's KL reference point: its prompt with the next example's response. TRL cycles
    completions by one within each batch; here they are cycled once over the whole data, so the reference
    log-probs of the mismatched sequences are cached with the rest."""
    n = len(examples)
    items = [(e.prompt, e.completion, e.finished) for e in examples]
    mismatched = [(e.prompt, *items[(i + 1) % n][1:]) for i, e in enumerate(examples)]
    encoded, truncated = _encode_sequences(items + mismatched, tokenizer, max_length)
    return EncodedPairs(encoded[:n], encoded[n:], truncated, labels=[e.desirable for e in examples])


def encode_lists(records: list[ListRecord], tokenizer, max_length: int) -> EncodedPairs:
    """Lists of scored responses, every response of a list in turn (one sequence each)."""
    items = [(r.prompt, response, finished) for r in records for response, finished in zip(r.responses, r.finished)]
    encoded, truncated = _encode_sequences(items, tokenizer, max_length)
    ends = itertools.accumulate(len(r.responses) for r in records)
    lists = [range(end - len(r.responses), end) for r, end in zip(records, ends)]
    return EncodedPairs(encoded, [], truncated, lists=lists, scores=[r.scores for r in records])


def encode_responses(examples: list, tokenizer, max_length: int) -> EncodedPairs:
    """SFT examples (``.prompt``, ``.response``) as sequences without a rejected side."""
    encoded, truncated = _encode_sequences([(e.prompt, e.response, True) for e in examples], tokenizer, max_length)
    return EncodedPairs(encoded, [], truncated)
