"""Reference log-probs: every training sequence scored once under the base model (adapter disabled,
dropout off), cached on disk so no objective, seed or resumed run computes them twice."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import torch
from tqdm.auto import tqdm

from prefbench.engine.encoding import EncodedPairs
from prefbench.engine.logprobs import SequenceLogProbs
from prefbench.engine.statistics import BatchStatistics
from prefbench.util.files import atomic_write_bytes
from prefbench.util.runs import cache_root

log = logging.getLogger("prefbench")


def reference_logprobs(model, pairs: EncodedPairs, pad_id: int, key: dict, packed: bool, batch_size: int = 8
                       ) -> tuple[SequenceLogProbs, SequenceLogProbs]:
    """Log-probs of every sequence under the base model, both spans, as (chosen, rejected); cached
    under a hash of ``key`` (what fixes the numbers: model, quantization, dtype, ...) and the token ids."""
    digest = hashlib.sha256(json.dumps({**key, "data": pairs.digest()}, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / "reference" / f"{digest}.pt"
    if path.exists():
        saved = torch.load(path)
        log.info("reference log-probs: reused cache %s", path)
        return SequenceLogProbs(**saved["chosen"]), SequenceLogProbs(**saved["rejected"])
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
    buf = io.BytesIO()
    torch.save({"chosen": vars(chosen), "rejected": vars(rejected), "key": key}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return chosen, rejected
