"""KL(π‖π_ref) of a trained adapter, estimated on the policy's own samples.

For a response y sampled from π given x, the sequence KL is E_y[Σ_t log π(y_t|·) − log π_ref(y_t|·)].
Replacing each sampled-token term by the full-vocabulary KL at that position,
Σ_t KL(π(·|x, y<t) ‖ π_ref(·|x, y<t)), keeps the expectation (the prefixes are still policy samples)
and removes the variance of the sampled token, so a handful of samples per prompt suffices.

π's distributions are the ones each token was drawn from, kept by generation
(``GenerationSettings(keep_logits=True)``); π_ref's come from one forward of the reference (the base
model, the adapter's starting point) over the prompt and the sampled token ids, in packed rows that
compute the shared system turn once. A sample cut at the token limit has no end-of-turn token, and no
term for one.
"""

from __future__ import annotations

import torch

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.formatting import encode_prompt
from prefbench.engine.generation import Completion
from prefbench.engine.logprobs import packed_hidden
from prefbench.engine.packing import pack


def response_kl(reference, tokenizer, prompts: list, samples: list[Completion], batch_size: int = 8) -> list[float]:
    """Σ over each sample's tokens of KL(π ‖ π_ref) at that position, in nats, one value per sample; every
    sample must carry the logits it was drawn from."""
    out: list[float] = []
    with torch.inference_mode(), adapter_compute(reference):
        for start in range(0, len(prompts), batch_size):
            chunk = samples[start:start + batch_size]
            sequences = []
            for prompt, sample in zip(prompts[start:start + batch_size], chunk):
                if sample.logits is None or len(sample.logits) != len(sample.ids):
                    raise ValueError("response_kl needs samples generated with keep_logits=True")
                ids = encode_prompt(tokenizer, prompt)
                sequences.append((ids + list(sample.ids), [0] * len(ids) + [1] * len(sample.ids)))
            batch = pack(sequences, [], joint=False).to(reference.device)
            hidden, head = packed_hidden(reference, batch)
            sequence_of, token = batch.response      # each sequence's tokens, in order
            for k, sample in enumerate(chunk):
                logq = torch.log_softmax((hidden[token[sequence_of == k]] @ head.T).float(), -1)
                logp = torch.log_softmax(sample.logits.to(logq.device).float(), -1)
                out.append(max(0.0, float((logp.exp() * (logp - logq)).sum(dtype=torch.float64))))
    return out
