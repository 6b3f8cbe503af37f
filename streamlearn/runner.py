"""The loop that drives one pipeline: poll, batch, score, write, learn, commit.

It talks to the outside only through the small ports of :mod:`streamlearn.ports` (a source and
an output writer), so the loop is the same against Kafka and Redis as against the in-memory
fakes of unit tests.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamlearn.batch import RawBatch
from streamlearn.batching import AdaptiveBatcher, Trigger
from streamlearn.checkpoint import Checkpoint, Checkpointer, ModelRequests
from streamlearn.delivery import Delivery
from streamlearn.errors import PipelineFenced, StreamlearnError
from streamlearn.hooks import PipelineHooks
from streamlearn.offsets import OffsetLedger, Offsets
from streamlearn.ports import OutputWriter, SendsAhead, Source
from streamlearn.tasks.base import KeepsCheckpoints, LearnsEach, Scored, Task

log = logging.getLogger(__name__)

PREFETCH = 64  # messages asked for when the buffer is empty, whatever the batch size


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
        pipeline: Task,
        source: Source,
        outputs: OutputWriter,
        batcher: AdaptiveBatcher,
        hooks: PipelineHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        retry_backoff_s: tuple[float, float] = (0.1, 5.0),
        lag_interval_s: float = 1.0,
        checkpointer: Checkpointer | None = None,
        restored: Checkpoint | None = None,
        on_ready: Callable[[bool], None] | None = None,
        requests: ModelRequests | None = None,
        fence: Callable[[], None] = lambda: None,
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
        self.requests = requests
        self.fence = fence  # raises PipelineFenced once another process took the pipeline over
        # The one owner of offsets: learned, checkpointed, committed.
        self.ledger = OffsetLedger(
            source,
            self._save if checkpointer is not None else None,
            due=checkpointer.due if checkpointer is not None else (lambda: True),
            name=pipeline.name,
        )
        if restored is not None:
            self.ledger.restore(restored.offsets, restored.learned)
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
        self.stats = RunStats()
        # Batches of one (min = max size 1), where the task can: the events a poll brought are
        # scored and learned one at a time in one pass, then written and committed together.
        self._each = (
            batcher.settings.max_size == 1
            and isinstance(pipeline, LearnsEach)
            and pipeline.learns_each
        )
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
                    self.hooks.on_model_score(name, self.pipeline.scores())
                    self._settle(force=True)
                    return self.stats
                trigger: Trigger | None = Trigger.SHUTDOWN
            else:
                trigger = self.batcher.close_trigger(buffered, self._buffer.oldest_received)
            full = self._buffer.nbytes >= self.batcher.settings.max_buffered_bytes
            if trigger is None and full:
                trigger = Trigger.SIZE  # the byte bound closes the batch before the count does
            if trigger is not None and self._each:
                self._process_each(self._buffer.take(buffered), trigger, stop)
            elif trigger is not None:
                size = buffered if trigger is Trigger.SHUTDOWN or full else self.batcher.size
                self._process(self._buffer.take(size), trigger, stop)
            self._report_lag()
            if self.requests is not None and self.requests.due():
                with self._busy("reading model requests from Redis"):
                    self._adopt_requested_model()
            if trigger is None and self.ledger.pending:
                # idle: the last batches still get their checkpoint and commit
                with self._busy("committing offsets and saving the checkpoint"):
                    self._settle()

    def _fill(self, max_events: int | None) -> None:
        buffered = len(self._buffer)
        if self._buffer.nbytes >= self.batcher.settings.max_buffered_bytes:
            return  # bounded memory: the loop processes what is buffered before taking more
        room = self.batcher.room(buffered)
        if buffered == 0:
            # Tiny batches: fetch a few ahead, so one poll's fixed cost (a hand-off to the
            # client's network thread) is shared by several batches rather than paid by each.
            room = max(room, min(PREFETCH, self.batcher.settings.max_buffered_events))
        if max_events is not None:
            room = min(room, max_events - self.stats.consumed)
        if room <= 0:
            return
        wait = self.batcher.wait_s(buffered, self._buffer.oldest_received)
        n = self.source.poll(room, wait, self._buffer)
        self.ledger.resolve(self._buffer.first_offsets())
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
        self.fence()
        started = self.clock()
        hooks.on_batch_started(name)
        ticket = self.ledger.begin(batch.commit_offsets)
        # Scoring may read per-entity state (Redis): an outage there is waited out too.
        scored = self.delivery.call(lambda: self.pipeline.score(batch), stop, name)
        scored_at = self.clock()
        hooks.on_stage(name, "score", scored_at - started)
        # The predictions' Redis write runs while the batch is learned. Learning ahead of its
        # confirmation loses nothing: no checkpoint or commit can happen before it (both wait
        # for the settle below; a rebalance's checkpoint only inside a poll, and retrying the
        # confirmation does not poll), and a failure stops the pipeline with this batch
        # neither saved nor committed.
        confirm = self._begin_outputs(scored, stop)
        sent_at = self.clock()
        # Rows of partitions taken away meanwhile are not learned: they will be read again.
        owned = self.ledger.still_owned(ticket)
        keep = None
        if len(owned) < len(ticket.ends):
            keep = self.ledger.owned_rows(ticket, batch.topics, batch.partitions)
        try:
            outcome = self.pipeline.learn(scored, keep)
        except BaseException:
            with contextlib.suppress(Exception):
                confirm()  # the connection goes back to its pool; the failure is the learn's
            raise
        learned_at = self.clock()
        self._confirm_outputs(confirm, scored, stop)
        written_at_ms = self.wall_ms()  # what the latency counts to: when the reply was seen
        written_at = self.clock()
        hooks.on_stage(name, "write", (sent_at - scored_at) + (written_at - learned_at))
        hooks.on_stage(name, "learn", learned_at - sent_at)
        self._report_outputs(scored, written_at_ms, written_at)
        reported_at = self.clock()
        self.ledger.learned(ticket, outcome.learned)
        self._settle()
        finished = self.clock()
        hooks.on_stage(name, "commit", finished - reported_at)
        self._report_learning(outcome.learned, outcome.metrics, outcome.drift)
        for reason, count in outcome.unmatched.items():
            hooks.on_labels_unmatched(name, reason, count)
        if outcome.label_delays_s is not None and len(outcome.label_delays_s):
            hooks.on_label_delays(name, outcome.label_delays_s)
        self.batcher.observe(len(batch), finished - started, trigger, lag=self._lag)
        hooks.on_batch_closed(name, len(batch), trigger.value)
        hooks.on_batch_size(name, self.batcher.size)
        self.stats.batches += 1

    def _process_each(self, batch: RawBatch, trigger: Trigger, stop: threading.Event) -> None:
        """Batches of one in one pass: each event scored, then learned, before the next.

        The scores, versions and model are those of one batch per event; the write, the
        commit and the per-batch bookkeeping are paid once. Learning runs before the write, so
        every row counts as learned, even of a partition that moved meanwhile (its marks go
        with the model into the checkpoint; nothing is learned twice when it comes back).
        """
        name, hooks = self.pipeline.name, self.hooks
        assert isinstance(self.pipeline, LearnsEach)
        each = self.pipeline
        self.fence()
        started = self.clock()
        hooks.on_batch_started(name)
        ticket = self.ledger.begin(batch.commit_offsets)
        scored, outcome = self.delivery.call(lambda: each.score_and_learn_each(batch), stop, name)
        scored_at = self.clock()
        hooks.on_stage(name, "score", scored_at - started)  # scoring and learning, interleaved
        # Learned already: no poll (so no rebalance) until the ledger counts it (see Delivery).
        self.delivery.deliver(lambda: self.outputs.write(scored), stop, name, poll=False)
        written_at_ms = self.wall_ms()
        written_at = self.clock()
        hooks.on_stage(name, "write", written_at - scored_at)
        self._report_outputs(scored, written_at_ms, written_at)
        self.ledger.learned(ticket, outcome.learned, owned_only=False)
        self._settle()
        finished = self.clock()
        hooks.on_stage(name, "commit", finished - written_at)
        self._report_learning(outcome.learned, outcome.metrics, outcome.drift)
        each_s = (finished - started) / max(len(batch), 1)
        for _ in range(len(batch)):
            self.batcher.observe(1, each_s, trigger, lag=self._lag)
            hooks.on_batch_closed(name, 1, trigger.value)
        hooks.on_batch_size(name, self.batcher.size)
        self.stats.batches += len(batch)

    def _begin_outputs(self, scored: Any, stop: threading.Event) -> Callable[[], None]:
        """Write the batch's outputs up to what can be confirmed later; return that wait."""
        name, outputs = self.pipeline.name, self.outputs
        if isinstance(outputs, SendsAhead):
            return self.delivery.call(lambda: outputs.begin(scored), stop, name)
        self.delivery.deliver(lambda: outputs.write(scored), stop, name)
        return lambda: None

    def _confirm_outputs(
        self, confirm: Callable[[], None], scored: Any, stop: threading.Event
    ) -> None:
        """Wait for the outputs :meth:`_begin_outputs` sent; after a failure, write them again."""
        attempts = [confirm]

        def attempt() -> None:
            step, attempts[0] = attempts[0], lambda: self.outputs.write(scored)
            step()

        # No poll until the ledger counts the batch the model has learned (see Delivery).
        self.delivery.deliver(attempt, stop, self.pipeline.name, poll=False)

    @property
    def learned_offsets(self) -> Offsets:
        """Next offset to learn per partition: what the in-memory model covers."""
        return self.ledger.learned_offsets

    @contextlib.contextmanager
    def _busy(self, activity: str) -> Iterator[None]:
        """Report I/O between batches to the hooks, so a stall there shows (``/readyz``)."""
        self.hooks.on_busy(self.pipeline.name, activity)
        try:
            yield
        finally:
            self.hooks.on_busy(self.pipeline.name, None)

    def _settle(self, force: bool = False) -> None:
        self.fence()
        self.ledger.settle(force)

    def _save(self, offsets: Offsets, learned: int, rolled_back_from: int | None = None) -> bool:
        cp = self.checkpointer
        assert cp is not None
        started = self.clock()
        try:
            checkpoint = cp.save(
                offsets, learned, self.pipeline.model_version, rolled_back_from=rolled_back_from
            )
        except PipelineFenced:
            raise
        except (StreamlearnError, OSError) as exc:
            # Not saved: nothing is committed past the last checkpoint; a crash replays more.
            log.warning("%s: saving the model checkpoint failed: %s", self.pipeline.name, exc)
            return False
        if isinstance(self.pipeline, KeepsCheckpoints):
            self.pipeline.checkpointed(cp.keep)
        self.hooks.on_stage(self.pipeline.name, "checkpoint", self.clock() - started)
        self.hooks.on_checkpoint(self.pipeline.name, checkpoint.created)
        return True

    def _adopt_requested_model(self) -> None:
        """Between batches: adopt a model an operator asked for (rollback or import)."""
        if self.requests is None:
            return
        try:
            checkpoint = self.requests.poll()
        except (StreamlearnError, OSError) as exc:
            log.warning("%s: reading model requests failed: %s", self.pipeline.name, exc)
            return
        if checkpoint is None:
            return
        name = self.pipeline.name
        self._buffer = RawBatch()  # read again from the adopted checkpoint's offsets
        self.ledger.rollback(checkpoint.offsets, checkpoint.learned)
        self._save(checkpoint.offsets, checkpoint.learned, rolled_back_from=checkpoint.version)
        log.warning(
            "%s: now serving checkpoint v%d (model version %d, %d events learned); reading "
            "again from its offsets %s",
            name,
            checkpoint.version,
            checkpoint.model_version,
            checkpoint.learned,
            checkpoint.offsets,
        )
        self.hooks.on_model_version(name, self.pipeline.model_version)

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions were assigned: the ledger decides where each is read from."""
        self.ledger.assigned(partitions)
        self.pipeline.assigned(partitions)
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

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions are moving: checkpoint and commit what is learned, drop what is buffered.

        Buffered messages of those partitions are read again, from what the model learned,
        by whoever owns them next (this member too, if they come back).
        """
        self.ledger.revoked(partitions)
        dropped = self._buffer.drop_partitions(set(partitions))
        if dropped:
            log.info(
                "%s: dropped %d buffered messages of revoked partitions %s",
                self.pipeline.name,
                dropped,
                partitions,
            )

    def _report_outputs(self, scored: Scored, written_at_ms: int, written_at: float) -> None:
        name, hooks = self.pipeline.name, self.hooks
        rows = scored.rows
        latencies = ingest_latencies(scored.raw, rows, written_at_ms, written_at)
        hooks.on_predictions(name, latencies)
        target_s = self.batcher.settings.latency_target_ms / 1000.0
        missed = int((latencies > target_s).sum())
        if missed:
            hooks.on_target_missed(name, missed)
        for reason, count in Counter(r.reason for r in scored.rejected).items():
            hooks.on_invalid(name, reason, count)
        if scored.too_late:
            hooks.on_too_late(name, scored.too_late)
        self.stats.predicted += len(rows)
        self.stats.invalid += len(scored.rejected)

    def _report_learning(self, learned: int, metrics: dict[str, float], drift: bool) -> None:
        name = self.pipeline.name
        self.stats.learned += learned
        if learned:
            self.hooks.on_learned(name, learned)
            self.hooks.on_model_version(name, self.pipeline.model_version)
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


# A record timestamp this far from the wall clock is an event time the producer set on purpose
# (a replayed or generated stream), not when the event entered Kafka.
_INGEST_WINDOW_MS = 3_600_000


def ingest_latencies(
    raw: RawBatch, rows: np.ndarray, written_at_ms: int, written_at: float
) -> np.ndarray:
    """Seconds from each event's ingest to its prediction being written.

    Ingest is the Kafka record's timestamp; where that lies in the future or more than an hour
    back (the producer stamped event time), it is when this process received the message.

    >>> raw = RawBatch()
    >>> raw.append("t", 0, 0, None, b"{}", 10_000, received=1.0)
    >>> raw.append("t", 0, 1, None, b"{}", 99_999_999, received=1.5)  # stamped in the future
    >>> ingest_latencies(raw, np.array([0, 1]), 10_040, written_at=1.6).round(3).tolist()
    [0.04, 0.1]
    """
    record = written_at_ms - np.asarray(raw.timestamps_ms, dtype=np.int64)[rows]
    latencies = record / 1000.0
    stamped = (record < 0) | (record > _INGEST_WINDOW_MS)
    if stamped.any():
        received = np.asarray(raw.received, dtype=np.float64)[rows]
        latencies = np.where(stamped, written_at - received, latencies)
    return np.maximum(latencies, 0.0)
