"""Batched generation from a causal LM (optionally with a LoRA adapter), in the chat format training uses.

Prompts are chat-formatted exactly like the training sequences (``formatting.encode_prompt``), sorted
by length so a batch carries little padding, left-padded (so every row's new tokens start at the same
column), and decoded with the KV cache under ``torch.inference_mode``, in the model's compute dtype
(``adapters.adapter_compute``). Sampling is seeded per batch, so the same prompts, settings and seed
give the same samples. Each completion says whether it ended (the model emitted its end-of-turn token)
or was cut at ``max_new_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.formatting import encode_prompt

# rows decoded together by the stages: on a CPU the matrix products of a decoding step only approach the
# machine's throughput with many rows (answers/s at 32, 64 and 128 rows: docs/performance.md)
GENERATION_BATCH = 128


@dataclass(frozen=True)
class Completion:
    text: str
    finished: bool      # ended with the end-of-turn token, rather than cut at max_new_tokens
    tokens: int         # tokens generated, the end-of-turn token included


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 48
    do_sample: bool = False          # greedy by default (evaluation); sampling builds on-policy data and KL samples
    temperature: float = 1.0
    top_p: float = 1.0
    num_samples: int = 1             # samples per prompt (only with do_sample)
    batch_size: int = 16             # prompts per batch
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples > 1 and not self.do_sample:
            raise ValueError("num_samples > 1 needs do_sample=True (greedy decoding gives one answer)")


def generate(model, tokenizer, prompts: list, settings: GenerationSettings = GenerationSettings(),
             desc: str = "generate") -> list[list[Completion]]:
    """``settings.num_samples`` completions for each prompt (text or chat messages), in prompt order."""
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[list[Completion]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id
    sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p,
                "top_k": 0} if settings.do_sample else {"do_sample": False, "temperature": None, "top_p": None,
                                                         "top_k": None}
    bar = tqdm(total=len(prompts) * settings.num_samples, desc=desc, unit="answer", leave=False)
    try:
        for b, start in enumerate(range(0, len(order), settings.batch_size)):
            idx = order[start:start + settings.batch_size]
            width = max(len(encoded[i]) for i in idx)
            input_ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in idx])
            attention_mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in idx])
            torch.manual_seed(settings.seed * 100_003 + b)
            with torch.inference_mode(), adapter_compute(model):
                tokens = model.generate(
                    input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                    max_new_tokens=settings.max_new_tokens, num_return_sequences=settings.num_samples,
                    pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, **sampling)
            new = tokens[:, width:]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for j, text in enumerate(texts):
                out[idx[j // settings.num_samples]].append(_completion(text, new[j], tokenizer))
            bar.update(len(texts))
    finally:
        bar.close()
        model.train(was_training)
    return out


def _completion(text: str, ids: torch.Tensor, tokenizer) -> Completion:
    """A row of new tokens: generation pads a row that ended before the others (with the pad token, which
    may be the end-of-turn token itself), so the row ended where its first end-of-turn token is."""
    ends = (ids == tokenizer.eos_token_id).nonzero()
    return Completion(text.strip(), finished=len(ends) > 0, tokens=int(ends[0]) + 1 if len(ends) else len(ids))
