"""The task registry: embedded benchmarks whose gold judge ships with the code, and the JPO paper's
tasks, whose eval prompts carry gold responses for a pairwise judge.

``get_task("ifeval-lite")`` returns a ready task (underscores and case are forgiven);
an unknown name fails with the closest known one. ``location`` says where a data-backed task reads
its eval items (a hub id or a local copy); the embedded tasks take none.
"""

from __future__ import annotations

from prefbench.tasks.base import VARIANT_KINDS, Task, TaskError, TaskPrompt
from prefbench.tasks.ifeval_lite import IfevalLite
from prefbench.tasks.paper import HhHelpful, PaperTask, Tldr
from prefbench.tasks.sentiment import Sentiment
from prefbench.util.names import suggest

__all__ = ["VARIANT_KINDS", "Task", "TaskError", "TaskPrompt", "get_task", "has_scorer", "is_data_backed", "list_tasks"]

_TASKS: dict[str, type] = {t.name: t for t in (IfevalLite, Sentiment, Tldr, HhHelpful)}


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def _task_class(name: str) -> type:
    key = name.strip().lower().replace("_", "-")
    if key not in _TASKS:
        raise TaskError(f"unknown task '{name}'{suggest(key, _TASKS)}; known: {', '.join(list_tasks())}")
    return _TASKS[key]


def get_task(name: str, location: str = "") -> Task:
    cls = _task_class(name)
    if issubclass(cls, PaperTask):
        return cls(location)
    if location:
        raise TaskError(f"task '{cls.name}' is embedded and reads no data; remove its location ({location!r})")
    return cls()


def is_data_backed(name: str) -> bool:
    """Whether the task reads its eval items (with gold responses) from a dataset: tldr, hh-helpful."""
    return issubclass(_task_class(name), PaperTask)


def has_scorer(task: Task) -> bool:
    """Whether the task scores an answer itself (a verifier or reward) or needs a pairwise judge."""
    return callable(getattr(task, "score", None))
