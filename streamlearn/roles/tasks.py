"""The two halves of a classification task when scaled out: scorer and learner.

:class:`ScorerTask` and :class:`LearnerTask` are each a :class:`~streamlearn.tasks.base.Task`,
so the runner, batcher and delivery run them unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlearn.batch import RawBatch
from streamlearn.errors import PipelineFenced, StreamlearnError
from streamlearn.rejections import Rejection
from streamlearn.roles.examples import BadExamples, Examples, SeenOffsets, concat, decode, encode
from streamlearn.roles.publication import ModelFollower, ModelPublisher
from streamlearn.tasks.base import LearnOutcome
from streamlearn.tasks.classification import ClassificationTask, ScoredBatch

log = logging.getLogger(__name__)


class ScorerTask:
    """Scores with the newest published model, swapped in before a batch; never learns.

    What each batch teaches goes to the learner through :meth:`examples_messages`, which the
    outputs send to the learn topic with the batch's other outputs, before its offsets are
    committed. ``on_staleness`` gets the served model's staleness at every batch.
    """

    def __init__(
        self,
        task: ClassificationTask,
        follower: ModelFollower,
        on_staleness: Callable[[float], None] = lambda s: None,
    ) -> None:
        self.task = task
        self.name = task.name
        self.follower = follower
        self.on_staleness = on_staleness

    def score(self, raw: RawBatch) -> ScoredBatch:
        """Adopt a newer published model if there is one, then score ``raw`` with it."""
        model = self.follower.newer(serving=self.task.model_version)
        if model is not None:
            self.task.model = model
        scored = self.task.score(raw)
        self.on_staleness(self.follower.staleness())
        return scored

    def examples_messages(self, scored: ScoredBatch) -> list[bytes]:
        """The learn-topic messages of ``scored``: its labelled rows (or joins), as scored."""
        examples = self.task.examples(scored)
        labelled = ~np.isnan(examples.targets)
        if not labelled.all():
            examples = examples.take(labelled)
        return encode(examples)

    def learn(self, scored: ScoredBatch, keep: np.ndarray | None = None) -> LearnOutcome:
        """Nothing: the learner learns what :meth:`examples_messages` sent it."""
        return LearnOutcome(learned=0)

    @property
    def model_version(self) -> int:  # noqa: D102
        return self.task.model_version

    def describe(self) -> str:  # noqa: D102
        return f"scorer: {self.task.describe()}"

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """The scorer's share of the events (and labels) partitions."""
        self.task.assigned(partitions)

    def scores(self) -> dict[str, float]:
        """Scorers do not evaluate: the learner scores what they served."""
        return {}

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return {}

    def load_snapshot(self, state: dict[str, Any]) -> None:  # noqa: D102
        pass


@dataclass(slots=True)
class LearnBatch:
    """A batch of learn-topic messages, decoded (the learner's "scored" batch)."""

    raw: RawBatch
    parts: list[tuple[int, Examples]]  # (position in raw, examples)
    model_version: int
    bad: list[Rejection] = field(default_factory=list)
    written: set[str] = field(default_factory=set)
    too_late: int = 0  # the scorers computed the aggregates and counted these

    @property
    def rows(self) -> np.ndarray:
        """No predictions: the learner writes none."""
        return np.empty(0, dtype=np.int64)

    @property
    def rejected(self) -> list[Rejection]:
        """Messages that were not examples messages."""
        return self.bad


class LearnerTask:
    """Learns what scorers sent, each example once, and publishes the model.

    A row is learned only if its source (the event, or the label that completed its join)
    lies past what was learned from that partition; the marks are kept in the checkpoint
    with the model, so a learner that takes over from a checkpoint skips exactly what it
    covers.
    """

    def __init__(self, task: ClassificationTask, publisher: ModelPublisher) -> None:
        self.task = task
        self.name = task.name
        self.publisher = publisher
        self.seen = SeenOffsets()
        self.skipped = 0  # rows sent again (a scorer replayed them) and not learned again

    def score(self, raw: RawBatch) -> LearnBatch:
        """Decode the examples messages of ``raw``; others are rejected with a reason."""
        batch = LearnBatch(raw, [], self.task.model_version)
        for i, value in enumerate(raw.values):
            try:
                batch.parts.append((i, decode(value)))
            except BadExamples as exc:
                batch.bad.append(Rejection(i, "bad_examples", str(exc)))
        return batch

    def learn(self, batch: LearnBatch, keep: np.ndarray | None = None) -> LearnOutcome:
        """Learn the rows not learned before; publish the model when an interval has passed."""
        parts = [ex for i, ex in batch.parts if keep is None or keep[i]]
        if not parts:
            return LearnOutcome(learned=0)
        examples = concat(parts)
        new = self.seen.new(examples)
        self.skipped += int(len(new) - new.sum())
        if not new.all():
            examples = examples.take(new)
        outcome = self.task.learn_examples(examples)
        self.seen.learned(examples)
        self.publish()
        return outcome

    def publish(self, force: bool = False) -> None:
        """Publish the model if due; a failure is logged and tried again later."""
        try:
            self.publisher.publish(self.task.model, self.task.model_version, force=force)
        except PipelineFenced:
            raise
        except StreamlearnError as exc:
            log.warning("%s: publishing the model failed: %s", self.name, exc)

    @property
    def model_version(self) -> int:  # noqa: D102
        return self.task.model_version

    def describe(self) -> str:  # noqa: D102
        return f"learner: {self.task.describe()}"

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """The learn topic's partitions: the examples carry their own sources."""

    def scores(self) -> dict[str, float]:  # noqa: D102
        return self.task.scores()

    def snapshot(self) -> dict[str, Any]:
        """The task's snapshot and the per-partition marks of what was learned."""
        return {**self.task.snapshot(), "seen": dict(self.seen.next)}

    def load_snapshot(self, state: dict[str, Any]) -> None:  # noqa: D102
        self.task.load_snapshot(state)
        self.seen = SeenOffsets(state.get("seen"))
