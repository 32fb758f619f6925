"""Turning (instruction, response) text into token ids and a response mask, the same way for both spans.

A prompt is formatted by the tokenizer's chat template. A tokenizer without one (a base model such as
Mistral-7B-v0.1), or a run that asks for it (``prompt_format: plain``), gets the JPO paper's plain-text
format instead, installed as the tokenizer's template by :func:`use_prompt_format` so that every stage
(training, generation, KL) formats alike::

    ### Instructions: {instruction}

    ### Response: {response}

A response is tokenized where it sits in the text, after its prompt (:func:`encode`), not on its own: a
SentencePiece tokenizer (Llama, Mistral) gives a response tokenized alone a leading word boundary that
it does not have after a template ending in a newline, and a byte-level BPE tokenizer gives it none
where the plain format puts a space.
"""

from __future__ import annotations

import torch

from prefbench.util.errors import ConfigError

PROMPT_FORMATS = ("auto", "chat", "plain")

# The paper's format (github.com/Hritikbansal/dove, dove/utils.py fmt_prompt and dove/inference.py); a
# conversation (several turns) becomes a Human:/Assistant: transcript inside the instruction. The response
# follows the prompt after a space (PLAIN_SEPARATOR), which a SentencePiece tokenizer folds into the
# response's first word, exactly as the model generates it after "### Response:".
PLAIN_TEMPLATE = (
    "### Instructions: "
    "{% if messages | length == 1 %}{{ messages[0]['content'] }}"
    "{% else %}{% for m in messages %}{{ ('Human' if m['role'] == 'user' else m['role'] | capitalize) + ': ' }}"
    "{{ m['content'] }}{{ '' if loop.last else '\\n\\n' }}{% endfor %}{% endif %}"
    "{{ '\\n\\n### Response:' }}"   # in expressions: templates drop a newline right after a block tag
)
PLAIN_SEPARATOR = " "


def use_prompt_format(tokenizer, prompt_format: str, name: str) -> None:
    """Make ``tokenizer``'s template the run's prompt format: ``chat`` keeps the model's own template (an
    error when it has none), ``plain`` installs the paper's format, ``auto`` installs it only where the model
    has no template. ``name`` (the model) is for the error message."""
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    if prompt_format == "chat" and not tokenizer.chat_template:
        raise ConfigError(f"{name}: its tokenizer has no chat template; use prompt_format 'plain' (the JPO paper's "
                          "'### Instructions:' format) or 'auto'")
    if prompt_format == "plain" or not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_TEMPLATE


def is_plain(tokenizer) -> bool:
    return tokenizer.chat_template == PLAIN_TEMPLATE


def _messages(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)  # some return a BatchEncoding


def _text(tokenizer, prompt: str | list[dict]) -> str:
    return tokenizer.apply_chat_template(_messages(prompt), tokenize=False, add_generation_prompt=True)


def _tokenize(tokenizer, text: str) -> list[int]:
    """A chat template writes its own special tokens; the plain format's text is tokenized as the paper does,
    with the tokenizer's own (a Llama/Mistral BOS before the first word's boundary)."""
    return tokenizer(text, add_special_tokens=is_plain(tokenizer))["input_ids"]


def encode_prompt(tokenizer, prompt: str | list[dict]) -> list[int]:
    """The formatted instruction up to and including the assistant's generation prompt: the exact
    context in which training scores a response and generation produces one."""
    if is_plain(tokenizer):
        return _tokenize(tokenizer, _text(tokenizer, prompt))
    return _ids(tokenizer.apply_chat_template(_messages(prompt), tokenize=True, add_generation_prompt=True,
                                              return_dict=False))


def response_ids(tokenizer, prompt: str | list[dict], prompt_ids: list[int], response: str) -> list[int]:
    """``response``'s tokens as they fall in the formatted text after ``prompt`` (whose tokens are
    ``prompt_ids``). Where the boundary does not survive tokenization (the response's first characters
    merge with the prompt's last token, e.g. a response starting with a newline after a template ending in
    one) the response is tokenized on its own."""
    sep = PLAIN_SEPARATOR if is_plain(tokenizer) else ""
    full = _tokenize(tokenizer, _text(tokenizer, prompt) + sep + response)
    if full[:len(prompt_ids)] == prompt_ids:
        return full[len(prompt_ids):]
    return tokenizer(sep + response, add_special_tokens=False)["input_ids"]


def encode(tokenizer, prompt: str | list[dict], response: str, max_length: int | None = None, ends: bool = True
           ) -> tuple[list[int], list[int]]:
    """Formatted instruction (text, or chat messages) followed by the response and, when the response
    ``ends`` (it is complete, not cut at a token limit), the end-of-turn token.

    Returns ``(input_ids, response_mask)``. The prompt part is the template with the generation prompt,
    so the response is scored exactly where generation would produce it.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    ids = prompt_ids + response_ids(tokenizer, prompt, prompt_ids, response) + ([tokenizer.eos_token_id] if ends else [])
    mask = [0] * len(prompt_ids) + [1] * (len(ids) - len(prompt_ids))
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
