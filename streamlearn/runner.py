"""The loop that drives one pipeline: poll, batch, score, write, learn, commit.

It talks to the outside only through the small ports below (a source and an output writer),
so the loop is the same against Kafka and Redis as against the in-memory fakes of unit tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamlearn.batch import RawBatch
from streamlearn.batching import AdaptiveBatcher, Trigger
from streamlearn.checkpoint import Checkpointer
from streamlearn.delivery import Delivery
from streamlearn.errors import StreamlearnError
from streamlearn.hooks import PipelineHooks
from streamlearn.pipeline import Pipeline, ScoredBatch

log = logging.getLogger(__name__)


class Source(Protocol):
    """Where messages come from; offsets are committed explicitly."""

    def poll(self, max_records: int, timeout_s: float, into: RawBatch) -> int:
        """Append up to ``max_records`` messages to ``into``, waiting at most ``timeout_s``."""
        ...

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the next offset to read per ``(topic, partition)``."""
        ...

    def pause_all(self) -> None:
        """Stop fetching (outputs are behind)."""
        ...

    def resume_all(self) -> None:
        """Fetch again."""
        ...

    def lag(self) -> dict[int, int]:
        """Messages not yet read, per partition."""
        ...

    def close(self) -> None:
        """Leave the consumer group."""
        ...

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Read the given partitions next from the given offsets."""
        ...

    def positions(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset each given partition would be read from."""
        ...


class OutputWriter(Protocol):
    """Where a scored batch goes: predictions and dead letters, durably, before commit."""

    def write(self, scored: ScoredBatch) -> None:
        """Write everything or raise; may be called again for the same batch after a failure."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(slots=True)
class RunStats:
    """Totals of one run."""

    consumed: int = 0
    predicted: int = 0
    invalid: int = 0
    learned: int = 0
    batches: int = 0


class PipelineRunner:
    """Runs one pipeline until stopped, or until ``max_events`` messages were consumed."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: Source,
        outputs: OutputWriter,
        batcher: AdaptiveBatcher,
        hooks: PipelineHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        retry_backoff_s: tuple[float, float] = (0.1, 5.0),
        lag_interval_s: float = 1.0,
        checkpointer: Checkpointer | None = None,
        restored_offsets: dict[tuple[str, int], int] | None = None,
        on_ready: Callable[[bool], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.outputs = outputs
        self.batcher = batcher
        self.hooks = hooks or PipelineHooks()
        self.clock = clock
        self.wall_ms = wall_ms
        self.lag_interval_s = lag_interval_s
        self.checkpointer = checkpointer
        # Next offset to learn per partition (what a checkpoint records), and the offsets a
        # restored checkpoint says to resume from, used at each partition's first assignment.
        self.learned_offsets = dict(restored_offsets or {})
        self._restored = dict(restored_offsets or {})
        self._inflight: dict[tuple[str, int], int] = {}  # commit offsets of the batch in hand
        self.on_ready = on_ready or (lambda ready: None)
        self._assigned = False
        self._outputs_ok = True
        self.delivery = Delivery(
            source.pause_all,
            source.resume_all,
            self._outputs_working,
            backoff_s=retry_backoff_s,
            sleep=self._wait_paused,
        )
        self._unsaved = False
        self._unresolved: set[tuple[str, int]] = set()
        self.stats = RunStats()
        self._buffer = RawBatch()
        self._next_lag = 0.0
        self._lag: int | None = None  # messages waiting upstream, as last measured

    def run(self, stop: threading.Event, max_events: int | None = None) -> RunStats:
        """Consume and process until ``stop`` is set or ``max_events`` were consumed.

        On stop the buffered messages are processed as a final ``shutdown`` batch, so
        everything consumed is written and committed before this returns.
        """
        name = self.pipeline.name
        self.hooks.on_batch_size(name, self.batcher.size)
        while True:
            done = stop.is_set() or (max_events is not None and self.stats.consumed >= max_events)
            if not done:
                self._fill(max_events)
            buffered = len(self._buffer)
            if done:
                if buffered == 0:
                    self.hooks.on_model_score(name, self.pipeline.evaluator.scores())
                    self._checkpoint(force=True)
                    return self.stats
                trigger: Trigger | None = Trigger.SHUTDOWN
            else:
                trigger = self.batcher.close_trigger(buffered, self._buffer.oldest_received)
            full = self._buffer.nbytes >= self.batcher.settings.max_buffered_bytes
            if trigger is None and full:
                trigger = Trigger.SIZE  # the byte bound closes the batch before the count does
            if trigger is not None:
                size = buffered if trigger is Trigger.SHUTDOWN or full else self.batcher.size
                self._process(self._buffer.take(size), trigger, stop)
            self._report_lag()

    def _fill(self, max_events: int | None) -> None:
        buffered = len(self._buffer)
        if self._buffer.nbytes >= self.batcher.settings.max_buffered_bytes:
            return  # bounded memory: the loop processes what is buffered before taking more
        room = self.batcher.room(buffered)
        if max_events is not None:
            room = min(room, max_events - self.stats.consumed)
        if room <= 0:
            return
        wait = self.batcher.wait_s(buffered, self._buffer.oldest_received)
        n = self.source.poll(room, wait, self._buffer)
        if self._unresolved:
            self._resolve_new_partitions()
        if n and self._lag is None:
            self._next_lag = 0.0  # first messages: learn the backlog before the first batch
            self._report_lag()
            if self._lag is not None:
                self.batcher.note_backlog(self._lag)
        if n:
            self.stats.consumed += n
            self.hooks.on_consumed(self.pipeline.name, n)

    def _process(self, batch: RawBatch, trigger: Trigger, stop: threading.Event) -> None:
        name, hooks = self.pipeline.name, self.hooks
        started = self.clock()
        self._inflight = batch.commit_offsets
        scored = self.pipeline.score(batch)
        scored_at = self.clock()
        hooks.on_stage(name, "score", scored_at - started)
        self.delivery.deliver(lambda: self.outputs.write(scored), stop, name)
        written_at_ms = self.wall_ms()
        written_at = self.clock()
        hooks.on_stage(name, "write", written_at - scored_at)
        self._report_outputs(scored, written_at_ms)
        outcome = self.pipeline.learn(scored)
        learned_at = self.clock()
        hooks.on_stage(name, "learn", learned_at - written_at)
        offsets, self._inflight = self._inflight, {}
        self.learned_offsets.update(offsets)
        self._unsaved = True
        self._commit(offsets)
        finished = self.clock()
        hooks.on_stage(name, "commit", finished - learned_at)
        self._checkpoint()
        self._report_learning(outcome.learned, outcome.metrics, outcome.drift)
        self.batcher.observe(len(batch), finished - started, trigger, lag=self._lag)
        hooks.on_batch_closed(name, len(batch), trigger.value)
        hooks.on_batch_size(name, self.batcher.size)
        self.stats.batches += 1

    def _checkpoint(self, force: bool = False) -> None:
        cp = self.checkpointer
        if cp is None or not self._unsaved or not (force or cp.due()):
            return
        started = self.clock()
        try:
            checkpoint = cp.save(self.learned_offsets, self.pipeline.model.version)
        except (StreamlearnError, OSError) as exc:
            # A missed checkpoint only means more replay after a crash: try again later.
            log.warning("%s: saving the model checkpoint failed: %s", self.pipeline.name, exc)
            return
        self._unsaved = False
        self.hooks.on_stage(self.pipeline.name, "checkpoint", self.clock() - started)
        self.hooks.on_checkpoint(self.pipeline.name, checkpoint.written_at)

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        try:
            self.source.commit(offsets)
        except StreamlearnError as exc:
            # A rebalance took the partitions, or the coordinator did not answer: the next
            # commit covers these offsets, or the new owner resumes from the last one.
            log.warning("%s: %s", self.pipeline.name, exc)

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions were assigned: decide where each is read from.

        After a restart, from the restored checkpoint's offset (which may lie behind the group's
        commit, so nothing is skipped by the model). A partition of the batch being written
        right now, from that batch's end (its commit comes next). Any other from the group's
        commit, which then counts as where this model's learning of it starts. Called inside
        the consumer's poll, so it must not block: the last kind is resolved after the poll.
        """
        seeks: dict[tuple[str, int], int] = {}
        for tp in partitions:
            if tp in self._restored:
                seeks[tp] = self._restored.pop(tp)
            elif tp in self._inflight:
                seeks[tp] = self._inflight[tp]
            else:
                self._unresolved.add(tp)
        self.source.seek(seeks)
        self.learned_offsets.update(seeks)
        self._assigned = True
        self._report_ready()

    def _wait_paused(self, seconds: float) -> None:
        # Polling the paused source returns nothing but keeps this member in its group during
        # an outage (kafka-python leaves the group after max_poll_interval_ms without a poll).
        self.source.poll(1, seconds, RawBatch())

    def _outputs_working(self, ok: bool) -> None:
        self._outputs_ok = ok
        self._report_ready()

    def _report_ready(self) -> None:
        self.on_ready(self._assigned and self._outputs_ok)

    def _resolve_new_partitions(self) -> None:
        # Where a new partition's reading started: its first buffered message, else its position.
        first = self._buffer.first_offsets() if self._unresolved else {}
        missing = [tp for tp in self._unresolved if tp not in first]
        positions = self.source.positions(missing) if missing else {}
        for tp in self._unresolved:
            start = first.get(tp, positions.get(tp))
            if start is not None:
                self.learned_offsets[tp] = start
                self._unsaved = True
        self._unresolved.clear()

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions moved to another member: drop their buffered, unprocessed messages.

        The new owner reads them again from the last committed offset.
        """
        self._unresolved.difference_update(partitions)
        for tp in partitions:
            # Another member reads them on; if they come back, the group's commit says where.
            self.learned_offsets.pop(tp, None)
        dropped = self._buffer.drop_partitions(set(partitions))
        if dropped:
            log.info(
                "%s: dropped %d buffered messages of revoked partitions %s",
                self.pipeline.name,
                dropped,
                partitions,
            )

    def _report_outputs(self, scored: ScoredBatch, written_at_ms: int) -> None:
        name, hooks = self.pipeline.name, self.hooks
        decoded = scored.decoded
        raw_ts = np.asarray(scored.raw.timestamps_ms, dtype=np.int64)[decoded.index]
        latencies = np.maximum(written_at_ms - raw_ts, 0) / 1000.0
        hooks.on_predictions(name, latencies)
        target_s = self.batcher.settings.latency_target_ms / 1000.0
        missed = int((latencies > target_s).sum())
        if missed:
            hooks.on_target_missed(name, missed)
        for reason, count in Counter(r.reason for r in scored.rejected).items():
            hooks.on_invalid(name, reason, count)
        self.stats.predicted += len(decoded)
        self.stats.invalid += len(scored.rejected)

    def _report_learning(self, learned: int, metrics: dict[str, float], drift: bool) -> None:
        name = self.pipeline.name
        self.stats.learned += learned
        if learned:
            self.hooks.on_learned(name, learned)
            self.hooks.on_model_version(name, self.pipeline.model.version)
        if metrics:
            self.hooks.on_model_score(name, metrics)
        if drift:
            self.hooks.on_drift(name)
            self.batcher.signal_drift()

    def _report_lag(self) -> None:
        now = self.clock()
        if now >= self._next_lag:
            self._next_lag = now + self.lag_interval_s
            lag = self.source.lag()
            self._lag = sum(lag.values()) if lag else None
            self.hooks.on_lag(self.pipeline.name, lag)
