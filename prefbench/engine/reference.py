"""Reference log-probs: every training sequence scored once under the base model (adapter disabled,
dropout off), cached on disk so no objective, seed or resumed run computes them twice. The cache is a
safetensors file (no pickle: reading one cannot run code) whose header records its full key; an entry is
reused only when that key equals this run's (prefbench.util.cache).

A run that starts from a trained adapter (a later round of an iterative objective) has that policy as its
reference instead, or APO's extrapolation of it (:class:`ReferencePolicy`); the key then holds the adapters'
content digests, so no entry serves another round's policy."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from prefbench.engine.adapters import adapter_digest, policy_of
from prefbench.engine.encoding import EncodedPairs
from prefbench.engine.logprobs import SequenceLogProbs
from prefbench.engine.statistics import BatchStatistics
from prefbench.registry import Span
from prefbench.util.cache import canonical_key, key_digest, stored_key
from prefbench.util.files import atomic_write_bytes
from prefbench.util.runs import cache_root

log = logging.getLogger("prefbench")

_SIDES = ("chosen", "rejected")
_SUMS = ("response_logps", "response_tokens", "joint_logps", "joint_tokens")   # [pairs] per side
# tensor names in the file: "<side>.<field>"; "token_logps" ([pairs, T] per side, rows zero-padded to the longest)
# only in a token-level entry; the KL never (a function of the policy)
_FIELDS = [f.name for f in fields(SequenceLogProbs) if f.name != "kl"]


@dataclass(frozen=True)
class ReferencePolicy:
    """Whose log-probs the reference holds: the base model's (the default); or those of the policy training
    starts from, the adapter folder ``start``, extrapolated by ``extrapolation`` α away from the policy of
    ``previous`` ("" = the base model), APO's Nesterov step: log π_ref = log π_start + α (log π_start − log π_previous).
    α = 0 is the starting policy itself (one pass, the same numbers the policy gives at step 1)."""

    start: str = ""
    previous: str = ""
    extrapolation: float = 0.0

    def key(self) -> dict:
        """What it adds to the cache key: nothing for the base model (its entries stay valid), else the digests."""
        if not self.start:
            return {}
        policy = {"start": adapter_digest(self.start)}
        if self.extrapolation:
            policy |= {"previous": adapter_digest(self.previous) if self.previous else "base",
                       "extrapolation": self.extrapolation}
        return {"policy": policy}


def extrapolated(start: SequenceLogProbs, previous: SequenceLogProbs, alpha: float) -> SequenceLogProbs:
    """log π_start + α (log π_start − log π_previous) of both spans' summed log-probs, and of the per-token rows
    where there are any (token counts are the sequences', unchanged). The log-normaliser of APO's extrapolated
    policy is left out: it depends on the instruction only, so it cancels within a conditional pair's margin."""
    def moved(name: str):
        here, before = getattr(start, name), getattr(previous, name)
        return None if here is None else here + alpha * (here - before)

    return replace(start, **{name: moved(name) for name in ("response_logps", "joint_logps", "token_logps")})


def reference_logprobs(model, pairs: EncodedPairs, pad_id: int, key: dict, packed: bool, batch_size: int = 8,
                       policy: ReferencePolicy = ReferencePolicy(), token_span: Span | None = None
                       ) -> tuple[SequenceLogProbs, SequenceLogProbs]:
    """Log-probs of every sequence under the reference ``policy`` (the base model by default), both spans, as
    (chosen, rejected); cached under ``key`` (what fixes the numbers: model, quantization, dtype, device,
    versions, ...), the token ids and the policy's adapters. ``token_span``: also every sequence's per-token
    log-probs of that span, for an objective that declares ``token_logps`` (an entry of its own, keyed by it)."""
    from safetensors.torch import save

    full_key = {**key, "data": pairs.digest(), **policy.key()}
    if token_span:
        full_key["token_logps"] = token_span
    ident = canonical_key(full_key)
    path = cache_root() / "reference" / f"{key_digest(full_key)}.safetensors"
    # values per sequence of a side (a list's responses: one each)
    cached = _load(path, ident, len(pairs.chosen), token_span is not None)
    if cached is not None:
        log.info("reference log-probs: reused cache %s", path)
        return cached
    was_training = model.training
    model.eval()
    statistics = BatchStatistics(model, pairs, pad_id, joint=True, packed=packed, share_prefixes=True,
                                 statistics=("token_logps",) if token_span else (), span=token_span or "response")
    chosen, rejected = _policy_logprobs(model, statistics, batch_size, policy.start)
    if policy.extrapolation:
        previous = _policy_logprobs(model, statistics, batch_size, policy.previous)
        chosen, rejected = (extrapolated(s, p, policy.extrapolation) for s, p in zip((chosen, rejected), previous))
    model.train(was_training)
    tensors = {f"{side}.{name}": getattr(logps, name).contiguous()
               for side, logps in zip(_SIDES, (chosen, rejected)) for name in _FIELDS
               if getattr(logps, name) is not None}
    atomic_write_bytes(path, save(tensors, metadata={"key": ident}))
    return chosen, rejected


def _policy_logprobs(model, statistics: BatchStatistics, batch_size: int, adapter: str
                     ) -> tuple[SequenceLogProbs, SequenceLogProbs]:
    """(chosen, rejected) log-probs of every pair under the policy of ``adapter`` ("" = the base model)."""
    pairs, parts = statistics.pairs, []
    n = len(pairs)
    with torch.no_grad(), policy_of(model, adapter):
        for start in tqdm(range(0, n, batch_size), desc="reference log-probs", unit="batch"):
            parts.append(pairs.split(statistics(list(range(start, min(start + batch_size, n)))).to("cpu")))
    return SequenceLogProbs.cat([c for c, _ in parts]), SequenceLogProbs.cat([r for _, r in parts])


def _load(path: Path, ident: str, n: int, token_level: bool) -> tuple[SequenceLogProbs, SequenceLogProbs] | None:
    """The cached (chosen, rejected) when ``path`` records the key ``ident`` and holds every field for ``n``
    pairs (``token_level``: the token rows too, [n, T]); None otherwise (absent, or another key under the same
    digest, or edited: computed again)."""
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
    stored = _FIELDS if token_level else _SUMS
    names = [f"{side}.{name}" for side in _SIDES for name in stored]
    if sorted(saved) != sorted(names) or any(saved[k].shape[:1] != (n,) or saved[k].dim() != (
            2 if k.endswith("token_logps") else 1) for k in names):
        log.warning("reference log-probs: %s does not hold %d sequences' values; computing them again", path, n)
        return None
    chosen, rejected = (SequenceLogProbs(**{name: saved[f"{side}.{name}"] for name in stored}) for side in _SIDES)
    return chosen, rejected
