"""A pairwise judge from a local transformers causal LM, read from log-probs rather than text.

The judge prompt is rendered with the model's chat template, the assistant turn is started with
the template's answer opening (``[[``, as in ``[[A]]``), and the verdict is whichever of the next
tokens "A" and "B" the model gives the higher log-probability:

    winner = argmax_{x in {A, B}} log p(x | chat(prompt) + "[[")

Reading two log-probs instead of sampling text means the verdict is deterministic, costs one
forward pass and can never be unparseable; the cost is that such a judge never says "tie" (only
exactly equal log-probs do), so ties come from the two orders disagreeing.
"""

from __future__ import annotations

from typing import Any

import torch

from prefbench.judges.verdicts import DEFAULT_TEMPLATE, JudgeError, Verdict, check_template, render_prompt


class LocalLMJudge:
    concurrent = False

    def __init__(self, model: str, device: str | None = None, template: str = DEFAULT_TEMPLATE,
                 answer_prefix: str = "[["):
        from prefbench.engine.models import load_base_model, load_tokenizer

        self.model_name = model
        self.template = check_template(template)
        self.answer_prefix = answer_prefix
        self.name = f"local:{model}"
        self.tokenizer = load_tokenizer(model, prompt_format=None)
        self.model = load_base_model(model, quantization="none", device=device).eval()
        self.device = next(self.model.parameters()).device
        self._prefix_ids = self._encode(answer_prefix)
        self.letter_ids = {letter: self._letter_token(letter) for letter in ("A", "B")}

    def __repr__(self) -> str:
        return f"LocalLMJudge(model={self.model_name!r}, device={str(self.device)!r})"

    def identity(self) -> dict[str, Any]:
        return {"kind": "local", "model": self.model_name, "answer_prefix": self.answer_prefix}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _letter_token(self, letter: str) -> int:
        """The token the model would emit for ``letter`` right after the answer prefix."""
        ids = self._encode(self.answer_prefix + letter)
        if ids[: len(self._prefix_ids)] != self._prefix_ids or len(ids) == len(self._prefix_ids):
            raise JudgeError(f"{self.name}: the tokenizer merges {letter!r} into the answer prefix "
                             f"{self.answer_prefix!r}; pass an answer_prefix that ends at a token boundary")
        return ids[len(self._prefix_ids)]

    def prompt_ids(self, instruction: str, response_a: str, response_b: str) -> list[int]:
        """Token ids of the chat-formatted judge prompt followed by the answer prefix."""
        prompt = render_prompt(self.template, instruction, response_a, response_b)
        if self.tokenizer.chat_template:
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                                     add_generation_prompt=True, return_dict=False)
            if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
                ids = ids["input_ids"]
        else:  # a base model: the prompt, then the answer on the next line
            ids = self.tokenizer(prompt + "\n")["input_ids"]
        return list(ids) + self._prefix_ids

    @torch.inference_mode()
    def judge(self, instruction: str, response_a: str, response_b: str) -> Verdict:
        ids = torch.tensor([self.prompt_ids(instruction, response_a, response_b)], device=self.device)
        logits = self.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
        logps = torch.log_softmax(logits, dim=-1)
        a, b = (logps[self.letter_ids[x]].item() for x in ("A", "B"))
        winner = "A" if a > b else "B" if b > a else "tie"
        return Verdict(winner=winner, raw=f"logp(A)={a:.6f} logp(B)={b:.6f}")
