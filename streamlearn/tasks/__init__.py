"""Tasks: what a pipeline turns a batch into, chosen by the pipeline's ``task`` setting.

>>> sorted(TASKS)
['classification', 'recommendation']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlearn.config import PipelineCommon
from streamlearn.tasks.base import LearnOutcome, Scored, Task
from streamlearn.tasks.classification import ClassificationTask
from streamlearn.tasks.recommendation import RecommendationTask

__all__ = [
    "TASKS",
    "ClassificationTask",
    "LearnOutcome",
    "RecommendationTask",
    "Scored",
    "Task",
    "build_task",
]

TASKS: dict[str, Callable[..., Any]] = {
    "classification": ClassificationTask,
    "recommendation": RecommendationTask,
}


def build_task(config: PipelineCommon, **ports: Any) -> Task:
    """The task a pipeline's configuration names, with its I/O ports (e.g. label state)."""
    task: Task = TASKS[config.task](config, **ports)
    return task
