"""Whether the process is alive and ready, judged from what its pipelines report.

``HealthMonitor`` listens to the pipeline hooks and answers ``/healthz`` and ``/readyz`` when
asked, from another thread, so a pipeline blocked in a socket still shows as stalled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from streamlearn.hooks import PipelineHooks


@dataclass(slots=True)
class _PipelineState:
    ready: bool = False
    was_ready: bool = False
    stopped: bool = False
    failed: str | None = None
    batch_started: float | None = None  # when the batch in hand started
    last_closed: float | None = None  # when the last batch finished
    busy_since: float | None = None  # when the I/O between batches in progress began
    busy_with: str = ""  # what that I/O is
    consumed_at: float | None = None  # first message taken in since the last batch finished
    behind_since: float | None = None  # since when the source has reported messages waiting
    behind: int = 0

    def waiting_since(self) -> float | None:
        """Since when input has been waiting to be processed, if it is."""
        times = (self.batch_started, self.consumed_at, self.behind_since)
        known = [t for t in times if t is not None]
        return min(known) if known else None


class HealthMonitor(PipelineHooks):
    """Pipeline hooks that keep each pipeline's health, for ``/healthz`` and ``/readyz``.

    Ready: every pipeline holds its partitions, its outputs work, it has not failed, and no
    batch (nor any I/O between batches) has been in hand for longer than ``stall_s``. Live:
    no pipeline failed, and none has had input waiting (messages behind, buffered or in a
    batch) for longer than ``liveness_timeout_s`` without finishing a batch. An idle
    pipeline stays live.

    Hooks arrive from the pipelines' threads and questions from the HTTP server's; a lock
    keeps them apart, and every answer is computed from the clock when asked.

    Parameters
    ----------
    pipelines
        The pipelines to watch; each is not ready until it says so.
    stall_s
        How long one batch may take before the process stops being ready.
    liveness_timeout_s
        How long input may wait without a batch finishing before the process is not live.
    clock
        Monotonic seconds; injected so tests can drive it.

    Examples
    --------
    >>> now = [0.0]
    >>> health = HealthMonitor(["fraud"], stall_s=5, liveness_timeout_s=60, clock=lambda: now[0])
    >>> health.why_not_ready()
    ['fraud: not consuming yet (waiting for the consumer group to assign partitions)']
    >>> health.on_pipeline_ready("fraud", True)
    >>> health.on_batch_started("fraud")
    >>> now[0] = 7.0
    >>> health.ready(), health.live()
    (False, True)
    >>> health.why_not_ready()  # doctest: +NORMALIZE_WHITESPACE
    ['fraud: a batch has been in hand for 7.0 s (health.stall_s is 5 s): outputs or the model
      are stalled']
    >>> health.on_batch_closed("fraud", 100, "size")
    >>> health.ready()
    True
    >>> health.on_failed("fraud", "model refused the batch")
    >>> health.why_not_live()
    ['fraud: failed: model refused the batch']
    """

    def __init__(
        self,
        pipelines: Iterable[str],
        *,
        stall_s: float = 5.0,
        liveness_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_s = stall_s
        self.liveness_timeout_s = liveness_timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _PipelineState] = {}
        self.watch(pipelines)

    def watch(self, pipelines: Iterable[str]) -> None:
        """Start afresh on these pipelines (a new run): none is ready until it says so."""
        with self._lock:
            self._states = {name: _PipelineState() for name in pipelines}

    def stopped(self) -> None:
        """The pipelines stopped running: not ready any more, but still live."""
        with self._lock:
            for state in self._states.values():
                state.stopped, state.ready = True, False
                state.batch_started = state.consumed_at = state.behind_since = None
                state.busy_since = None

    # --- hooks, from the pipelines' threads ---------------------------------------------------

    def _state(self, pipeline: str) -> _PipelineState:
        return self._states.setdefault(pipeline, _PipelineState())

    def on_pipeline_ready(self, pipeline: str, ready: bool) -> None:  # noqa: D102
        with self._lock:
            state = self._state(pipeline)
            state.ready = ready
            state.was_ready |= ready
            # A rebalance or an outputs outage may drop what was buffered without a batch
            # finishing; forgetting it errs towards live, never towards a needless restart.
            state.consumed_at = None

    def on_batch_started(self, pipeline: str) -> None:  # noqa: D102
        with self._lock:
            self._state(pipeline).batch_started = self.clock()

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:  # noqa: D102
        with self._lock:
            state = self._state(pipeline)
            state.last_closed = self.clock()
            state.batch_started = state.consumed_at = None

    def on_busy(self, pipeline: str, activity: str | None) -> None:  # noqa: D102
        with self._lock:
            state = self._state(pipeline)
            state.busy_since = None if activity is None else self.clock()
            state.busy_with = activity or ""

    def on_consumed(self, pipeline: str, n: int) -> None:  # noqa: D102
        if n <= 0:
            return
        with self._lock:
            state = self._state(pipeline)
            if state.consumed_at is None:
                state.consumed_at = self.clock()

    def on_lag(self, pipeline: str, lag: Mapping[int, int]) -> None:  # noqa: D102
        behind = sum(lag.values())
        with self._lock:
            state = self._state(pipeline)
            state.behind = behind
            if behind <= 0:
                state.behind_since = None
            elif state.behind_since is None:
                state.behind_since = self.clock()

    def on_failed(self, pipeline: str, message: str) -> None:  # noqa: D102
        with self._lock:
            self._state(pipeline).failed = message

    # --- questions, from the HTTP server's thread ---------------------------------------------

    def why_not_ready(self, now: float | None = None) -> list[str]:
        """One line per pipeline that is not ready, saying why; empty when ready."""
        now = self.clock() if now is None else now
        with self._lock:
            return [
                f"{name}: {reason}"
                for name, state in self._states.items()
                if (reason := self._not_ready(state, now))
            ]

    def why_not_live(self, now: float | None = None) -> list[str]:
        """One line per pipeline that is not live, saying why; empty when live."""
        now = self.clock() if now is None else now
        with self._lock:
            return [
                f"{name}: {reason}"
                for name, state in self._states.items()
                if (reason := self._not_live(state, now))
            ]

    def ready(self, now: float | None = None) -> bool:
        """Whether every pipeline is ready (see the class description)."""
        return not self.why_not_ready(now)

    def live(self, now: float | None = None) -> bool:
        """Whether every pipeline is live (see the class description)."""
        return not self.why_not_live(now)

    def _not_ready(self, state: _PipelineState, now: float) -> str | None:
        if state.failed is not None:
            return f"failed: {state.failed}"
        if state.stopped:
            return "stopped"
        started = state.batch_started
        if not state.ready and not state.was_ready:
            return "not consuming yet (waiting for the consumer group to assign partitions)"
        if not state.ready:
            held = "" if started is None else f" (batch in hand for {now - started:.1f} s)"
            return f"outputs failing: consumption is paused while the writes are retried{held}"
        if started is not None and now - started > self.stall_s:
            return (
                f"a batch has been in hand for {now - started:.1f} s (health.stall_s is "
                f"{self.stall_s:g} s): outputs or the model are stalled"
            )
        busy = state.busy_since
        if busy is not None and now - busy > self.stall_s:
            return (
                f"{state.busy_with} has taken {now - busy:.1f} s (health.stall_s is "
                f"{self.stall_s:g} s): Redis or the broker is not answering"
            )
        return None

    def _not_live(self, state: _PipelineState, now: float) -> str | None:
        if state.failed is not None:
            return f"failed: {state.failed}"
        waiting = state.waiting_since()
        if waiting is None:
            return None
        since = max(waiting, state.last_closed or waiting)
        if now - since <= self.liveness_timeout_s:
            return None
        if state.batch_started is not None:
            what = f"a batch in hand for {now - state.batch_started:.0f} s"
        elif state.behind > 0:
            what = f"{state.behind} messages behind"
        else:
            what = "messages buffered"
        return (
            f"no batch finished for {now - since:.0f} s while input waits ({what}; "
            f"health.liveness_timeout_s is {self.liveness_timeout_s:g} s)"
        )


class Readiness:
    """The process is ready while every pipeline holds partitions and its outputs work.

    Each pipeline's state goes to ``hooks.on_pipeline_ready``, the process's to
    ``hooks.on_ready``. (Stalls and failures are judged by :class:`HealthMonitor`.)

    >>> class Seen(PipelineHooks):
    ...     def __init__(self):
    ...         self.calls = []
    ...     def on_pipeline_ready(self, pipeline, ready):
    ...         self.calls.append((pipeline, ready))
    ...     def on_ready(self, ready):
    ...         self.calls.append(ready)
    >>> seen = Seen()
    >>> r = Readiness(["fraud", "churn"], seen)
    >>> r.set("fraud", True); r.set("churn", True)
    >>> seen.calls
    [('fraud', True), False, ('churn', True), True]
    """

    def __init__(self, pipelines: list[str], hooks: PipelineHooks) -> None:
        self.not_ready = set(pipelines)
        self.hooks = hooks
        self._lock = threading.Lock()  # pipelines report from their own threads

    def set(self, pipeline: str, ready: bool) -> None:
        """Record one pipeline's state and report it and the process's."""
        with self._lock:
            if ready:
                self.not_ready.discard(pipeline)
            else:
                self.not_ready.add(pipeline)
            self.hooks.on_pipeline_ready(pipeline, ready)
            self.hooks.on_ready(not self.not_ready)
