"""Attention over packed blocks: several sequences in one row, none attending to another, without
padding; and shared prefixes, so a conditional pair's instruction is computed once for both answers.

A training forward puts its sequences side by side in one row. Each :class:`Block` is a run of
queries that attend causally to themselves and fully to earlier runs of the row (their shared
prefixes): the instruction start every sequence of the row has in common (a chat template's system
turn) is laid out once at the row's start; a conditional pair ``(x, y_w, y_l)`` is laid out as
``[x y_w][y_l]`` with the second block's prefixes that common start and the rest of ``x``, so ``y_l``
sees ``x`` as if it followed it, and ``x`` goes through the model once.

The function is registered as a transformers attention implementation. Called with ``blocks`` it
does the above; called without (a padded batch with a mask: generation, scoring) it is exactly SDPA.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "prefbench_blocks"


@dataclass(frozen=True)
class Block:
    """Queries ``[start, start + length)`` of the row attend causally to themselves and fully to the keys of
    each ``(start, length)`` of ``prefixes``, in that order. The blocks of a row tile it in order, and a
    prefix is the start of an earlier block."""

    start: int
    length: int
    prefixes: tuple[tuple[int, int], ...] = ()

    @property
    def prefix_length(self) -> int:
        return sum(length for _, length in self.prefixes)


def block_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                    blocks: tuple[Block, ...] | None = None, **kwargs):
    """``query`` [1, H, L, D], ``key``/``value`` [1, H_kv, L, D] -> ([1, L, H, D], None)."""
    if blocks is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    dtype = query.dtype
    if query.device.type == "cpu":
        # attention is a small share of the FLOPs, and torch's CPU SDPA kernels are 3-5x slower in bfloat16 than
        # in float32 at these lengths (perf/cpu_kernels.py): blocks attend in float32, autocast or not
        wide = torch.promote_types(dtype, torch.float32)
        query, key, value = (t.to(wide) for t in (query, key, value))
    with torch.autocast(query.device.type, enabled=False):
        outputs = _attend(blocks, query, key, value, scaling, gqa=query.shape[1] != key.shape[1])
    return torch.cat(outputs, dim=2).to(dtype).transpose(1, 2).contiguous(), None


def _attend(blocks: tuple[Block, ...], query, key, value, scaling, gqa: bool) -> list:
    # the blocks tile the row in order: one split per tensor, whose backward is one concatenation (a slice per
    # block would give every block's gradient a zero-filled tensor the size of the whole row)
    lengths = [b.length for b in blocks]
    queries, keys, values = (torch.split(t, lengths, dim=2) for t in (query, key, value))
    index = {b.start: i for i, b in enumerate(blocks)}
    outputs = []
    for b, q, k, v in zip(blocks, queries, keys, values):
        if b.prefixes:   # the first tokens of earlier blocks (a shared instruction)
            k = torch.cat([keys[index[at]][:, :, :n] for at, n in b.prefixes] + [k], dim=2)
            v = torch.cat([values[index[at]][:, :, :n] for at, n in b.prefixes] + [v], dim=2)
            outputs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=_prefix_mask(b.length, b.prefix_length,
                                                                                           q.device),
                                                          scale=scaling, enable_gqa=gqa))
        else:
            outputs.append(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa))
    return outputs


@functools.lru_cache(maxsize=256)
def _prefix_mask(length: int, prefix: int, device: torch.device) -> torch.Tensor:
    """Query i sees the whole prefix and its own block up to itself (causal, aligned at the end)."""
    return torch.ones(length, prefix + length, dtype=torch.bool, device=device).tril(prefix)


def blocks_mask_marker(device) -> torch.Tensor:
    """What a blocks forward passes as ``attention_mask``: transformers hands a 4-D mask to the attention
    function unchanged instead of building an [L, L] mask the blocks make unnecessary."""
    return torch.empty(1, 1, 0, 0, dtype=torch.bool, device=device)


AttentionInterface.register(NAME, block_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)   # padded batches get SDPA's masks
