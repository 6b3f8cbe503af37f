"""Event-time progress of a topic, and how far behind every kept checkpoint it is safe to forget.

A :class:`Watermark` is the event time every partition read of a topic has got to: the least of
the partitions' newest record times. It never goes backwards; a partition assigned but not read
yet holds it back. Delayed labels use two: the events topic's (early labels whose event has not
come by then expire) and the labels topic's.

:class:`ForgetMarks` says what the label store may delete by event time. A pending entry is
needed again only if a message that touched it is read again: after a crash (from the newest
checkpoint) or a rollback (to any kept one). Both topics' watermarks as they were in the oldest
kept checkpoint bound that: an entry whose deadline lies before both was last touched by
messages every kept checkpoint has read past.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np


class Watermark:
    """The least of the newest event times of the partitions read.

    Examples
    --------
    >>> w = Watermark()
    >>> w.advance(np.array([0, 0, 1]), np.array([10, 30, 20]))
    20
    >>> w.reading = frozenset({0, 1, 2})  # partition 2 assigned, nothing read from it yet
    >>> w.advance(np.array([0, 1]), np.array([50, 60]))
    20
    >>> w.advance(np.array([2]), np.array([5]))  # never backwards
    20
    >>> w.advance(np.array([2]), np.array([55]))
    50
    """

    def __init__(self) -> None:
        self.times: dict[int, int] = {}  # newest event time per partition
        self.value = 0
        # The partitions read (None until the source says): one with no time yet holds it back.
        self.reading: frozenset[int] | None = None

    @property
    def started(self) -> bool:
        """Whether every partition read has given a time: before that there is no watermark."""
        if self.reading:
            return all(p in self.times for p in self.reading)
        return bool(self.times)

    def advance(self, partitions: np.ndarray, times_ms: np.ndarray) -> int:
        """Take in records' partitions and event times; return the watermark now."""
        if len(partitions):
            partitions = np.asarray(partitions, dtype=np.int64)
            times_ms = np.asarray(times_ms, dtype=np.int64)
            for partition in np.unique(partitions).tolist():
                newest = int(times_ms[partitions == partition].max())
                self.times[partition] = max(self.times.get(partition, 0), newest)
        reading = self.reading
        if reading:
            if any(p not in self.times for p in reading):
                return self.value
            self.value = max(self.value, min(self.times[p] for p in reading))
        elif self.times:
            self.value = max(self.value, min(self.times.values()))
        return self.value

    def state(self) -> dict[str, object]:
        """What a checkpoint keeps of it."""
        return {"value": self.value, "times": dict(self.times)}

    def load(self, value: int, times: dict[int, int]) -> None:
        """Put back a checkpoint's watermark."""
        self.value = value
        self.times = dict(times)


class ForgetMarks:
    """Before which event time the label store may delete: what every kept checkpoint read past.

    Each checkpoint's mark (the lesser of the two topics' watermarks in its state) is noted
    when its state is taken, and counted once the checkpoint is saved. With ``kept`` saved
    here, the least of their marks is the bound (after a rollback the newest checkpoint may be
    the one with the oldest mark); with fewer (just started: older versions are kept from
    before), there is none.

    Examples
    --------
    >>> marks = ForgetMarks()
    >>> for mark in (100, 200, 300):
    ...     marks.snapshotted(mark)
    ...     marks.checkpointed(kept=2)
    >>> marks.before_ms
    200
    >>> marks.snapshotted(150)  # a rollback to the checkpoint with mark 150
    >>> marks.checkpointed(kept=2)
    >>> marks.before_ms
    150
    >>> marks.snapshotted(None)  # a checkpoint taken before both topics were read
    >>> marks.checkpointed(kept=2)
    >>> marks.before_ms is None
    True
    """

    def __init__(self) -> None:
        self._taken: int | None = None
        self._saved: deque[int | None] = deque()
        self.before_ms: int | None = None

    def snapshotted(self, mark: int | None) -> None:
        """A checkpoint's state was just taken, with this mark (``None``: nothing to forget)."""
        self._taken = mark

    def checkpointed(self, kept: int) -> None:
        """The state last taken is saved; the store keeps the newest ``kept`` versions."""
        self._saved.append(self._taken)
        while len(self._saved) > kept:
            self._saved.popleft()
        self.before_ms = _least(self._saved) if len(self._saved) == kept else None


def _least(marks: Iterable[int | None]) -> int | None:
    values = list(marks)
    if any(m is None for m in values):
        return None
    return min(m for m in values if m is not None)
