"""Decides when the batch being filled closes and how big the next one may be.

Pure logic with an injectable clock: a fitted cost model and an arrival-rate estimate set the size,
a deadline keeps the oldest event under the latency target, and drift shrinks the size for a while.

The size chosen between batches is the largest ``n`` whose fill time plus processing time meets the
target, ``n / rate + a + b·n ≤ target - margin``, that the pipeline can also keep up with
(``rate · (a + b·n) ≤ 0.9 · n``). When no size can do both the controller is *overloaded*: it takes
``max_size`` for throughput and counts the batches that miss the target instead of oscillating.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streamlearn.config import BatchingConfig
from streamlearn.cost_model import CostModel

logger = logging.getLogger(__name__)

# Highest share of the wall clock a sustainable plan may spend processing; the lower exit value
# gives overload hysteresis so the size does not flap at the edge of capacity.
UTILISATION_ENTER = 0.9
UTILISATION_EXIT = 0.8
# A batch already full when the previous one finished means messages wait upstream (a backlog).
SATURATED_FILL_SHARE = 0.05
RATE_SMOOTHING = 0.3
FRESH_AFTER_BATCH_S = 0.002
MAX_GROWTH_PER_BATCH = 2.0
# AIMD backstop for when the cost model is wrong: cut on a miss, creep back otherwise.
MISS_DECREASE = 0.75
SAFE_INCREASE = 1.1


class Trigger(StrEnum):
    """Why a batch closed."""

    SIZE = "size"
    DEADLINE = "deadline"
    DRIFT = "drift"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class BatcherState:
    """What the controller currently believes, for metrics and debugging.

    ``target_missed`` counts batches whose oldest event (received → processed) exceeded the
    target, and every batch of a backlog while overloaded.
    """

    size: int
    cost_overhead_s: float
    cost_per_event_s: float
    arrival_rate: float | None
    overloaded: bool
    drift_cap: int | None
    target_missed: int
    reason: str


class AdaptiveBatcher:
    """Closes batches on size, deadline, drift or shutdown, and adapts the size between them.

    Parameters
    ----------
    settings
        The pipeline's ``batching`` section. Optional keys read when present: ``drift_floor``,
        ``drift_regrowth``, ``latency_margin_ms``, ``cost_forgetting``.
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

    The size follows the load: 100 events every 54 ms (about 1,850 events/s) fill 92 events in
    the 50 ms ``max_wait_ms``, so the size settles there.

    >>> b = AdaptiveBatcher(BatchingConfig(max_size=1000), clock=lambda: now[0])
    >>> for _ in range(30):
    ...     now[0] += 0.05
    ...     _ = b.close_trigger(buffered=100, oldest_received=now[0] - 0.05)
    ...     now[0] += 0.004
    ...     b.observe(100, 0.004, Trigger.DEADLINE)
    >>> b.size, b.state().overloaded
    (92, False)
    """

    def __init__(
        self, settings: BatchingConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        lo, hi = settings.min_size, settings.max_size
        self._size = settings.initial_size or lo
        self._drift_floor = min(hi, max(lo, settings.drift_floor or 8))
        self._drift_regrowth = settings.drift_regrowth
        margin_ms = settings.latency_margin_ms
        target_ms = settings.latency_target_ms
        self._target_s = target_ms / 1e3
        self._budget_s = (target_ms - (0.1 * target_ms if margin_ms is None else margin_ms)) / 1e3
        self._cost = CostModel(forgetting=settings.cost_forgetting)
        self._rate: float | None = None
        self._safe_size = float(hi)
        self._drift_cap: float | None = None
        self._drift_pending = False
        self._drift_signalled_at = -math.inf
        self._overloaded = False
        self._backlog = False
        self._missed = 0
        self._reason = "initial size"
        self._closed: tuple[float, int, float] | None = None  # time, buffered, oldest age
        self._previous_close: tuple[float, int] | None = None  # time, events left behind
        self._last_observed: float | None = None
        self._last_seconds = 0.0

    @property
    def size(self) -> int:
        """Number of messages at which the batch being filled closes."""
        return self._size

    def deadline(self, oldest_received: float) -> float:
        """Clock time by which a batch whose oldest message arrived then must close.

        The oldest message must still be processed, so the expected processing time of a batch
        of the current size comes off the latency budget; ``max_wait_ms`` caps the wait.
        """
        budget_s = self._budget_s - self._cost.predict(self._size)
        wait_s = min(self.settings.max_wait_ms / 1e3, budget_s) - self._unseen_wait(oldest_received)
        return oldest_received + max(0.0, wait_s)

    def _unseen_wait(self, oldest_received: float) -> float:
        # A message received just as a batch finished has most likely been waiting upstream
        # while that batch was processed: its true age is longer than its stamp says.
        if self._last_observed is None:
            return 0.0
        since = oldest_received - self._last_observed
        return self._last_seconds if 0.0 <= since <= FRESH_AFTER_BATCH_S else 0.0

    def close_trigger(self, buffered: int, oldest_received: float | None) -> Trigger | None:
        """Return why the batch should close now, or ``None`` to keep filling it."""
        if buffered <= 0 or oldest_received is None:
            return None
        now = self.clock()
        if self._drift_pending:
            trigger = Trigger.DRIFT
        elif buffered >= self._size:
            trigger = Trigger.SIZE
        elif now >= self.deadline(oldest_received):
            trigger = Trigger.DEADLINE
        else:
            return None
        self._closed = (now, buffered, now - oldest_received + self._unseen_wait(oldest_received))
        return trigger

    def wait_s(self, buffered: int, oldest_received: float | None) -> float:
        """How long the source may block waiting for more messages before checking again.

        Positive while nothing is due, so an idle stream never spins; zero once the batch is due.
        """
        if buffered <= 0 or oldest_received is None:
            return max(self.settings.max_wait_ms, self.settings.latency_target_ms) / 1e3
        if self._drift_pending or buffered >= self._size:
            return 0.0
        return max(0.0, self.deadline(oldest_received) - self.clock())

    def room(self, buffered: int) -> int:
        """How many more messages to ask the source for."""
        return max(0, min(self._size, self.settings.max_buffered_events) - buffered)

    def note_backlog(self, lag: int) -> None:
        """A backlog is known before any batch was observed (a consumer starting behind).

        A full batch or more waiting upstream means the events are late already: start at
        ``max_size`` rather than ramping up from the initial size.

        >>> b = AdaptiveBatcher(BatchingConfig(min_size=1, max_size=512))
        >>> b.note_backlog(100), b.size
        (None, 1)
        >>> b.note_backlog(10_000), b.size
        (None, 512)
        """
        hi = self.settings.max_size
        if lag >= hi and self._size < hi and self._drift_cap is None:
            self._change(hi, f"backlog of {lag} messages at start: throughput first")

    def signal_drift(self) -> None:
        """Close the current batch early and shrink the size: the model's error stream drifted."""
        self._drift_pending = True
        self._drift_cap = float(self._drift_floor)
        self._drift_signalled_at = self.clock()
        if self._size > self._drift_floor:
            self._change(self._drift_floor, "drift: size drops to the floor")

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint keeps: the size and the fitted cost model (not clock readings)."""
        return {"size": self._size, "safe_size": self._safe_size, "cost": self._cost}

    def resume(self, saved: dict[str, Any]) -> None:
        """Start from a :meth:`snapshot` (sizes clamped to this configuration's bounds)."""
        lo, hi = self.settings.min_size, self.settings.max_size
        self._size = min(hi, max(lo, int(saved.get("size", self._size))))
        self._safe_size = min(float(hi), max(float(lo), float(saved.get("safe_size", hi))))
        self._cost = saved.get("cost", self._cost)
        self._reason = "restored from the checkpoint"

    def state(self) -> BatcherState:
        """Return a snapshot of the controller for metrics and debugging."""
        cap = self._drift_cap
        return BatcherState(
            size=self._size,
            cost_overhead_s=self._cost.overhead_s,
            cost_per_event_s=self._cost.per_event_s,
            arrival_rate=self._rate,
            overloaded=self._overloaded,
            drift_cap=None if cap is None else int(cap),
            target_missed=self._missed,
            reason=self._reason,
        )

    def observe(
        self,
        size: int,
        seconds: float,
        trigger: Trigger,
        *,
        lag: int | None = None,
        oldest_age_s: float | None = None,
    ) -> None:
        """Feedback after a batch of ``size`` messages took ``seconds`` to process.

        ``lag`` is the number of messages still waiting upstream (consumer lag), when known; a lag
        of a whole batch or more marks a backlog. ``oldest_age_s`` is the age of the batch's
        oldest message when it closed, when the caller measured it (otherwise the age seen by the
        last :meth:`close_trigger` is used). A batch whose oldest message took longer than the
        target, or any batch of a backlog while overloaded, counts in ``state().target_missed``.
        """
        now = self.clock()
        closed_at, buffered, age = self._closed or (now - seconds, size, 0.0)
        self._closed = None
        age = age if oldest_age_s is None else oldest_age_s
        self._cost.update(size, seconds)
        saturated = self._saturated(trigger, closed_at, lag)
        # A known backlog of a full batch or more: grow straight to the plan, no ramp.
        self._backlog = lag is not None and lag >= self.settings.max_size
        # In overload the backlog waits upstream, unseen by `age`: count those batches too.
        missed = age + seconds > self._target_s or (saturated and self._overloaded)
        self._missed += missed
        self._update_rate(closed_at, buffered)
        self._previous_close = (closed_at, max(0, buffered - size))
        self._last_observed, self._last_seconds = now, seconds
        if trigger is Trigger.DRIFT:
            self._drift_pending = False
        elif self._drift_cap is not None and closed_at >= self._drift_signalled_at:
            # Only batches begun after the drift count: the runner may signal it while the
            # batch that revealed it is still being reported.
            self._drift_cap *= self._drift_regrowth
            if self._drift_cap >= self.settings.max_size:
                self._drift_cap = None
        self._adapt(missed, saturated)

    def _saturated(self, trigger: Trigger, closed_at: float, lag: int | None) -> bool:
        # Saturated: the next batch was already waiting when this one finished. A miss then comes
        # from the backlog, not from the size, so it must not shrink the size.
        if lag is not None:
            return lag >= self._size
        last, previous = self._last_observed, self._previous_close
        if trigger is not Trigger.SIZE or last is None or previous is None:
            return False
        return closed_at - last <= SATURATED_FILL_SHARE * (closed_at - previous[0])

    def _update_rate(self, closed_at: float, buffered: int) -> None:
        if self._previous_close is None:
            return
        previous_at, left_behind = self._previous_close
        interval, arrivals = closed_at - previous_at, buffered - left_behind
        if interval <= 0 or arrivals <= 0:
            return
        # Under a backlog this is the throughput, a lower bound of the arrival rate: enough, as
        # the plan for it is a larger size whenever a larger one would serve more.
        sample = arrivals / interval
        # Smoothed in log space: one idle gap or burst moves the estimate by a bounded factor.
        self._rate = (
            sample if self._rate is None else self._rate * (sample / self._rate) ** RATE_SMOOTHING
        )

    def _adapt(self, missed: bool, saturated: bool) -> None:
        lo, hi = self.settings.min_size, self.settings.max_size
        if self._rate is None:
            target, reason = float(self._size), "no arrival rate yet"
        else:
            target, reason = self._plan(self._rate)
        if missed and not saturated and not self._overloaded:
            # The cost model was optimistic: back off now, let the model catch up.
            self._safe_size = max(float(lo), self._size * MISS_DECREASE)
            reason = f"batch missed the latency target, size cut by {MISS_DECREASE}"
        else:
            self._safe_size = min(float(hi), self._safe_size * SAFE_INCREASE + 1)
        if self._backlog:
            # More than a full batch waits upstream: it is late already; drain it fastest.
            target, reason = float(hi), "backlog upstream: throughput first"
        else:
            target = min(target, self._safe_size, math.ceil(self._size * MAX_GROWTH_PER_BATCH))
        if self._drift_cap is not None and self._drift_cap < target:
            target, reason = self._drift_cap, "regrowing after drift"
        new_size = min(hi, max(lo, int(target)))
        if new_size != self._size:
            self._change(new_size, reason)

    def _plan(self, rate: float) -> tuple[float, str]:
        s, cost = self.settings, self._cost
        a, b, budget = cost.overhead_s, cost.per_event_s, self._budget_s
        on_time = rate * (budget - a) / (1 + rate * b)
        limit = UTILISATION_EXIT if self._overloaded else UTILISATION_ENTER
        for n in (min(rate * s.max_wait_ms / 1e3, on_time), on_time):
            n = min(float(s.max_size), max(float(s.min_size), math.floor(n)))
            c = cost.predict(n)
            if c <= budget and rate * c <= limit * n:
                if self._overloaded:
                    logger.debug("leaving overload at %.0f events/s", rate)
                self._overloaded = False
                return n, (
                    f"plan for {rate:.0f} events/s at {a * 1e3:.2f} ms + {b * 1e6:.2f} us/event"
                )
        if not self._overloaded:
            logger.debug("overloaded at %.0f events/s: no size meets the target", rate)
            self._safe_size = float(s.max_size)
        self._overloaded = True
        return float(s.max_size), f"overloaded at {rate:.0f} events/s: throughput first"

    def _change(self, new_size: int, reason: str) -> None:
        logger.debug("batch size %d -> %d: %s", self._size, new_size, reason)
        self._size, self._reason = new_size, reason
