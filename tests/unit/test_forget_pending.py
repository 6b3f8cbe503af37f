"""Pending events are forgotten by event time, behind every kept checkpoint (issue 7's memory)."""

from __future__ import annotations

import pickle
from collections import deque

import numpy as np
import orjson

from streamlearn.batch import RawBatch
from streamlearn.labels import ArrivedLabels, MemoryLabelStore, PendingEvents
from tests.unit.test_watermark import delayed_task  # labels on their own topic, horizon 1 h

MINUTE_MS = 60_000
HORIZON_S = 3600


def event(event_id: str, ts: int) -> bytes:
    return orjson.dumps({"event_id": event_id, "entity_id": "c", "ts": ts, "amount": ts % 7})


def label(event_id: str, churned: int) -> bytes:
    return orjson.dumps({"event_id": event_id, "churned": churned})


def arrived(event_id: str, ts: int) -> ArrivedLabels:
    return ArrivedLabels([event_id], [1], [ts], [f"labels/0/{ts}"], [0], [label(event_id, 1)])


def batch(*messages: tuple[str, int, int, bytes]) -> RawBatch:
    raw = RawBatch()
    for topic, offset, ts, value in messages:
        raw.append(topic, 0, offset, None, value, ts, 0.0)
    return raw


def test_the_bound_is_the_lesser_watermark_of_the_oldest_kept_checkpoint() -> None:
    task = delayed_task()
    task.assigned([("activity", 0), ("labels", 0)])
    bounds = []
    for i in range(4):
        t = (i + 1) * 100 * MINUTE_MS
        scored = task.score(
            batch(
                ("activity", i, t, event(f"e{i}", t)),
                ("labels", i, t - 30 * MINUTE_MS, label("x", 1)),
            )
        )
        bounds.append(scored.forget_before_ms)
        task.learn(scored)
        task.snapshot()
        task.checkpointed(kept=2)
    # Nothing until two checkpoints were saved here; then the older one's labels watermark.
    assert bounds[:2] == [None, None]
    assert bounds[2:] == [100 * MINUTE_MS - 30 * MINUTE_MS, 200 * MINUTE_MS - 30 * MINUTE_MS]


def test_nothing_is_forgotten_while_a_labels_partition_was_not_read() -> None:
    task = delayed_task()
    task.assigned([("activity", 0), ("labels", 0), ("labels", 1)])
    for i in range(3):
        t = (i + 1) * MINUTE_MS
        scored = task.score(
            batch(("activity", i, t, event(f"e{i}", t)), ("labels", i, t, label("x", 1)))
        )
        task.snapshot()
        task.checkpointed(kept=1)
        assert scored.forget_before_ms is None


def run_backlog(crash_at: int | None = None) -> tuple[int, int, list[str]]:
    """Read a backlog of both topics as one process would; return labels learned, the most
    pending entries the store held, and the reasons of anything dead-lettered.

    ``crash_at``: after that many batches the process dies and a new one starts from the
    oldest kept checkpoint (the furthest back a crash or a rollback can go).
    """
    n, chunk, kept = 3000, 100, 3
    events = [(i * MINUTE_MS, event(f"e{i}", i * MINUTE_MS)) for i in range(n)]
    rng = np.random.default_rng(1)
    labels = [((i + 30) * MINUTE_MS, label(f"e{i}", int(rng.integers(2)))) for i in range(n)]
    store = MemoryLabelStore(HORIZON_S)
    task = delayed_task()
    task.assigned([("activity", 0), ("labels", 0)])
    checkpoints: deque[tuple[bytes, int, int, int]] = deque(maxlen=kept)
    eo = lo = learned = batches = 0
    most, dead = 0, []
    while eo < n or lo < n:
        if crash_at is not None and batches == crash_at:
            state, eo, lo, learned = checkpoints[0]
            task = delayed_task()
            task.assigned([("activity", 0), ("labels", 0)])
            task.load_snapshot(pickle.loads(state))
            crash_at = None
        messages = [("activity", o, *events[o]) for o in range(eo, min(eo + chunk, n))]
        # The labels partition is read a chunk behind: events wait for their labels.
        if eo >= chunk or eo >= n:
            messages += [("labels", o, *labels[o]) for o in range(lo, min(lo + chunk, n))]
            lo = min(lo + chunk, n)
        eo = min(eo + chunk, n)
        scored = task.score(batch(*messages))
        assert scored.pending is not None and scored.arrived is not None
        scored.exchange = store.exchange(
            scored.pending, scored.arrived, scored.watermark_ms, floor_ms=scored.floor_ms
        )
        dead += [x.reason for x in scored.exchange.expired] + [
            r.reason for r in scored.exchange.unmatched
        ]
        store.dead_lettered(scored.exchange.expired)
        if scored.forget_before_ms is not None:
            store.forget(scored.forget_before_ms)
        learned += task.learn(scored).learned
        most = max(most, len(store.entries))
        batches += 1
        if batches % 2 == 0:
            checkpoints.append((pickle.dumps(task.snapshot()), eo, lo, learned))
            task.checkpointed(kept)
    return learned, most, dead


def test_a_backlog_holds_a_horizon_of_pending_events_not_the_stream() -> None:
    learned, most, dead = run_backlog()
    assert learned == 3000 and dead == []
    # One hour of events (60) plus what three checkpoints of two batches span (600 minutes),
    # not the 3 000 of the stream.
    assert most <= 60 + 700


def test_a_crash_back_to_the_oldest_kept_checkpoint_still_learns_every_label_once() -> None:
    learned, most, dead = run_backlog(crash_at=17)
    assert learned == 3000 and dead == []
    assert most <= 60 + 700


def test_a_checkpoint_saved_while_a_batch_is_written_claims_only_what_was_learned() -> None:
    # A rebalance during a retried write saves a checkpoint: its offsets stop before the batch,
    # and so must the event time it claims to have read past.
    task = delayed_task()
    task.assigned([("activity", 0), ("labels", 0)])
    first = task.score(
        batch(
            ("activity", 0, MINUTE_MS, event("a", MINUTE_MS)),
            ("labels", 0, MINUTE_MS, label("a", 1)),
        )
    )
    task.learn(first)
    t = 500 * MINUTE_MS
    second = task.score(batch(("activity", 1, t, event("b", t)), ("labels", 1, t, label("b", 1))))
    assert second.floor_ms == MINUTE_MS and second.mark_ms == t
    task.snapshot()  # saved before ``second`` is learned
    task.checkpointed(kept=1)
    assert task.marks.before_ms == MINUTE_MS
    # Its partitions moved meanwhile: learned in part, the mark stays where it was.
    task.learn(second, keep=np.array([True, False]))
    task.snapshot()
    task.checkpointed(kept=1)
    assert task.marks.before_ms == MINUTE_MS
    task.learn(second)
    task.snapshot()
    task.checkpointed(kept=1)
    assert task.marks.before_ms == t


def test_an_event_far_behind_the_watermark_is_kept_until_checkpoints_pass_its_batch() -> None:
    # Its label came first; the event itself comes hours late in event time. It joins as the
    # joiner, and must stay until every kept checkpoint has read a horizon past the batch
    # that joined it, or a replay of it after a crash would find nothing to join.
    store = MemoryLabelStore(HORIZON_S)
    store.exchange(PendingEvents(), arrived("x", 50 * MINUTE_MS), 0)
    late = PendingEvents(["x"], ["activity/0/9"], [MINUTE_MS], [b"x"])
    floor = 100 * MINUTE_MS  # learned before this batch: past the event's own deadline
    joined = store.exchange(late, ArrivedLabels(), floor, floor_ms=floor)
    assert [j.joiner for j in joined.joins] == ["activity/0/9"]
    assert store.forget(floor + HORIZON_S * 1000) == 0  # a checkpoint just past the floor
    again = store.exchange(late, ArrivedLabels(), floor, floor_ms=floor)  # the crash's replay
    assert [j.joiner for j in again.joins] == ["activity/0/9"]
    assert store.forget(floor + HORIZON_S * 1000 + 1) == 1
