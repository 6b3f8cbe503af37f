"""Decides when the batch being filled closes and how big the next one may be.

Pure logic with an injectable clock. This first version closes on size or deadline with a fixed
size; the adaptive controller (latency target, cost model, drift) builds on this interface.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from streamlearn.config import BatchingConfig


class Trigger(StrEnum):
    """Why a batch closed."""

    SIZE = "size"
    DEADLINE = "deadline"
    DRIFT = "drift"
    SHUTDOWN = "shutdown"


class AdaptiveBatcher:
    """Closes batches on size or deadline.

    Parameters
    ----------
    settings
        The pipeline's ``batching`` section.
    clock
        Monotonic clock in seconds; injected so tests can drive time.

    Examples
    --------
    >>> now = [0.0]
    >>> b = AdaptiveBatcher(BatchingConfig(min_size=4, max_size=4, max_wait_ms=50),
    ...                     clock=lambda: now[0])
    >>> b.size
    4
    >>> b.close_trigger(buffered=2, oldest_received=0.0) is None
    True
    >>> now[0] = 0.06
    >>> b.close_trigger(buffered=2, oldest_received=0.0)
    <Trigger.DEADLINE: 'deadline'>
    >>> b.close_trigger(buffered=4, oldest_received=0.06)
    <Trigger.SIZE: 'size'>
    """

    def __init__(
        self, settings: BatchingConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._size = settings.initial_size or settings.max_size
        self._drift_pending = False

    @property
    def size(self) -> int:
        """Number of messages at which the batch being filled closes."""
        return self._size

    def deadline(self, oldest_received: float) -> float:
        """Clock time by which a batch whose oldest message arrived then must close."""
        s = self.settings
        wait_s = min(s.max_wait_ms, s.latency_target_ms) / 1000.0
        return oldest_received + wait_s

    def close_trigger(self, buffered: int, oldest_received: float | None) -> Trigger | None:
        """Return why the batch should close now, or ``None`` to keep filling it."""
        if buffered <= 0 or oldest_received is None:
            return None
        if self._drift_pending:
            return Trigger.DRIFT
        if buffered >= self._size:
            return Trigger.SIZE
        if self.clock() >= self.deadline(oldest_received):
            return Trigger.DEADLINE
        return None

    def wait_s(self, buffered: int, oldest_received: float | None) -> float:
        """How long the source may block waiting for more messages before checking again."""
        if buffered <= 0 or oldest_received is None:
            return self.settings.max_wait_ms / 1000.0 or 0.05
        return max(0.0, self.deadline(oldest_received) - self.clock())

    def room(self, buffered: int) -> int:
        """How many more messages to ask the source for."""
        return max(0, self._size - buffered)

    def observe(self, size: int, seconds: float, trigger: Trigger) -> None:
        """Feedback after a batch of ``size`` messages took ``seconds`` to process."""
        if trigger is Trigger.DRIFT:
            self._drift_pending = False

    def signal_drift(self) -> None:
        """The model's error stream drifted: close the current batch early."""
        self._drift_pending = True
