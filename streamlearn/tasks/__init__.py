"""Tasks: what a pipeline turns a batch into, chosen by the pipeline's ``task`` setting.

>>> sorted(TASKS)
['classification']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamlearn.config import PipelineConfig
from streamlearn.tasks.base import LearnOutcome, Scored, Task
from streamlearn.tasks.classification import ClassificationTask

__all__ = ["TASKS", "ClassificationTask", "LearnOutcome", "Scored", "Task", "build_task"]

TASKS: dict[str, Callable[..., Any]] = {"classification": ClassificationTask}


def build_task(config: PipelineConfig, **ports: Any) -> Task:
    """The task a pipeline's configuration names, with its I/O ports (e.g. label state)."""
    task: Task = TASKS[config.task](config, **ports)
    return task
