"""The JPO paper's evaluation tasks: TL;DR summarization and Anthropic-Helpful dialogue.

Unlike the embedded tasks they ship no scorer: an eval prompt is a test item of the JPO release
(:func:`prefbench.formats.release.load_eval_examples`, the paper's first 500) carrying its gold response
in ``meta["gold"]``, and a pairwise judge (``local:`` or ``openai:``) compares each system's answer
with that gold response in both orders, as the paper did. ``location`` is where the release is read
from: the hub id by default, or a local copy of it (the tests use small files of the same schema).

Robustness variants perturb only the request the user wrote (for a conversation, its last user
turn): typos, re-casing and a distractor as for every task, and for TL;DR a held-out re-wording of
the instruction line (the paraphrase); Anthropic-Helpful has no instruction line to re-word.
"""

from __future__ import annotations

import random
from typing import ClassVar

from prefbench.formats.release import RELEASE_REPO, TLDR_RELEASE_INSTRUCTION, load_eval_examples
from prefbench.tasks.base import TaskError, TaskPrompt
from prefbench.tasks.perturb import PERTURBATIONS, make_variants

# Re-wordings of the TL;DR instruction line that no training prompt uses (the release's is fixed).
TLDR_PARAPHRASES = (
    "Write a short TL;DR of the following Reddit post.\nPost: {post}",
    "Summarize this post in one or two sentences.\nPost: {post}",
    "Here is a post from social media. Give a brief summary of it.\nPost: {post}",
)


class PaperTask:
    """Eval prompts with gold responses from the JPO release; judged pairwise against the gold."""

    name: ClassVar[str]
    judge_prompts: ClassVar[str]           # the templates a pairwise judge renders for this task
    variant_kinds: ClassVar[tuple[str, ...]]

    def __init__(self, location: str = RELEASE_REPO):
        self.location = location or RELEASE_REPO

    def prompts(self, split: str, n: int, seed: int) -> list[TaskPrompt]:
        """``eval``: the first ``n`` test items (``seed`` does not change them: the paper's eval set is fixed);
        ``validation`` (a sweep's selection prompts): the last ``n``, from the end backwards, so they stay
        apart from the eval items unless the two together outnumber the test file (the sweep checks)."""
        if split not in ("eval", "validation"):
            raise TaskError(f"{self.name} trains on the release's preference files, not on prompts sampled "
                                 "on-policy; its benchmark's data source must not be 'onpolicy'")
        items = list(enumerate(load_eval_examples(self.name, self.location, n if split == "eval" else None)))
        chosen = items if split == "eval" else items[::-1][:n]
        return [TaskPrompt(id=f"{self.name}-test-{k:04d}", text=ex.prompt, meta={"gold": ex.response})
                for k, ex in chosen]

    def variants(self, prompt: TaskPrompt, seed: int) -> list[TaskPrompt]:
        request = _last_user_turn(prompt.text)
        shell = TaskPrompt(prompt.id, request, prompt.meta)
        out = []
        for v in make_variants(shell, seed, lambda rng: self.paraphrase(request, rng), self.variant_kinds):
            out.append(TaskPrompt(v.id, _with_last_user_turn(prompt.text, v.text), v.meta, v.variant, v.parent))
        return out

    def paraphrase(self, request: str, rng: random.Random) -> str:
        raise NotImplementedError


class Tldr(PaperTask):
    name = "tldr"
    judge_prompts = "summarization"
    variant_kinds = PERTURBATIONS

    def paraphrase(self, request: str, rng: random.Random) -> str:
        head = TLDR_RELEASE_INSTRUCTION.split("{post}")[0]
        if not request.startswith(head):
            raise TaskError(f"a TL;DR prompt should start with {head!r}, got {request[:60]!r}")
        return rng.choice(TLDR_PARAPHRASES).format(post=request[len(head):])


class HhHelpful(PaperTask):
    name = "hh-helpful"
    judge_prompts = "dialogue"
    variant_kinds = tuple(k for k in PERTURBATIONS if k != "paraphrase")


def _last_user_turn(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")


def _with_last_user_turn(prompt, text: str):
    if isinstance(prompt, str):
        return text
    last = max(i for i, m in enumerate(prompt) if m["role"] == "user")
    return [*prompt[:last], {**prompt[last], "content": text}, *prompt[last + 1:]]
