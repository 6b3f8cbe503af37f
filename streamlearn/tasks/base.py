"""The seam between the engine and what a pipeline does with a batch: the :class:`Task`.

The runner, batcher, delivery and hooks know only this interface. A task owns its decoding
contract, its model, its typed output, its prequential metric and its drift signal; the
composition root pairs it with the writer of its outputs. Fraud and retention scoring are the
``classification`` task; a ranking task drops in beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streamlearn.batch import RawBatch
from streamlearn.decoding import Rejection


class Scored(Protocol):
    """A batch after scoring, as the runner sees it."""

    raw: RawBatch
    model_version: int
    # Which outputs already landed, so a retried write resumes where it failed.
    written: set[str]
    # Events scored but older (event time) than their entity's aggregate state allows
    # (``schema.allowed_lateness_s``): they got features, their state was left as it was.
    too_late: int

    @property
    def rows(self) -> np.ndarray:
        """Positions in :attr:`raw` of the messages that got a prediction."""
        ...

    @property
    def rejected(self) -> list[Rejection]:
        """Messages dead-lettered, with their reasons, by position in :attr:`raw`."""
        ...


@dataclass(slots=True)
class LearnOutcome:
    """What learning from one batch did."""

    learned: int
    drift: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    # Labels that matched no event, by reason (duplicate, past_horizon, unknown_event).
    unmatched: dict[str, int] = field(default_factory=dict)
    # Event-time delay (seconds) of each label learned that came after its event.
    label_delays_s: np.ndarray | None = None


@runtime_checkable
class KeepsCheckpoints(Protocol):
    """A task told when its state is saved, e.g. to forget what no kept checkpoint can replay."""

    def checkpointed(self, kept: int) -> None:
        """The state :meth:`Task.snapshot` last returned is saved; ``kept`` versions are kept."""
        ...


@runtime_checkable
class LearnsEach(Protocol):
    """A task that can take a batch as batches of one in one pass (``min = max size 1``)."""

    @property
    def learns_each(self) -> bool:
        """Whether :meth:`score_and_learn_each` applies to this pipeline."""
        ...

    def score_and_learn_each(self, raw: RawBatch) -> tuple[Scored, LearnOutcome]:
        """Score and learn each event before the next; the outputs are written afterwards."""
        ...


class Task(Protocol):
    """Turns raw batches into predictions, then learns from them (test-then-train).

    ``learn`` gets ``keep``, one flag per raw message: messages flagged ``False`` must not be
    learned now (their partition moved while the batch was written; they will be read again).
    """

    name: str

    def score(self, raw: RawBatch) -> Scored:
        """Decode, validate and score a batch with the model as it is now."""
        ...

    def learn(self, scored: Any, keep: np.ndarray | None = None) -> LearnOutcome:
        """Evaluate what was served, then learn; after the batch's outputs are durable."""
        ...

    @property
    def model_version(self) -> int:
        """Learning steps of the serving model; stamped on every prediction."""
        ...

    def describe(self) -> str:
        """One line on what the pipeline does (``streamlearn check`` prints it)."""
        ...

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """The source now reads these ``(topic, partition)`` (from the client's thread)."""
        ...

    def scores(self) -> dict[str, float]:
        """The prequential metrics now, by name."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Everything learned, picklable, for a checkpoint."""
        ...

    def load_snapshot(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` returned."""
        ...
