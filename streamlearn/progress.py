"""Keeps the running totals a person watches: throughput, batch size, latency, model score.

A :class:`~streamlearn.hooks.PipelineHooks` that only remembers; the demo renders it live and
prints it as the closing summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from streamlearn.hooks import PipelineHooks

_LATENCY_WINDOW = 50_000


@dataclass
class ProgressSnapshot:
    """Totals and recent figures at one moment."""

    consumed: int
    predicted: int
    invalid: int
    learned: int
    batches: int
    batch_size: int
    events_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    scores: dict[str, float] = field(default_factory=dict)
    drifts: int = 0
    elapsed_s: float = 0.0


class ProgressHooks(PipelineHooks):
    """Remembers totals and the latest latencies across all pipelines.

    Examples
    --------
    >>> now = [0.0]
    >>> p = ProgressHooks(clock=lambda: now[0])
    >>> now[0] = 5.0
    >>> p.on_consumed("fraud", 100)
    >>> p.on_predictions("fraud", np.array([0.010, 0.020, 0.030]))
    >>> now[0] = 7.0
    >>> s = p.snapshot()
    >>> s.consumed, s.predicted, s.events_per_s, s.p50_ms
    (100, 3, 50.0, 20.0)
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._latencies = np.zeros(_LATENCY_WINDOW)
        self._filled = 0
        self._cursor = 0
        self.consumed = self.predicted = self.invalid = self.learned = 0
        self.batches = self.batch_size = self.drifts = 0
        self.scores: dict[str, float] = {}
        self.invalid_by_reason: dict[str, int] = {}
        self.ready = False

    def on_consumed(self, pipeline: str, n: int) -> None:  # noqa: D102
        if not self.consumed:
            # Throughput counts from the first event, not from start-up.
            self.started = self.clock()
        self.consumed += n

    def on_invalid(self, pipeline: str, reason: str, n: int) -> None:  # noqa: D102
        self.invalid += n
        self.invalid_by_reason[reason] = self.invalid_by_reason.get(reason, 0) + n

    def on_predictions(self, pipeline: str, latencies_s: np.ndarray) -> None:  # noqa: D102
        with self._lock:
            self.predicted += len(latencies_s)
            values = latencies_s[-_LATENCY_WINDOW:]
            first = min(len(values), _LATENCY_WINDOW - self._cursor)
            self._latencies[self._cursor : self._cursor + first] = values[:first]
            self._latencies[: len(values) - first] = values[first:]
            self._cursor = (self._cursor + len(values)) % _LATENCY_WINDOW
            self._filled = min(_LATENCY_WINDOW, self._filled + len(latencies_s))

    def on_learned(self, pipeline: str, n: int) -> None:  # noqa: D102
        self.learned += n

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:  # noqa: D102
        self.batches += 1

    def on_batch_size(self, pipeline: str, size: int) -> None:  # noqa: D102
        self.batch_size = size

    def on_model_score(self, pipeline: str, scores: Mapping[str, float]) -> None:  # noqa: D102
        self.scores = dict(scores)

    def on_drift(self, pipeline: str) -> None:  # noqa: D102
        self.drifts += 1

    def on_ready(self, ready: bool) -> None:  # noqa: D102
        self.ready = ready

    def snapshot(self) -> ProgressSnapshot:
        """The figures now; latency percentiles over the last 50 000 predictions."""
        with self._lock:
            recent = self._latencies[: self._filled].copy()
        elapsed = max(self.clock() - self.started, 1e-9)
        p50, p99 = (
            (float(np.percentile(recent, 50) * 1000), float(np.percentile(recent, 99) * 1000))
            if len(recent)
            else (None, None)
        )
        return ProgressSnapshot(
            consumed=self.consumed,
            predicted=self.predicted,
            invalid=self.invalid,
            learned=self.learned,
            batches=self.batches,
            batch_size=self.batch_size,
            events_per_s=self.consumed / elapsed,
            p50_ms=p50,
            p99_ms=p99,
            scores=dict(self.scores),
            drifts=self.drifts,
            elapsed_s=elapsed,
        )
