"""Reference log-probs: every training sequence scored once under the base model (adapter disabled,
dropout off), cached on disk so no objective, seed or resumed run computes them twice. The cache is a
safetensors file (no pickle: reading one cannot run code) whose header records its full key; an entry is
reused only when that key equals this run's (prefbench.util.cache)."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from prefbench.engine.encoding import EncodedPairs
from prefbench.engine.logprobs import SequenceLogProbs
from prefbench.engine.statistics import BatchStatistics
from prefbench.util.cache import canonical_key, key_digest, stored_key
from prefbench.util.files import atomic_write_bytes
from prefbench.util.runs import cache_root

log = logging.getLogger("prefbench")

_SIDES = ("chosen", "rejected")
_FIELDS = [f.name for f in fields(SequenceLogProbs)]    # tensor names in the file: "<side>.<field>"


def reference_logprobs(model, pairs: EncodedPairs, pad_id: int, key: dict, packed: bool, batch_size: int = 8
                       ) -> tuple[SequenceLogProbs, SequenceLogProbs]:
    """Log-probs of every sequence under the base model, both spans, as (chosen, rejected); cached
    under ``key`` (what fixes the numbers: model, quantization, dtype, device, versions, ...) and the token ids."""
    from safetensors.torch import save

    full_key = {**key, "data": pairs.digest()}
    ident = canonical_key(full_key)
    path = cache_root() / "reference" / f"{key_digest(full_key)}.safetensors"
    cached = _load(path, ident, len(pairs))
    if cached is not None:
        log.info("reference log-probs: reused cache %s", path)
        return cached
    was_training = model.training
    model.eval()
    parts = []
    n = len(pairs)
    statistics = BatchStatistics(model, pairs, pad_id, joint=True, packed=packed, share_prefixes=True)
    with torch.no_grad(), model.disable_adapter():
        for start in tqdm(range(0, n, batch_size), desc="reference log-probs", unit="batch"):
            parts.append(pairs.split(statistics(list(range(start, min(start + batch_size, n)))).to("cpu")))
    model.train(was_training)
    chosen, rejected = SequenceLogProbs.cat([c for c, _ in parts]), SequenceLogProbs.cat([r for _, r in parts])
    tensors = {f"{side}.{name}": getattr(logps, name).contiguous()
               for side, logps in zip(_SIDES, (chosen, rejected)) for name in _FIELDS}
    atomic_write_bytes(path, save(tensors, metadata={"key": ident}))
    return chosen, rejected


def _load(path: Path, ident: str, n: int) -> tuple[SequenceLogProbs, SequenceLogProbs] | None:
    """The cached (chosen, rejected) when ``path`` records the key ``ident`` and holds every field for ``n``
    pairs; None otherwise (absent, or another key under the same digest, or edited: computed again)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    recorded = stored_key(path)
    if recorded is None:
        return None
    if recorded != ident:
        log.warning("reference log-probs: %s was written for another key; computing them again", path)
        return None
    try:
        saved = load_file(path)
    except SafetensorError:     # the header is whole, the data cut short
        saved = {}
    names = [f"{side}.{name}" for side in _SIDES for name in _FIELDS]
    if sorted(saved) != sorted(names) or any(saved[k].shape != (n,) for k in names):
        log.warning("reference log-probs: %s does not hold %d pairs' values; computing them again", path, n)
        return None
    chosen, rejected = (SequenceLogProbs(*(saved[f"{side}.{name}"] for name in _FIELDS)) for side in _SIDES)
    return chosen, rejected
