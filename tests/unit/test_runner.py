"""The pipeline loop against in-memory fakes of its ports: stop, write, commit, retry."""

from __future__ import annotations

import functools
import threading
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from streamlearn.batch import RawBatch
from streamlearn.batching import AdaptiveBatcher
from streamlearn.config import BatchingConfig, PipelineConfig, load_config
from streamlearn.drift import ClassErrorDrift
from streamlearn.errors import (
    OutputBackpressure,
    OutputRejected,
    ShutdownTimeout,
    StreamlearnError,
)
from streamlearn.hooks import PipelineHooks
from streamlearn.runner import PipelineRunner, RunStats
from streamlearn.tasks.classification import ClassificationTask, ScoredBatch
from streamlearn.workloads import MALFORMED_SAMPLES, task_events
from tests.unit.recording import RecordingHooks

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "config.yaml"
MESSAGE_TS_MS = 1_000_000
HOOKS = [name for name in dir(PipelineHooks) if name.startswith("on_")]


@functools.cache
def fraud_config() -> PipelineConfig:
    return load_config(EXAMPLE, env={}).pipelines[0]


def fraud_values(n: int, seed: int = 0) -> list[bytes]:
    return [orjson.dumps(e) for e in task_events("fraud", seed=seed, drift_at=None)(n)]


# --- fakes of the ports ----------------------------------------------------------------------


class TickingClock:
    """Monotonic seconds that move a little on every read, so every stage takes some time."""

    def __init__(self, step: float = 0.0005) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def messages(values: list[bytes | None], partitions: int = 2) -> list[Message]:
    """Values spread round-robin over partitions, partition p's offsets starting at 100·(p + 1)."""
    out, next_offset = [], {p: 100 * (p + 1) for p in range(partitions)}
    for i, value in enumerate(values):
        p = i % partitions
        out.append(Message("transactions", p, next_offset[p], value))
        next_offset[p] += 1
    return out


class FakeSource:
    """A Source over a list of messages; honours pause; can set ``stop`` once drained."""

    def __init__(
        self,
        pending: list[Message],
        clock: TickingClock,
        log: list[tuple[str, Any]],
        stop_when_drained: threading.Event | None = None,
    ) -> None:
        self.pending = deque(pending)
        self.all = list(pending)
        self.honour_seeks = False
        self.clock = clock
        self.log = log
        self.stop_when_drained = stop_when_drained
        self.paused = False
        self.commits: list[dict[tuple[str, int], int]] = []
        self.commit_errors: list[Exception] = []
        self.closed = False
        self.per_poll: int | None = None
        # Before poll number k, a rebalance revokes these partitions (as kafka-python's
        # callbacks run inside poll) and tells the runner.
        self.revocations: dict[int, list[tuple[str, int]]] = {}
        self.runner: PipelineRunner | None = None
        self._polls = 0

    def poll(self, max_records: int, timeout_s: float, into: RawBatch) -> int:
        assert timeout_s >= 0
        if self.paused:
            self.log.append(("poll while paused", timeout_s))
            return 0
        self._polls += 1
        revoked = self.revocations.pop(self._polls, [])
        if revoked:
            self.pending = deque(m for m in self.pending if (m.topic, m.partition) not in revoked)
            assert self.runner is not None
            self.runner.revoke(revoked)
        if not self.pending and self.stop_when_drained is not None:
            self.stop_when_drained.set()
        n, limit = 0, min(max_records, self.per_poll or max_records)
        while self.pending and n < limit:
            m = self.pending.popleft()
            into.append(m.topic, m.partition, m.offset, None, m.value, MESSAGE_TS_MS, self.clock())
            n += 1
        return n

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.log.append(("commit", dict(offsets)))
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.commits.append(dict(offsets))

    def pause_all(self) -> None:
        self.log.append(("pause", None))
        self.paused = True

    def resume_all(self) -> None:
        self.log.append(("resume", None))
        self.paused = False

    def lag(self) -> dict[int, int]:
        return dict(Counter(m.partition for m in self.pending))

    def close(self) -> None:
        self.closed = True

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        self.log.append(("seek", dict(offsets)))
        if not self.honour_seeks:
            return
        # As Kafka does: the partition is read again from the offset sought.
        kept = [m for m in self.pending if (m.topic, m.partition) not in offsets]
        again = [
            m
            for m in self.all
            if (m.topic, m.partition) in offsets and m.offset >= offsets[(m.topic, m.partition)]
        ]
        self.pending = deque(sorted(kept + again, key=lambda m: (m.offset, m.partition)))

    def positions(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(partitions, 0)

    def group_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {}


class FakeOutputs:
    """An OutputWriter that keeps what it was given, after failing ``failures`` times."""

    def __init__(
        self,
        log: list[tuple[str, Any]],
        failures: int = 0,
        error: Exception | None = None,
        on_failure: threading.Event | None = None,
    ) -> None:
        self.log = log
        self.failures = failures
        self.error = error or OutputBackpressure("redis is not answering")
        self.on_failure = on_failure
        self.written: list[ScoredBatch] = []

    def write(self, scored: ScoredBatch) -> None:
        if self.failures:
            self.failures -= 1
            self.log.append(("write failed", len(scored.raw)))
            if self.on_failure is not None:
                self.on_failure.set()
            raise self.error
        self.log.append(("write", len(scored.raw)))
        self.written.append(scored)

    @property
    def raw_values(self) -> list[bytes | None]:
        return [v for s in self.written for v in s.raw.values]


class RecordingBatcher(AdaptiveBatcher):
    """The real batcher, counting drift signals."""

    drift_signals = 0

    def signal_drift(self) -> None:
        self.drift_signals += 1
        super().signal_drift()


class AlwaysDrift(ClassErrorDrift):
    """A detector that fires on every labelled batch."""

    def update(self, scores: np.ndarray, labels: np.ndarray) -> bool:
        return True


@dataclass
class Rig:
    runner: PipelineRunner
    source: FakeSource
    outputs: FakeOutputs
    hooks: RecordingHooks
    batcher: RecordingBatcher
    stop: threading.Event
    log: list[tuple[str, Any]] = field(default_factory=list)
    readiness: list[bool] = field(default_factory=list)

    def run(self, max_events: int | None = None) -> RunStats:
        return self.runner.run(self.stop, max_events=max_events)

    def triggers(self) -> list[str]:
        return [args[2] for args in self.hooks.args("on_batch_closed")]

    def batch_sizes(self) -> list[int]:
        return [args[1] for args in self.hooks.args("on_batch_closed")]


def rig(
    values: list[bytes | None],
    *,
    size: int = 16,
    stop_when_drained: bool = True,
    failures: int = 0,
    error: Exception | None = None,
    pipeline: ClassificationTask | None = None,
    wall_ms: int = MESSAGE_TS_MS + 250,
    max_wait_ms: float = 10_000,
    latency_target_ms: float = 100,
    stop_on_write_failure: bool = False,
    max_buffered_bytes: int = 64 * 1024 * 1024,
) -> Rig:
    clock = TickingClock()
    log: list[tuple[str, Any]] = []
    stop = threading.Event()
    source = FakeSource(messages(values), clock, log, stop if stop_when_drained else None)
    outputs = FakeOutputs(log, failures, error, on_failure=stop if stop_on_write_failure else None)
    hooks = RecordingHooks()
    settings = BatchingConfig(
        min_size=size,
        max_size=size,
        max_wait_ms=max_wait_ms,
        latency_target_ms=latency_target_ms,
        max_buffered_bytes=max_buffered_bytes,
    )
    batcher = RecordingBatcher(settings, clock=clock)
    pipeline = pipeline or ClassificationTask(fraud_config(), clock_ms=lambda: wall_ms)
    readiness: list[bool] = []
    runner = PipelineRunner(
        pipeline,
        source,
        outputs,
        batcher,
        hooks=hooks,
        clock=clock,
        wall_ms=lambda: wall_ms,
        retry_backoff_s=(0.001, 0.002),
        lag_interval_s=0.0,
        on_ready=readiness.append,
    )
    source.runner = runner
    # As on joining the group: both partitions; readiness is recorded from here on.
    runner.assigned([("transactions", 0), ("transactions", 1)])
    readiness.clear()
    log.clear()
    return Rig(runner, source, outputs, hooks, batcher, stop, log, readiness)


def last_offsets(consumed: list[Message]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for m in consumed:
        out[(m.topic, m.partition)] = max(out.get((m.topic, m.partition), 0), m.offset + 1)
    return out


def merged(commits: list[dict[tuple[str, int], int]]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for commit in commits:
        for tp, offset in commit.items():
            assert offset > out.get(tp, -1), "commits must move forward"
            out[tp] = offset
    return out


def events_in(log: list[tuple[str, Any]]) -> Iterator[str]:
    return (kind for kind, _ in log)


# --- stopping --------------------------------------------------------------------------------


def test_max_events_consumes_exactly_n_then_writes_and_commits_them_all() -> None:
    values: list[bytes | None] = list(fraud_values(100))
    r = rig(values, size=16, stop_when_drained=False)
    stats = r.run(max_events=70)
    assert stats.consumed == 70
    assert len(r.source.pending) == 30  # nothing read beyond the limit
    assert r.outputs.raw_values == values[:70]
    assert stats.predicted + stats.invalid == 70
    assert stats.batches == 5
    assert r.batch_sizes() == [16, 16, 16, 16, 6]
    assert r.triggers() == ["size"] * 4 + ["shutdown"]
    assert r.hooks.total("on_consumed") == 70
    consumed = messages(values)[:70]
    assert merged(r.source.commits) == last_offsets(consumed)
    assert merged(r.source.commits) == {("transactions", 0): 135, ("transactions", 1): 235}


def test_max_events_below_one_batch_is_one_shutdown_batch() -> None:
    values: list[bytes | None] = list(fraud_values(10))
    r = rig(values, size=16, stop_when_drained=False)
    stats = r.run(max_events=5)
    assert (stats.consumed, stats.batches) == (5, 1)
    assert r.triggers() == ["shutdown"]
    assert r.outputs.raw_values == values[:5]
    assert r.source.commits == [{("transactions", 0): 103, ("transactions", 1): 202}]


def test_stop_processes_the_buffer_as_a_final_shutdown_batch() -> None:
    values: list[bytes | None] = list(fraud_values(40))
    r = rig(values, size=32)
    stats = r.run()  # the source sets `stop` once it has nothing more
    assert r.stop.is_set()
    assert stats.consumed == 40
    assert r.triggers() == ["size", "shutdown"]
    assert r.batch_sizes() == [32, 8]
    assert r.outputs.raw_values == values
    assert merged(r.source.commits) == last_offsets(messages(values))


def test_stop_before_anything_was_read_returns_at_once() -> None:
    r = rig(list(fraud_values(5)))
    r.stop.set()
    stats = r.run()
    assert stats == RunStats()
    assert len(r.source.pending) == 5
    assert r.source.commits == []
    assert r.outputs.written == []


def test_each_batch_is_written_then_committed() -> None:
    values: list[bytes | None] = list(fraud_values(48))
    r = rig(values, size=16)
    r.run()
    kinds = [k for k in events_in(r.log) if k in ("write", "commit")]
    assert kinds == ["write", "commit"] * 3
    for scored, commit in zip(r.outputs.written, r.source.commits):
        assert commit == scored.raw.commit_offsets


def test_batches_are_scored_before_they_are_learned() -> None:
    # Prequential order: batch k is scored by the model that learned batches 0..k-1.
    r = rig(list(fraud_values(64)), size=16)
    r.run()
    assert [s.model_version for s in r.outputs.written] == [0, 1, 2, 3]
    assert r.runner.stats.learned == 64
    assert r.hooks.args("on_model_version")[-1] == ("fraud", 4)


# --- outputs that fail -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [OutputBackpressure("redis is busy"), ConnectionError("refused"), OSError("broken pipe")],
)
def test_output_failure_pauses_retries_and_resumes_without_losing_data(error: Exception) -> None:
    values: list[bytes | None] = list(fraud_values(48))
    r = rig(values, size=16, failures=3, error=error)
    stats = r.run()
    assert stats.consumed == 48
    assert r.outputs.raw_values == values  # every message written, once, in order
    assert merged(r.source.commits) == last_offsets(messages(values))
    kinds = list(events_in(r.log))
    first_failure = kinds.index("write failed")
    # Paused on the first failure, retried, resumed once the write went through, then committed.
    assert kinds[first_failure : first_failure + 2] == ["write failed", "pause"]
    assert kinds.count("pause") == kinds.count("resume") == 1
    assert kinds.count("write failed") == 3
    success = kinds.index("write")
    assert kinds[success : success + 3] == ["write", "resume", "commit"]
    assert "commit" not in kinds[:success]
    # While paused the loop keeps polling (to stay in its group) but gets nothing.
    assert "poll while paused" in kinds[first_failure:success]
    assert r.readiness == [False, True]


def test_stop_during_an_outage_still_finishes_the_batch() -> None:
    values: list[bytes | None] = list(fraud_values(10))
    r = rig(values, size=16, stop_when_drained=False, failures=2, stop_on_write_failure=True)
    stats = r.run(max_events=10)
    assert r.stop.is_set()
    assert stats.consumed == 10
    assert r.outputs.raw_values == values
    assert merged(r.source.commits) == last_offsets(messages(values))


def test_an_unexpected_write_error_is_not_retried_or_committed() -> None:
    r = rig(list(fraud_values(16)), size=16, failures=1, error=ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        r.run()
    assert r.source.commits == []
    assert "pause" not in list(events_in(r.log))


def test_a_failed_commit_does_not_stop_the_loop() -> None:
    # A rebalance may take the partitions before the commit; the new owner replays them.
    values: list[bytes | None] = list(fraud_values(32))
    r = rig(values, size=16)
    r.source.commit_errors.append(StreamlearnError("partitions were revoked"))
    stats = r.run()
    assert stats.batches == 2
    assert r.outputs.raw_values == values
    assert r.source.commits == [r.outputs.written[1].raw.commit_offsets]


def test_revoked_partitions_buffered_messages_are_dropped_not_written() -> None:
    # Their new owner reads them again from the last commit; writing them here would race it.
    values: list[bytes | None] = list(fraud_values(40))
    r = rig(values, size=16)
    r.source.per_poll = 10
    r.source.revocations[2] = [("transactions", 1)]
    stats = r.run()
    written = [(tp, o) for s in r.outputs.written for tp, o in zip(s.raw.partitions, s.raw.offsets)]
    assert {tp for tp, _ in written} == {0}
    assert [o for _, o in written] == list(range(100, 120))  # all of partition 0, in order
    assert all(("transactions", 1) not in commit for commit in r.source.commits)
    assert merged(r.source.commits) == {("transactions", 0): 120}
    assert stats.consumed == 25  # 10 before the rebalance (5 of them dropped), then 15


# --- what the hooks hear ---------------------------------------------------------------------


def test_invalid_messages_are_counted_by_reason() -> None:
    malformed: list[bytes | None] = [*MALFORMED_SAMPLES, None, b"x" * 70_000]
    valid = fraud_values(30)
    values: list[bytes | None] = []
    for i, v in enumerate(valid):
        values.append(v)
        if i % 4 == 0:
            values.append(malformed[(i // 4) % len(malformed)])
    r = rig(values, size=16)
    stats = r.run()
    by_reason: Counter[str] = Counter()
    for pipeline, reason, n in r.hooks.args("on_invalid"):
        assert pipeline == "fraud"
        by_reason[reason] += n
    # Eight malformed messages: the seven kinds, then the first (not JSON) again.
    assert by_reason == {
        "not_json": 2,
        "missing_field": 1,
        "wrong_type": 1,
        "not_object": 1,
        "not_finite": 1,
        "empty": 1,
        "oversized": 1,
    }
    assert stats.invalid == 8
    assert stats.predicted == 30
    assert stats.consumed == 38
    # Rejected messages are committed too: they went to the dead-letter output.
    assert merged(r.source.commits) == last_offsets(messages(values))


def test_one_latency_per_valid_event() -> None:
    values: list[bytes | None] = [*fraud_values(20), b"{bad", None]
    r = rig(values, size=8)
    r.run()
    latencies = [args[1] for args in r.hooks.args("on_predictions")]
    assert sum(len(batch) for batch in latencies) == 20
    # Message time → written, in seconds: the fake wall clock is 250 ms after every message.
    assert np.concatenate(latencies).tolist() == [0.25] * 20
    assert r.hooks.total("on_target_missed") == 20  # all over the 100 ms target


def test_no_target_missed_when_latency_is_within_the_target() -> None:
    r = rig(list(fraud_values(20)), size=8, wall_ms=MESSAGE_TS_MS + 20)
    r.run()
    assert r.hooks.args("on_target_missed") == []
    assert np.concatenate([a[1] for a in r.hooks.args("on_predictions")]).max() == 0.02


def test_drift_signals_the_batcher() -> None:
    pipeline = ClassificationTask(fraud_config(), drift=AlwaysDrift(), clock_ms=lambda: 0)
    values: list[bytes | None] = list(fraud_values(64))
    r = rig(values, size=16, pipeline=pipeline)
    r.run()
    assert len(r.hooks.args("on_drift")) == r.batcher.drift_signals
    assert r.batcher.drift_signals == r.runner.stats.batches >= 2
    # A drift closes the next batch early, with its own trigger.
    assert r.triggers()[0] == "size"
    assert "drift" in r.triggers()[1:]
    assert r.outputs.raw_values == values


def test_no_drift_without_labels() -> None:
    unlabelled = [
        orjson.dumps({k: v for k, v in e.items() if k != "is_fraud"})
        for e in task_events("fraud", seed=3, drift_at=None)(32)
    ]
    pipeline = ClassificationTask(fraud_config(), drift=AlwaysDrift(), clock_ms=lambda: 0)
    r = rig(list(unlabelled), size=16, pipeline=pipeline)
    stats = r.run()
    assert r.batcher.drift_signals == 0
    assert stats.learned == 0
    assert stats.predicted == 32
    assert r.hooks.args("on_learned") == []


def test_stage_timings_and_batch_size_are_reported() -> None:
    r = rig(list(fraud_values(32)), size=16)
    r.run()
    stages = r.hooks.args("on_stage")
    assert [stage for _, stage, _ in stages] == ["score", "write", "learn", "commit"] * 2
    assert all(seconds > 0 for _, _, seconds in stages)
    assert r.hooks.calls[0] == ("on_batch_size", ("fraud", 16))
    assert r.hooks.total("on_learned") == 32


def test_events_too_late_for_their_aggregates_are_scored_and_counted() -> None:
    config = PipelineConfig.model_validate(
        {
            "name": "fraud",
            "source": {"topic": "transactions"},
            "schema": {
                "target": "y",
                "features": {"amount": "float"},
                "aggregates": {"spend_1h": {"fn": "sum", "field": "amount", "window": "1h"}},
                "allowed_lateness_s": 60,
            },
            "model": {"estimator": "river.linear_model.LogisticRegression"},
        }
    )
    hour_ms = 3_600_000
    # Card c's newest event is at 2 h; one at 0 h (2 h behind, lateness 60 s) and one at
    # 1 h 59.5 min (30 s behind) come after it: only the first is too late.
    times = [hour_ms, 2 * hour_ms, 0, 2 * hour_ms - 30_000, 2 * hour_ms + 1]
    values: list[bytes | None] = [
        orjson.dumps({"event_id": f"e{i}", "entity_id": "c", "ts": t, "amount": 1.0, "y": 0})
        for i, t in enumerate(times)
    ]
    r = rig(values, size=1, pipeline=ClassificationTask(config, clock_ms=lambda: 0))
    stats = r.run()
    assert stats.predicted == 5
    assert r.hooks.args("on_too_late") == [("fraud", 1)]


def test_lag_is_reported_from_the_source() -> None:
    r = rig(list(fraud_values(40)), size=16, stop_when_drained=False)
    r.run(max_events=40)
    lags = [args[1] for args in r.hooks.args("on_lag")]
    assert lags
    assert lags[-1] == {}  # all read
    assert all(isinstance(p, int) and n >= 0 for lag in lags for p, n in lag.items())


def test_final_model_scores_are_reported_on_return() -> None:
    r = rig(list(fraud_values(64)), size=16)
    r.run()
    name, scores = r.hooks.calls[-1][1]
    assert r.hooks.calls[-1][0] == "on_model_score"
    assert name == "fraud"
    assert scores == r.runner.pipeline.evaluator.scores()


def test_byte_bound_closes_the_batch_before_the_count_does() -> None:
    values = fraud_values(10)
    per_event = max(len(v) for v in values)
    r = rig(values, size=100, max_buffered_bytes=2 * per_event + 1)
    r.source.per_poll = 1
    r.run(max_events=10)
    # Never more than the bound buffered: batches close at two or three events, not 100.
    assert sum(r.batch_sizes()) == 10
    assert max(r.batch_sizes()) <= 3


def test_a_refused_write_is_not_retried_and_nothing_is_committed() -> None:
    r = rig(list(fraud_values(16)), size=16, failures=1, error=OutputRejected("WRONGTYPE"))
    with pytest.raises(OutputRejected):
        r.run()
    assert list(events_in(r.log)).count("write failed") == 1
    assert r.source.commits == []


def test_an_outage_outlasting_the_shutdown_grace_gives_up_without_committing() -> None:
    r = rig(list(fraud_values(16)), size=16, failures=10**9, stop_on_write_failure=True)
    r.runner.delivery.shutdown_grace_s = 0.01
    with pytest.raises(ShutdownTimeout):
        r.run()
    assert r.source.commits == []


def test_assigned_partitions_resume_from_the_restored_checkpoint_then_the_group() -> None:
    # Restored from a checkpoint: read from its offset. Never learned: from the group's
    # position, which then counts as where this model's learning of it starts.
    r = rig(list(fraud_values(4)), size=16)
    r.runner.ledger.restore({("transactions", 0): 500}, learned=0)
    seeks: list[dict[tuple[str, int], int]] = []
    r.source.seek = seeks.append  # type: ignore[method-assign]
    r.source.positions = lambda parts: dict.fromkeys(parts, 42)  # type: ignore[method-assign]
    r.runner.assigned([("transactions", 0), ("transactions", 7)])
    assert seeks == [{("transactions", 0): 500}]
    assert r.readiness == [True]
    r.run(max_events=4)
    assert r.runner.learned_offsets[("transactions", 7)] == 42
    # Assigned again after a rebalance: from what the model learned, never the consumer's
    # kept position or the group's commit.
    r.runner.revoke([("transactions", 0), ("transactions", 7)])
    r.runner.assigned([("transactions", 0), ("transactions", 7)])
    learned = r.runner.learned_offsets[("transactions", 0)]
    assert seeks[-1] == {("transactions", 0): learned, ("transactions", 7): 42}


def test_a_rebalance_while_outputs_fail_loses_nothing_and_learns_nothing_twice() -> None:
    # Partition 1 is taken away and given back while the first batch waits for Redis: that
    # batch's partition-1 events are not learned then, but read again from what was learned.
    values: list[bytes | None] = list(fraud_values(40))
    r = rig(values, size=16, failures=1)
    r.source.honour_seeks = True
    write = r.outputs.write

    def rebalancing_write(scored: ScoredBatch) -> None:
        if r.outputs.failures:
            r.runner.revoke([("transactions", 1)])
            r.runner.assigned([("transactions", 1)])
        write(scored)

    r.outputs.write = rebalancing_write  # type: ignore[method-assign]
    stats = r.run()
    everything = last_offsets(messages(values))
    assert stats.learned == r.runner.ledger.learned_count == 40  # each event exactly once
    assert r.runner.learned_offsets == everything
    assert merged(r.source.commits) == everything
    written = [(p, o) for s in r.outputs.written for p, o in zip(s.raw.partitions, s.raw.offsets)]
    assert set(written) == {(m.partition, m.offset) for m in messages(values)}
    assert len(written) == 48  # the 8 partition-1 events of the first batch were scored twice


def test_revoked_partitions_keep_their_learned_offsets() -> None:
    # Where a partition resumes if it comes back is what the model learned, so it stays known.
    r = rig(list(fraud_values(4)), size=16)
    r.runner.ledger.restore({("transactions", 0): 5, ("transactions", 1): 6}, learned=11)
    r.runner.revoke([("transactions", 0)])
    assert r.runner.learned_offsets == {("transactions", 0): 5, ("transactions", 1): 6}
    assert r.runner.ledger.owned == {("transactions", 1)}


class BlockingRequests:
    """Model requests whose store read is where the pipeline blocks (Redis frozen)."""

    def __init__(self, hooks: RecordingHooks) -> None:
        self.hooks = hooks
        self.seen_while_reading: list[tuple[str, tuple[Any, ...]]] = []

    def due(self) -> bool:
        return True

    def poll(self) -> None:
        self.seen_while_reading.append(self.hooks.calls[-1])


def test_reading_model_requests_between_batches_is_reported_busy_then_done() -> None:
    r = rig(fraud_values(40), size=16)
    requests = BlockingRequests(r.hooks)
    r.runner.requests = requests  # type: ignore[assignment]
    r.run()
    assert requests.seen_while_reading, "the loop never read model requests"
    busy = ("on_busy", ("fraud", "reading model requests from Redis"))
    assert set(requests.seen_while_reading) == {busy}
    reported = r.hooks.args("on_busy")
    assert reported[-1] == ("fraud", None)
    assert all(a[1] is None for a in reported[1::2]), "every busy report is followed by done"


def test_batches_of_one_share_a_poll_and_each_is_written_learned_and_committed() -> None:
    r = rig(fraud_values(200), size=1)
    stats = r.run()
    assert stats.predicted == 200 and stats.batches == 200
    assert r.batch_sizes() == [1] * 200
    assert r.source._polls <= 200 / 64 + 3, "one poll per batch: the prefetch did not happen"
    assert merged(r.source.commits) == last_offsets(r.source.all)


# --- predictions confirmed after learning ------------------------------------------------------


class SendingOutputs(FakeOutputs):
    """Outputs that send a batch's predictions in ``begin`` and confirm them later (as Redis's)."""

    def __init__(self, log: list[tuple[str, Any]], confirm_failures: int = 0) -> None:
        super().__init__(log)
        self.confirm_failures = confirm_failures

    def begin(self, scored: ScoredBatch) -> Any:
        self.log.append(("sent", len(scored.raw)))

        def confirm() -> None:
            if self.confirm_failures:
                self.confirm_failures -= 1
                self.log.append(("confirm failed", len(scored.raw)))
                raise OutputBackpressure("redis went away mid-write")
            self.log.append(("write", len(scored.raw)))
            self.written.append(scored)

        return confirm


class LoggedLearning(ClassificationTask):
    """The fraud task, logging each learn (and raising once ``fail`` is set)."""

    log: list[tuple[str, Any]]
    fail = False

    def learn(self, scored: ScoredBatch, keep: Any = None) -> Any:
        self.log.append(("learn", len(scored.raw)))
        if self.fail:
            raise RuntimeError("a bug in learning")
        return super().learn(scored, keep)


def sending_rig(values: list[bytes | None], confirm_failures: int = 0) -> Rig:
    task = LoggedLearning(fraud_config(), clock_ms=lambda: MESSAGE_TS_MS + 250)
    r = rig(values, size=16, pipeline=task)
    r.outputs = SendingOutputs(r.log, confirm_failures)
    r.runner.outputs = r.outputs
    task.log = r.log
    return r


def test_predictions_are_learned_while_redis_writes_them_and_confirmed_before_the_commit() -> None:
    values: list[bytes | None] = list(fraud_values(48))
    r = sending_rig(values)
    stats = r.run()
    kinds = [k for k in events_in(r.log) if k in ("sent", "learn", "write", "commit")]
    assert kinds == ["sent", "learn", "write", "commit"] * 3
    assert stats.learned == 48
    assert r.outputs.raw_values == values
    assert merged(r.source.commits) == last_offsets(messages(values))


def test_a_failed_confirmation_is_written_again_and_nothing_is_learned_twice() -> None:
    values: list[bytes | None] = list(fraud_values(32))
    r = sending_rig(values, confirm_failures=1)
    stats = r.run()
    kinds = list(events_in(r.log))
    failed = kinds.index("confirm failed")
    # The batch was learned once; its outputs were written again (resumed) before its commit.
    assert kinds[failed - 1] == "learn"
    assert kinds[failed + 1 : failed + 2] == ["pause"]
    rewritten = kinds.index("write", failed)
    assert "commit" not in kinds[failed:rewritten]
    assert kinds.count("learn") == 2 and stats.learned == r.runner.ledger.learned_count == 32
    assert r.outputs.raw_values == values
    assert merged(r.source.commits) == last_offsets(messages(values))


def test_a_learn_that_raises_still_collects_the_reply_and_commits_nothing() -> None:
    r = sending_rig(list(fraud_values(16)))
    assert isinstance(r.runner.pipeline, LoggedLearning)
    r.runner.pipeline.fail = True
    with pytest.raises(RuntimeError, match="a bug in learning"):
        r.run()
    assert [k for k in events_in(r.log) if k in ("sent", "learn", "write")] == [
        "sent",
        "learn",
        "write",
    ]
    assert r.source.commits == []


def test_no_rebalance_can_run_while_a_learned_batch_waits_for_its_outputs() -> None:
    # kafka-python runs rebalance callbacks inside poll, and the paused source is polled during
    # an outage to stay in the group. A revoke there would checkpoint a model that learned the
    # batch while the ledger does not count it: retrying the confirmation must not poll.
    values: list[bytes | None] = list(fraud_values(40))
    r = sending_rig(values, confirm_failures=2)
    r.source.honour_seeks = True
    poll = r.source.poll

    def rebalancing_poll(max_records: int, timeout_s: float, into: RawBatch) -> int:
        if r.source.paused:
            r.runner.revoke([("transactions", 1)])
            r.runner.assigned([("transactions", 1)])
        return poll(max_records, timeout_s, into)

    r.source.poll = rebalancing_poll  # type: ignore[method-assign]
    stats = r.run()
    kinds = list(events_in(r.log))
    assert kinds.count("confirm failed") == 2
    assert "poll while paused" not in kinds
    everything = last_offsets(messages(values))
    assert stats.learned == r.runner.ledger.learned_count == 40  # each event exactly once
    assert r.runner.learned_offsets == everything
    assert merged(r.source.commits) == everything


def test_batches_of_one_retry_their_write_without_polling() -> None:
    # Learned before the write (one pass per poll): the same rule as a confirmation.
    values: list[bytes | None] = list(fraud_values(20))
    r = rig(values, size=1, failures=2)
    stats = r.run()
    kinds = list(events_in(r.log))
    assert kinds.count("write failed") == 2 and "poll while paused" not in kinds
    assert stats.predicted == 20 and r.runner.ledger.learned_count == 20
    assert merged(r.source.commits) == last_offsets(messages(values))
