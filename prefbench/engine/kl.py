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

Samples drawn elsewhere (a served model's, :func:`text_kl`) come as text: they are tokenized where they
sit after their prompt, and π's distributions come from one forward of the policy over them instead.
"""

from __future__ import annotations

import dataclasses

import torch

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.formatting import encode, encode_prompt
from prefbench.engine.generation import Completion
from prefbench.engine.logprobs import packed_hidden
from prefbench.engine.packing import pack


def _packed(tokenizer, prompts: list, samples: list[Completion]):
    """The samples' prompt + response tokens in one packed row, only the response tokens scored."""
    sequences = []
    for prompt, sample in zip(prompts, samples):
        ids = encode_prompt(tokenizer, prompt)
        sequences.append((ids + list(sample.ids), [0] * len(ids) + [1] * len(sample.ids)))
    return pack(sequences, [], joint=False)


def text_kl(policy, reference, tokenizer, prompts: list, responses: list[tuple[str, bool]],
            batch_size: int = 8) -> list[float]:
    """:func:`response_kl` of policy samples given as ``(text, ended)`` (drawn by a server): each response is
    tokenized after its prompt, with the end-of-turn token when it ended, and the logits it was drawn from are
    the policy's at those tokens, from one forward."""
    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        part = prompts[start:start + batch_size]
        samples = []
        for prompt, (text, ended) in zip(part, responses[start:start + batch_size]):
            ids, mask = encode(tokenizer, prompt, text, ends=ended)
            samples.append(Completion(text, ended, sum(mask), ids=tuple(ids[len(ids) - sum(mask):])))
        with torch.inference_mode(), adapter_compute(policy):
            batch = _packed(tokenizer, part, samples).to(policy.device)
            hidden, head = packed_hidden(policy, batch)
            sequence_of, token = batch.response
            samples = [dataclasses.replace(s, logits=hidden[token[sequence_of == k]] @ head.T)
                       for k, s in enumerate(samples)]
        out += response_kl(reference, tokenizer, part, samples, batch_size)
    return out


def response_kl(reference, tokenizer, prompts: list, samples: list[Completion], batch_size: int = 8) -> list[float]:
    """Σ over each sample's tokens of KL(π ‖ π_ref) at that position, in nats, one value per sample; every
    sample must carry the logits it was drawn from."""
    out: list[float] = []
    with torch.inference_mode(), adapter_compute(reference):
        for start in range(0, len(prompts), batch_size):
            chunk = samples[start:start + batch_size]
            if any(sample.logits is None or len(sample.logits) != len(sample.ids) for sample in chunk):
                raise ValueError("response_kl needs samples generated with keep_logits=True")
            batch = _packed(tokenizer, prompts[start:start + batch_size], chunk).to(reference.device)
            hidden, head = packed_hidden(reference, batch)
            sequence_of, token = batch.response      # each sequence's tokens, in order
            for k, sample in enumerate(chunk):
                logq = torch.log_softmax((hidden[token[sequence_of == k]] @ head.T).float(), -1)
                logp = torch.log_softmax(sample.logits.to(logq.device).float(), -1)
                out.append(max(0.0, float((logp.exp() * (logp - logq)).sum(dtype=torch.float64))))
    return out
