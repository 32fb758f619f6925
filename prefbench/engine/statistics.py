"""A model's per-sequence statistics for a batch of training sequences: packed into one padding-free
row where the model allows it (:mod:`prefbench.engine.packing`), as a padded batch where it does not.

The packed path computes logits as the LM head applied to the decoder's last hidden state. A model
that changes its logits after the head (soft-capping, a logit scale) would get different numbers,
so :func:`packing_matches` compares the two paths once on real data before training uses the packed one.
"""

from __future__ import annotations

import logging

import torch

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.encoding import EncodedPairs
from prefbench.engine.logprobs import SequenceLogProbs, model_sequence_logprobs, packed_sequence_logprobs
from prefbench.registry import Span

log = logging.getLogger("prefbench")

# Mean per-token disagreement between the packed and the padded path above which packing is not used:
# both compute the same function, so they differ by rounding only (a few hundredths of a nat per token in
# bfloat16); a model that transforms its logits after the head differs by whole nats.
PACKING_TOLERANCE = 0.1


class BatchStatistics(torch.nn.Module):
    """``forward(indices)`` -> statistics of those pairs' chosen sequences, then their rejected ones. A
    module, so that data-parallel training wraps exactly the computation that runs. ``joint``: the
    joint span is needed (else only response tokens are scored, and the joint span is NaN).
    ``statistics``: the token-level statistics (TOKEN_STATISTICS) of ``span`` (``joint`` must then be set for the
    joint span) to add, for an objective that declares them; none for every other, which computes exactly what it
    did without them."""

    def __init__(self, model, pairs: EncodedPairs, pad_id: int, joint: bool, packed: bool, share_prefixes: bool,
                 statistics: tuple[str, ...] = (), span: Span = "response"):
        super().__init__()
        self.model = model
        self.pairs, self.pad_id, self.joint = pairs, pad_id, joint
        self.packed, self.share_prefixes = packed, share_prefixes
        self.statistics, self.span = tuple(statistics), span

    def forward(self, indices: list[int]) -> SequenceLogProbs:
        device = next(self.model.parameters()).device
        with adapter_compute(self.model):
            if self.packed:
                batch = self.pairs.packed(indices, self.joint, self.share_prefixes).to(device)
                return packed_sequence_logprobs(self.model, batch, self.statistics, self.span)
            return model_sequence_logprobs(self.model, **self.pairs.batch(indices, self.pad_id, device),
                                           statistics=self.statistics, span=self.span)


def packing_matches(model, pairs: EncodedPairs, pad_id: int, n: int = 2) -> bool:
    """Whether the packed path reproduces the padded one on the first ``n`` pairs (eval mode, no grad)."""
    indices = list(range(min(n, len(pairs))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = BatchStatistics(model, pairs, pad_id, joint=True, packed=True, share_prefixes=True)(indices)
            padded = BatchStatistics(model, pairs, pad_id, joint=True, packed=False, share_prefixes=False)(indices)
    finally:
        model.train(was_training)
    gap = ((packed.joint_logps - padded.joint_logps).abs().sum() / padded.joint_tokens.sum()).item()
    if gap > PACKING_TOLERANCE:
        log.warning("packed sequences disagree with padded ones by %.3f nats per token on this model (its logits "
                    "are not the LM head of the last hidden state); training on padded batches", gap)
        return False
    return True
