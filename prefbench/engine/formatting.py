"""Turning (instruction, response) text into token ids and a response mask, the same way for both spans."""

from __future__ import annotations

import torch


def encode_prompt(tokenizer, prompt: str | list[dict]) -> list[int]:
    """The chat-formatted instruction up to and including the assistant's generation prompt: the
    exact context in which training scores a response and generation produces one."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def encode(tokenizer, prompt: str | list[dict], response: str, max_length: int | None = None, ends: bool = True
           ) -> tuple[list[int], list[int]]:
    """Chat-formatted instruction (text, or chat messages) followed by the response and, when the response
    ``ends`` (it is complete, not cut at a token limit), the end-of-turn token.

    Returns ``(input_ids, response_mask)``. The prompt part is the tokenizer's chat template with
    the generation prompt, so the response is scored exactly where generation would produce it.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = tokenizer(response + (tokenizer.eos_token if ends else ""), add_special_tokens=False)["input_ids"]
    ids = prompt_ids + list(response_ids)
    mask = [0] * len(prompt_ids) + [1] * len(response_ids)
    if max_length is not None and len(ids) > max_length:
        ids, mask = ids[:max_length], mask[:max_length]
    return ids, mask


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of ``(input_ids, response_mask)`` into tensors."""
    width = max(len(ids) for ids, _ in encoded)
    rows = [(ids + [pad_id] * (width - len(ids)), [1] * len(ids) + [0] * (width - len(ids)), mask + [0] * (width - len(mask)))
            for ids, mask in encoded]
    input_ids, attention_mask, response_mask = (torch.tensor(col) for col in zip(*rows))
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}
