"""A micro-batch as one padding-free row: sequences side by side, the instruction start they all share
(a chat template's system turn) and each conditional pair's instruction once (prefix sharing), and the
list of tokens whose log-probabilities the objective needs.

Sequence ``k`` of the result is pair ``k``'s chosen side and ``n_pairs + k`` its rejected side (for
SFT examples, which have no rejected side, sequence ``k`` is example ``k``; for lists, the responses of
each list in turn), the layout :class:`~prefbench.engine.encoding.EncodedPairs` uses. A token at row
position ``j`` is predicted by the hidden state at ``j - 1``, except a shared pair's rejected answer
(a shared list's every response after the first), whose first token is predicted by the instruction's
last token (where its own sequence would have it). Each scored token is computed once and counted for
every sequence that contains it (a shared instruction's tokens count for every sequence of the joint span).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prefbench.engine.attention import Block

Sequence = tuple[list[int], list[int]]   # token ids and the response mask (1 on response tokens)


@dataclass(frozen=True)
class PackedBatch:
    input_ids: Tensor        # [1, L]
    position_ids: Tensor     # [1, L], counted from 0 within each sequence
    blocks: tuple[Block, ...]
    pred_index: Tensor       # [N] row position of the hidden state that predicts scored token n
    target: Tensor           # [N] the token it predicts
    response: tuple[Tensor, Tensor]   # (sequence, scored token) of every response-span membership
    joint: tuple[Tensor, Tensor] | None   # the same for the joint span, when it was asked for
    n_sequences: int
    shared_pairs: int

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    def to(self, device) -> "PackedBatch":
        move = lambda t: t.to(device)  # noqa: E731
        return PackedBatch(move(self.input_ids), move(self.position_ids), self.blocks, move(self.pred_index),
                           move(self.target), tuple(map(move, self.response)),
                           tuple(map(move, self.joint)) if self.joint is not None else None, self.n_sequences,
                           self.shared_pairs)


def prompt_length(mask: list[int]) -> int:
    return mask.index(1) if 1 in mask else len(mask)


class _Builder:
    def __init__(self, joint: bool, common: list[int]):
        self.ids: list[int] = []
        self.positions: list[int] = []
        self.blocks: list[Block] = []
        self.scored: dict[tuple[int, int], int] = {}       # (pred index, target) -> scored token number
        self.members = {"response": ([], []), "joint": ([], [])}
        self.joint = joint
        self.c = len(common)        # every sequence starts with ``common``: it opens the row, once
        if common:
            self.blocks.append(Block(self.place(common), self.c))
        self.common = ((0, self.c),) if common else ()

    def place(self, ids: list[int], first_position: int = 0) -> int:
        """Append tokens; returns the row index of the first."""
        start = len(self.ids)
        self.ids += ids
        self.positions += range(first_position, first_position + len(ids))
        return start

    def score(self, seq: int, row: list[int], ids: list[int], mask: list[int]) -> None:
        """Sequence ``seq`` whose token t sits at row position ``row[t]``: every token after the first is
        predicted by the hidden state of its predecessor."""
        for t in range(1, len(ids)):
            in_response = mask[t] == 1
            if not (in_response or self.joint):
                continue
            n = self.scored.setdefault((row[t - 1], ids[t]), len(self.scored))
            if in_response:
                self.members["response"][0].append(seq)
                self.members["response"][1].append(n)
            if self.joint:
                self.members["joint"][0].append(seq)
                self.members["joint"][1].append(n)

    def own(self, ids: list[int], skip: int = 0, prefixes: tuple = ()) -> list[int]:
        """A block of ``ids[skip:]`` after the common start and ``prefixes``; the row position of each token
        of ``ids`` (the first ``skip`` being the common start's, then the prefixes')."""
        c = self.c
        start = self.place(ids[skip:], first_position=skip)
        self.blocks.append(Block(start, len(ids) - skip, self.common + prefixes))
        before = list(range(c)) + [i for at, n in prefixes for i in range(at, at + n)]
        return before + list(range(start, start + len(ids) - skip))

    def single(self, seq: int, sequence: Sequence) -> None:
        ids, mask = sequence
        self.score(seq, self.own(ids, self.c), ids, mask)

    def shared(self, group: list[tuple[int, Sequence]], p: int) -> None:
        """``[x a][b][c]…``: every block after the first sees the instruction ``x`` (after the common start) as its
        prefix. ``group``: (sequence number, sequence) of sequences whose first ``p`` tokens are ``x``."""
        (seq_a, (ids_a, mask_a)), rest = group[0], group[1:]
        row_a = self.own(ids_a, self.c)
        self.score(seq_a, row_a, ids_a, mask_a)
        instruction = ((row_a[self.c], p - self.c),) if p > self.c else ()
        for seq_b, (ids_b, mask_b) in rest:
            self.score(seq_b, self.own(ids_b, p, instruction), ids_b, mask_b)

    def build(self, n_sequences: int, shared_pairs: int) -> PackedBatch:
        scored = sorted(self.scored.items(), key=lambda kv: kv[1])
        tensor = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
        members = {k: (tensor(s), tensor(n)) for k, (s, n) in self.members.items()}
        return PackedBatch(tensor(self.ids)[None], tensor(self.positions)[None], tuple(self.blocks),
                           tensor([pred for (pred, _), _ in scored]), tensor([tgt for (_, tgt), _ in scored]),
                           members["response"], members["joint"] if self.joint else None, n_sequences, shared_pairs)


def pack(chosen: list[Sequence], rejected: list[Sequence], joint: bool, share_prefixes: bool = True) -> PackedBatch:
    """Pairs ``(chosen[k], rejected[k])`` (or, with ``rejected`` empty, single sequences) in one row.
    ``joint``: also score the instruction tokens (the joint span); otherwise only response tokens are
    scored, and the joint span is absent. A pair whose two sides start with the same instruction
    tokens shares them, and the instruction start all sequences have in common is computed once, unless
    ``share_prefixes`` is off."""
    n = len(chosen)
    groups = [[(k, chosen[k]), (n + k, rejected[k])] for k in range(n)] if rejected else \
        [[(k, sequence)] for k, sequence in enumerate(chosen)]
    return _pack_groups(groups, joint, share_prefixes)


def pack_lists(lists: list[list[Sequence]], joint: bool, share_prefixes: bool = True) -> PackedBatch:
    """Lists of responses to one instruction each in one row, sequence numbers running through the lists in order;
    a list's responses share its instruction as a pair's two sides do (``shared_pairs`` then counts lists)."""
    numbered = iter(range(sum(map(len, lists))))
    return _pack_groups([[(next(numbered), sequence) for sequence in group] for group in lists], joint,
                        share_prefixes)


def _pack_groups(groups: list[list[tuple[int, Sequence]]], joint: bool, share_prefixes: bool) -> PackedBatch:
    sequences = [sequence for group in groups for _, sequence in group]
    builder = _Builder(joint, _common_start(sequences) if share_prefixes else [])
    shared_groups = 0
    for group in groups:
        p = shared_prompt_length([sequence for _, sequence in group]) if share_prefixes else 0
        if p:
            builder.shared(group, p)
            shared_groups += 1
        else:
            for seq, sequence in group:
                builder.single(seq, sequence)
    return builder.build(len(sequences), shared_groups)


def shared_prompt_length(group: list[Sequence]) -> int:
    """The instruction length of a group of two or more sequences that all start with the same instruction tokens;
    0 otherwise (nothing to share)."""
    p = prompt_length(group[0][1])
    ids_a = group[0][0]
    same = all(prompt_length(mask) == p and ids[:p] == ids_a[:p] for ids, mask in group[1:])
    return p if len(group) > 1 and same else 0


def _common_start(sequences: list[Sequence]) -> list[int]:
    """The instruction tokens all of ``sequences`` (two or more) start with, leaving each at least one token."""
    if len(sequences) < 2:
        return []
    limit = min(min(prompt_length(mask), len(ids) - 1) for ids, mask in sequences)
    return sequences[0][0][:common_start([ids for ids, _ in sequences], limit)]


def common_start(token_lists: list[list[int]], limit: int) -> int:
    """How many first tokens (at most ``limit``) all of ``token_lists`` share."""
    n = 0
    while n < limit and all(ids[n] == token_lists[0][n] for ids in token_lists):
        n += 1
    return n
