"""The retention replay with the batch boundaries the adaptive batcher chooses.

The fixed-size replays (:mod:`benchmarks.retention_replay`) cut the stream every ``n`` messages.
Here the real :class:`streamlearn.runner.PipelineRunner` with the real
:class:`streamlearn.batching.AdaptiveBatcher` (the retention configuration's batching: latency
target 100 ms, margin 20 ms, sizes 1..2048, ``max_wait_ms`` 50, drift floor and regrowth at their
defaults) decides where each batch closes, on a simulated clock:

* messages arrive at stated times: all at once (a backlog: the queue is full) or at a steady
  rate of events per second, the labels in between at their places in the stream;
* the source hands out what has arrived by the simulated clock and reports the rest as lag;
* processing a batch of ``n`` messages takes ``PER_BATCH_S + PER_MESSAGE_S * n`` of simulated
  time (a cost model of measured times, below), during which later messages keep arriving.

The batches go through the same task, label store and join bookkeeping as the fixed-size
replays, so their AUCs pair with batch size 1's on the same sub-stream. Drift alarms of the
task shrink the batch as they do in production (``signal_drift``).

Why not the sizes of the end-to-end run (``benchmarks.retention_e2e`` records them): that run
reads the events topic and the labels topic side by side from a backlog, so most labels are
read before their events (54,390 of 60,058 in the recorded run), an interleaving unlike the
stream order every replay uses, and it consumes the whole stream rather than the sub-stream
batch size 1 is replayed on. Its sizes cannot be laid over the replayed sequence.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.retention_replay import JoinLog, PrunedLabelStore, Replay
from benchmarks.retention_stream import (
    EVENTS_TOPIC,
    HORIZON_S,
    LABELS_TOPIC,
    Message,
    pipeline_dict,
)
from streamlearn.batch import RawBatch
from streamlearn.batching import AdaptiveBatcher
from streamlearn.config import PipelineConfig
from streamlearn.hooks import PipelineHooks
from streamlearn.runner import PipelineRunner
from streamlearn.tasks.classification import ClassificationTask

# The cost model of one batch on the real broker and Redis, ``PER_BATCH_S + PER_MESSAGE_S * n``.
# Per message: the stage times of the recorded end-to-end retention run (2026-11-27, 2 cores:
# score 37 + write 21 + learn 6 + commit 2 + checkpoint 2 µs per message at a mean batch of
# 1,622). Per batch: the fraud pipeline's fixed-1 run on the same stack (results/latest.md:
# 4.4 ms of stage time per batch of one event), rounded up to 5 ms for the retention task's
# extra Redis round trips (label exchange, aggregate state).
PER_BATCH_S = 0.005
PER_MESSAGE_S = 68e-6


@dataclass(frozen=True, slots=True)
class Arrival:
    """How messages arrive: all at once (``events_per_s`` None) or at a steady event rate."""

    name: str
    events_per_s: float | None = None

    def times(self, stream: list[Message]) -> np.ndarray:
        """Arrival time (simulated seconds) of each message of ``stream``.

        At a steady rate the messages are evenly spaced, ``events_per_s`` events a second on
        average with the labels in between at their places in the stream.

        >>> stream = [("customer-activity", b"", b"", 0)] * 4 + [("churn-labels", b"", b"", 0)]
        >>> Arrival("steady", 4.0).times(stream).tolist()
        [0.0, 0.2, 0.4, 0.6, 0.8]
        >>> Arrival("backlog").times(stream).tolist()
        [0.0, 0.0, 0.0, 0.0, 0.0]
        """
        if self.events_per_s is None:
            return np.zeros(len(stream))
        events = sum(1 for m in stream if m[0] == EVENTS_TOPIC)
        per_s = self.events_per_s * len(stream) / max(events, 1)
        return np.arange(len(stream)) / per_s

    def describe(self) -> str:
        """In words, for the results."""
        if self.events_per_s is None:
            return "backlog: every message waiting at the start"
        return f"steady {self.events_per_s:,.0f} events/s, labels in between"


ARRIVALS = (Arrival("backlog"), Arrival("steady-2000", 2000.0))


class SimulatedClock:
    """A clock that moves only when told: waiting for messages, or processing a batch."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ArrivingSource:
    """A one-partition-per-topic source whose messages arrive at given simulated times.

    ``poll`` returns what has arrived (up to ``max_records``) at once; with nothing arrived it
    waits, moving the clock to the next arrival or by ``timeout_s``, whichever is sooner.
    """

    def __init__(self, stream: list[Message], arrivals: np.ndarray, clock: SimulatedClock) -> None:
        self.stream = stream
        self.arrivals = arrivals.tolist()
        self.clock = clock
        self.position = 0
        self.offsets: list[int] = []
        counters: dict[str, int] = {}
        for topic, *_ in stream:
            self.offsets.append(counters.get(topic, 0))
            counters[topic] = self.offsets[-1] + 1

    def _arrived(self) -> int:
        return bisect.bisect_right(self.arrivals, self.clock.now)

    def poll(self, max_records: int, timeout_s: float, into: RawBatch) -> int:
        """Append up to ``max_records`` arrived messages, waiting up to ``timeout_s`` for one."""
        if max_records <= 0:
            return 0
        arrived = self._arrived()
        if arrived <= self.position:
            if self.position < len(self.arrivals):
                upcoming = self.arrivals[self.position]
                if upcoming <= self.clock.now + timeout_s:
                    self.clock.now = upcoming
                    arrived = self._arrived()
                else:
                    self.clock.now += timeout_s
                    return 0
            else:
                self.clock.now += timeout_s
                return 0
        end = min(arrived, self.position + max_records)
        received = self.clock.now
        for i in range(self.position, end):
            topic, key, value, ts = self.stream[i]
            into.append(topic, 0, self.offsets[i], key, value, ts, received)
        count, self.position = end - self.position, end
        return count

    def lag(self) -> dict[int, int]:
        """Messages arrived and not yet read (both topics are partition 0)."""
        return {0: max(0, self._arrived() - self.position)}

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Nothing to commit to."""

    def pause_all(self) -> None:
        """Never paused: the writer never fails."""

    def resume_all(self) -> None:
        """Never paused."""

    def close(self) -> None:
        """Nothing to close."""

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Never asked to: no rebalance, no rollback."""

    def positions(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Every partition starts at offset 0."""
        return {tp: 0 for tp in partitions}

    def group_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """No commits yet."""
        return {}


class JoiningWriter:
    """The outputs step of the replay: the label exchange, and the batch's simulated cost."""

    def __init__(self, store: PrunedLabelStore, clock: SimulatedClock, joins: JoinLog) -> None:
        self.store = store
        self.clock = clock
        self.joins = joins

    def write(self, scored: Any) -> None:
        """Exchange with the label store, keep the joins, and spend the batch's time."""
        assert scored.pending is not None and scored.arrived is not None  # labels configured
        scored.exchange = self.store.exchange(scored.pending, scored.arrived, scored.watermark_ms)
        self.joins.add(scored.exchange)
        self.clock.now += PER_BATCH_S + PER_MESSAGE_S * len(scored.raw)

    def close(self) -> None:
        """Nothing to release."""


class BatchLog(PipelineHooks):
    """Every batch's size and why it closed, and the drifts the task raised."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.triggers: Counter[str] = Counter()
        self.drifts = 0
        self.unmatched: Counter[str] = Counter()
        self.drift_closed_at: list[int] = []  # messages consumed when a drift closed a batch

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:
        self.sizes.append(size)
        self.triggers[trigger] += 1
        if trigger == "drift":
            self.drift_closed_at.append(sum(self.sizes))

    def on_drift(self, pipeline: str) -> None:
        self.drifts += 1

    def on_labels_unmatched(self, pipeline: str, reason: str, n: int) -> None:
        self.unmatched[reason] += n


def adaptive_config(aggregates: bool = True) -> PipelineConfig:
    """The retention pipeline with its adaptive batching (sizes 1..2048), as configured."""
    return PipelineConfig.model_validate(pipeline_dict(aggregates=aggregates))


def replay_adaptive(
    stream: list[Message],
    arrival: Arrival,
    *,
    aggregates: bool = True,
    config: PipelineConfig | None = None,
) -> tuple[Replay, dict[str, Any]]:
    """Run ``stream`` through the real runner and adaptive batcher; the replay and its batches.

    ``config``: another pipeline configuration than :func:`adaptive_config`'s (a test's).
    """
    import time

    config = config or adaptive_config(aggregates)
    clock = SimulatedClock()
    source = ArrivingSource(stream, arrival.times(stream), clock)
    joins = JoinLog()
    writer = JoiningWriter(PrunedLabelStore(HORIZON_S), clock, joins)
    log = BatchLog()
    task = ClassificationTask(config)
    runner = PipelineRunner(
        task,
        source,
        writer,
        AdaptiveBatcher(config.batching, clock=clock),
        hooks=log,
        clock=clock,
        wall_ms=lambda: int(clock.now * 1000),
    )
    runner.assigned([(EVENTS_TOPIC, 0), (LABELS_TOPIC, 0)])
    started = time.perf_counter()
    stats = runner.run(threading.Event(), max_events=len(stream))
    seconds = time.perf_counter() - started
    replay = joins.replay(
        batch_size="adaptive",
        aggregates=aggregates,
        messages=stats.consumed,
        events=stats.predicted,
        seconds=seconds,
        drifts=log.drifts,
        unmatched=dict(log.unmatched),
    )
    return replay, boundaries(log, arrival, clock.now)


def boundaries(log: BatchLog, arrival: Arrival, simulated_s: float) -> dict[str, Any]:
    """What the batcher chose: the batch sizes, why batches closed, the simulated time."""
    sizes = np.asarray(log.sizes)
    return {
        "arrival": arrival.describe(),
        "events_per_s": arrival.events_per_s,
        "cost_model": {"per_batch_s": PER_BATCH_S, "per_message_s": PER_MESSAGE_S},
        "simulated_s": round(simulated_s, 1),
        "batches": len(sizes),
        "mean": round(float(sizes.mean()), 1),
        "p10": int(np.percentile(sizes, 10)),
        "p50": int(np.percentile(sizes, 50)),
        "p90": int(np.percentile(sizes, 90)),
        "min": int(sizes.min()),
        "max": int(sizes.max()),
        "at_2048_pct": round(100 * float((sizes == 2048).mean()), 1),
        "messages_in_batches_below_32_pct": round(
            100 * float(sizes[sizes < 32].sum()) / float(sizes.sum()), 2
        ),
        "triggers": dict(log.triggers),
        "drift_closed_at_message": log.drift_closed_at,
    }
