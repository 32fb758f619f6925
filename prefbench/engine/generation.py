"""Batched generation from a causal LM (optionally with a LoRA adapter), in the chat format training uses.

Prompts are chat-formatted exactly like the training sequences (``formatting.encode_prompt``), sorted
by length so a batch carries little padding, left-padded (so every row's new tokens start at the same
column), and decoded with the KV cache under ``torch.inference_mode``, in the model's compute dtype
(``adapters.adapter_compute``). Ended rows leave their batch (and the cache) once they are an eighth of it,
so a decoding step computes few rows that no longer write. Greedy rows take the most likely token (what
transformers' greedy ``generate`` computes: a test holds them equal); sampled rows draw from their own
seeded stream (:mod:`prefbench.engine.sampling`), so the same prompt, settings and seed give the same
samples whatever else is in the batch. Each completion says whether it ended (the model emitted its
end-of-turn token) or was cut at ``max_new_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.formatting import encode_prompt
from prefbench.engine.packing import common_start
from prefbench.engine.sampling import nucleus_sample, row_uniforms

# rows decoded together by the stages: on a CPU the matrix products of a decoding step only approach the
# machine's throughput with many rows (answers/s at 32, 64 and 128 rows: docs/performance.md)
GENERATION_BATCH = 128
# ended rows leave the batch (and the cache) once they are an eighth of it: removing rows copies every layer's
# cache, so they are removed several at a time, decoding the ended ones unread meanwhile (measured against
# removing each at once: faster by at most the machine's noise, docs/performance.md "Ended rows leave")
COMPACT_AT = 8


@dataclass(frozen=True)
class Completion:
    text: str
    finished: bool      # ended with the end-of-turn token, rather than cut at max_new_tokens
    tokens: int         # tokens generated, the end-of-turn token included
    ids: tuple[int, ...] = field(default=(), compare=False, repr=False)   # those tokens
    # [tokens, V]: the model's logits each token was chosen from (with GenerationSettings.keep_logits)
    logits: torch.Tensor | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 48
    do_sample: bool = False          # greedy by default (evaluation); sampling builds on-policy data and KL samples
    temperature: float = 1.0
    top_p: float = 1.0
    num_samples: int = 1             # samples per prompt (only with do_sample)
    batch_size: int = GENERATION_BATCH   # rows decoded together
    seed: int = 0
    keep_logits: bool = False        # completions carry the logits of every step (for the KL estimate)

    def __post_init__(self) -> None:
        if self.num_samples > 1 and not self.do_sample:
            raise ValueError("num_samples > 1 needs do_sample=True (greedy decoding gives one answer)")


@dataclass(frozen=True)
class _Row:
    ids: list[int]
    settings: GenerationSettings
    key: tuple          # (group, prompt, sample): the row's place in the output and its sampling stream


def generate(model, tokenizer, prompts: list, settings: GenerationSettings = GenerationSettings(),
             desc: str = "generate") -> list[list[Completion]]:
    """``settings.num_samples`` completions for each prompt (text or chat messages), in prompt order."""
    return generate_groups(model, tokenizer, [(prompts, settings)], desc)[0]


def generate_groups(model, tokenizer, groups: list[tuple[list, GenerationSettings]],
                    desc: str = "generate") -> list[list[list[Completion]]]:
    """:func:`generate` for several (prompts, settings) groups at once, their rows sharing batches (greedy
    answers and sampled ones decode side by side); batches hold the first group's ``batch_size`` rows."""
    rows = [_Row(encode_prompt(tokenizer, p), settings, (g, i, s))
            for g, (prompts, settings) in enumerate(groups) for i, p in enumerate(prompts)
            for s in range(settings.num_samples)]
    rows.sort(key=lambda r: len(r.ids))
    out = [[[None] * settings.num_samples for _ in prompts] for prompts, settings in groups]
    was_training = model.training
    model.eval()
    size = groups[0][1].batch_size
    bar = tqdm(total=len(rows), desc=desc, unit="answer", leave=False)
    try:
        for start in range(0, len(rows), size):
            batch = rows[start:start + size]
            with torch.inference_mode(), adapter_compute(model):
                for row, (tokens, logits) in zip(batch, _decode(model, batch, tokenizer.pad_token_id,
                                                                 tokenizer.eos_token_id)):
                    g, i, s = row.key
                    out[g][i][s] = _completion(tokens, logits, tokenizer)
            bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return out


def _decode(model, rows: list[_Row], pad: int, eos: int) -> list[tuple[list[int], list[torch.Tensor]]]:
    """New tokens of each row (up to and including its end-of-turn token), decoding the rows together, and
    for rows whose settings keep them, the logits each was chosen from."""
    from transformers import DynamicCache

    limits = torch.tensor([r.settings.max_new_tokens for r in rows], device=model.device)
    sampled = [i for i, r in enumerate(rows) if r.settings.do_sample]
    uniforms = {i: row_uniforms(rows[i].settings.seed, rows[i].key, rows[i].settings.max_new_tokens)
                for i in sampled}
    cache = DynamicCache(config=model.config)
    # the start every prompt shares (a chat template's system turn) goes through the model once
    c = common_start([r.ids for r in rows], limit=min(len(r.ids) for r in rows) - 1)   # one own token each
    if c:
        model(input_ids=torch.tensor([rows[0].ids[:c]], device=model.device), cache=cache, use_cache=True,
              logits_to_keep=1)
        cache.batch_repeat_interleave(len(rows))
    width = max(len(r.ids) for r in rows) - c
    input_ids = torch.tensor([[pad] * (width - len(r.ids) + c) + r.ids[c:] for r in rows], device=model.device)
    own = torch.tensor([[0] * (width - len(r.ids) + c) + [1] * (len(r.ids) - c) for r in rows], device=model.device)
    mask = torch.cat([own.new_ones(len(rows), c), own], dim=1)
    # position ids as transformers' generate computes them for left-padded rows (padding between the shared
    # start and a row's own tokens is masked, like padding before them)
    positions = (c + own.cumsum(-1) - 1).masked_fill(own == 0, 1)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    new: list[tuple[list[int], list[torch.Tensor]]] = [([], []) for _ in rows]
    live = torch.arange(len(rows), device=model.device)     # the batch's rows, as indices into ``rows``
    writing = torch.ones(len(rows), dtype=torch.bool, device=model.device)   # which of them still write
    step = 0
    while True:
        at = writing.nonzero()[:, 0]
        writers = live[at]
        ids = writers.tolist()
        chosen = _choose(logits if len(at) == len(live) else logits[at], ids, rows, uniforms, step)
        for j, (r, t) in enumerate(zip(ids, chosen.tolist())):
            new[r][0].append(t)
            if rows[r].settings.keep_logits:
                new[r][1].append(logits[at[j]].clone())
        step += 1
        writing[at] = (chosen != eos) & (limits[writers] > step)
        ended = len(live) - int(writing.sum())
        if ended == len(live):
            return new
        # an ended row decodes padding until it leaves; what it computes is never read
        tokens = torch.full_like(live, pad).index_put_((at,), chosen)
        if ended * COMPACT_AT >= len(live):   # ended rows leave the batch and the cache
            keep = writing.nonzero()[:, 0]
            cache.batch_select_indices(keep)
            live, tokens, mask, positions, writing = live[keep], tokens[keep], mask[keep], positions[keep], writing[keep]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        positions = positions[:, -1:] + 1
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                       cache=cache, use_cache=True).logits[:, -1]


def _choose(logits: torch.Tensor, live: list[int], rows: list[_Row], uniforms: dict, step: int) -> torch.Tensor:
    """Each live row's next token: greedy rows the arg-max (in float32, as transformers does), sampled rows
    a draw with their settings, rows of the same settings drawn together."""
    tokens = logits.float().argmax(-1)
    by_settings: dict[GenerationSettings, list[int]] = {}
    for j, r in enumerate(live):
        if rows[r].settings.do_sample:
            by_settings.setdefault(rows[r].settings, []).append(j)
    for settings, js in by_settings.items():
        u = torch.stack([uniforms[live[j]][step] for j in js])
        tokens[js] = nucleus_sample(logits[js], u, settings.temperature, settings.top_p).to(tokens.device)
    return tokens


def _completion(tokens: list[int], logits: list[torch.Tensor], tokenizer) -> Completion:
    """A row's new tokens: ended if the last is the end-of-turn token."""
    finished = len(tokens) > 0 and tokens[-1] == tokenizer.eos_token_id
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    return Completion(text.strip(), finished=finished, tokens=len(tokens), ids=tuple(tokens),
                      logits=torch.stack(logits) if logits else None)
