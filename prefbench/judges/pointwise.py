"""Pointwise judges: a score per response; two systems are compared prompt by prompt by their scores.

A pointwise judge has no slots, so it has no position bias and needs no second order. Per prompt,
the system beats the baseline when its score is higher (see :func:`score_outcome`).
"""

from __future__ import annotations

from typing import Protocol

import torch

from prefbench.tasks.base import Task, TaskPrompt


class PointwiseJudge(Protocol):
    name: str

    def score_many(self, items: list[tuple[TaskPrompt, str]]) -> list[float]:
        """One score per ``(prompt, response)``, in order."""


def score_outcome(system: float, baseline: float) -> float:
    """The per-prompt score s in {1, 0.5, 0} of a system against the baseline: win, tie, loss."""
    return 1.0 if system > baseline else 0.0 if system < baseline else 0.5


class GoldJudge:
    """The task's own judge (verifier, lexicon reward): exact, offline, and the ground truth."""

    def __init__(self, task: Task):
        self.task = task
        self.name = f"gold:{task.name}"

    def score_many(self, items: list[tuple[TaskPrompt, str]]) -> list[float]:
        return [float(self.task.score(prompt, response)) for prompt, response in items]


class RewardModelJudge:
    """A local reward model: any ``AutoModelForSequenceClassification`` with one output (hub id or path).

    Each (instruction, response) is formatted as a user turn and an assistant turn with the
    tokenizer's chat template when it has one — the format such reward models are trained on — and
    as ``instruction + "\\n\\n" + response`` otherwise; the raw scalar output is the score. Texts are
    batched longest-first (so each batch pads little); a longer text keeps its first ``max_length`` tokens.
    """

    def __init__(self, model: str, device: str | None = None, batch_size: int = 16, max_length: int = 1024):
        from transformers import AutoModelForSequenceClassification

        from prefbench.engine.models import load_tokenizer, resolve_model_path

        self.model_name = model
        self.name = f"reward-model:{model}"
        self.batch_size = batch_size
        self.max_length = max_length
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(model, prompt_format=None)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(model), dtype=dtype)
        if self.model.config.num_labels != 1:
            raise ValueError(f"{model} has {self.model.config.num_labels} outputs; a reward model has exactly one "
                             "(num_labels=1)")
        # The model reads the reward at the last non-padding token, so it must know the pad id.
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(device).eval()
        self.device = device

    def __repr__(self) -> str:
        return f"RewardModelJudge(model={self.model_name!r}, device={self.device!r})"

    def encode(self, instruction: str, response: str) -> list[int]:
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}], tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(f"{instruction}\n\n{response}")["input_ids"]
        return ids[: self.max_length]

    @torch.inference_mode()
    def score_many(self, items: list[tuple[TaskPrompt, str]]) -> list[float]:
        encoded = [self.encode(prompt.text, response) for prompt, response in items]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        scores = [0.0] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            padded = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            logits = self.model(input_ids=padded["input_ids"].to(self.device),
                                attention_mask=padded["attention_mask"].to(self.device)).logits
            for i, value in zip(batch, logits[:, 0].float().tolist()):
                scores[i] = value
        return scores
