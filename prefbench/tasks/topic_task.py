"""What the embedded tasks share: topics split between train and eval by name, robustness variants
built from each task's own held-out paraphrase, and the score as the headline of ``score_details``."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from prefbench.tasks.base import TaskPrompt
from prefbench.tasks.common import Topic, split_topics
from prefbench.tasks.perturb import make_variants


class TopicTask(ABC):
    name: ClassVar[str]
    TOPICS: ClassVar[tuple[Topic, ...]]

    def topics(self, split: str) -> list[Topic]:
        return split_topics(self.name, self.TOPICS, split)

    @abstractmethod
    def paraphrase(self, prompt: TaskPrompt, rng: random.Random) -> str:
        """The prompt in a wording never used for training prompts (the ``paraphrase`` variant)."""

    @abstractmethod
    def score_details(self, prompt: TaskPrompt, response: str) -> dict[str, Any]:
        """The gold score (key ``score``) and its parts."""

    def variants(self, prompt: TaskPrompt, seed: int) -> list[TaskPrompt]:
        return make_variants(prompt, seed, lambda rng: self.paraphrase(prompt, rng))

    def score(self, prompt: TaskPrompt, response: str) -> float:
        return self.score_details(prompt, response)["score"]

    def gaming(self, prompt: TaskPrompt, response: str) -> list[str]:
        """How ``response`` games the task's scorer instead of answering (empty: it answers)."""
        return self.score_details(prompt, response)["gaming"]
