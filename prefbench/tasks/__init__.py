"""The task registry: embedded benchmarks whose gold judge ships with the code.

``get_task("ifeval-lite")`` returns a ready task (underscores and case are forgiven);
an unknown name fails with the closest known one.
"""

from __future__ import annotations

import difflib

from prefbench.tasks.base import VARIANT_KINDS, Task, TaskPrompt
from prefbench.tasks.ifeval_lite import IfevalLite
from prefbench.tasks.sentiment import Sentiment

__all__ = ["VARIANT_KINDS", "Task", "TaskError", "TaskPrompt", "get_task", "list_tasks"]

_TASKS: dict[str, type] = {IfevalLite.name: IfevalLite, Sentiment.name: Sentiment}


class TaskError(ValueError):
    """An unknown task name."""


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    key = name.strip().lower().replace("_", "-")
    if key not in _TASKS:
        close = difflib.get_close_matches(key, list(_TASKS), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TaskError(f"unknown task '{name}'{hint}; known: {', '.join(list_tasks())}")
    return _TASKS[key]()
