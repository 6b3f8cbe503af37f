"""Early labels expire at the event time every events partition has reached, not the newest."""

import orjson

from streamlearn.batch import RawBatch
from streamlearn.config import PipelineConfig
from streamlearn.labels import MemoryLabelStore
from streamlearn.tasks.classification import ClassificationTask

HOUR_MS = 3_600_000


def delayed_task() -> ClassificationTask:
    config = PipelineConfig.model_validate(
        {
            "name": "churn",
            "source": {"topic": "activity"},
            "schema": {"features": {"amount": "float"}},
            "model": {"estimator": "river.linear_model.LogisticRegression"},
            "drift": {"detector": "none"},
            "labels": {"topic": "labels", "id": "event_id", "target": "churned", "horizon_s": 3600},
        }
    )
    return ClassificationTask(config)


def event(event_id: str, ts: int) -> bytes:
    return orjson.dumps({"event_id": event_id, "entity_id": "c", "ts": ts, "amount": 1.0})


def test_a_lagging_partition_keeps_its_early_labels() -> None:
    task, store = delayed_task(), MemoryLabelStore(horizon_s=3600)
    # Partition 0 races ten hours ahead; partition 1 is still at hour 0, and the label of its
    # next event has already come.
    raw = RawBatch()
    raw.append("activity", 0, 0, None, event("fast-1", 10 * HOUR_MS), 10 * HOUR_MS, 0.0)
    raw.append("activity", 1, 0, None, event("slow-1", 0), 0, 0.0)
    raw.append("labels", 0, 0, None, orjson.dumps({"event_id": "slow-2", "churned": 1}), 0, 0.0)
    first = task.score(raw)
    assert first.watermark_ms == 0  # partition 1 has got no further than hour 0
    exchange = store.exchange(first.pending, first.arrived, first.watermark_ms)
    assert not exchange.unmatched
    task.learn(first)

    late = RawBatch()
    late.append("activity", 1, 1, None, event("slow-2", HOUR_MS // 2), HOUR_MS // 2, 0.0)
    second = task.score(late)
    joined = store.exchange(second.pending, second.arrived, second.watermark_ms)
    assert [j.event_id for j in joined.joins] == ["slow-2"]
    assert second.watermark_ms == HOUR_MS // 2


def test_the_watermark_never_goes_back_and_survives_a_checkpoint() -> None:
    task = delayed_task()
    raw = RawBatch()
    raw.append("activity", 0, 0, None, event("a", 5 * HOUR_MS), 5 * HOUR_MS, 0.0)
    assert task.score(raw).watermark_ms == 5 * HOUR_MS
    restored = delayed_task()
    restored.load_snapshot(task.snapshot())
    older = RawBatch()
    older.append("activity", 0, 1, None, event("b", HOUR_MS), HOUR_MS, 0.0)
    assert restored.score(older).watermark_ms == 5 * HOUR_MS


def test_an_assigned_partition_not_read_yet_holds_the_watermark_back() -> None:
    # A backlog read partition by partition: partition 0 gives events two hours on before
    # partition 1 gives anything, and the label of partition 1's first event is already here.
    task, store = delayed_task(), MemoryLabelStore(horizon_s=3600)
    task.assigned([("activity", 0), ("activity", 1), ("labels", 0)])
    raw = RawBatch()
    raw.append("labels", 0, 0, None, orjson.dumps({"event_id": "a", "churned": 1}), 1_000, 0.0)
    raw.append("activity", 0, 0, None, event("z", 2 * HOUR_MS), 2 * HOUR_MS, 0.0)
    first = task.score(raw)
    assert first.watermark_ms == 0
    assert store.exchange(first.pending, first.arrived, first.watermark_ms).expired == []

    later = RawBatch()
    later.append("activity", 1, 0, None, event("a", 0), 0, 0.0)
    second = task.score(later)
    joined = store.exchange(second.pending, second.arrived, second.watermark_ms)
    assert [(j.event_id, j.target) for j in joined.joins] == [("a", 1)]
    assert second.watermark_ms == 0  # partition 1 is at hour 0 now


def test_only_the_partitions_read_here_count_after_a_rebalance() -> None:
    task = delayed_task()
    task.assigned([("activity", 0), ("activity", 1)])
    raw = RawBatch()
    raw.append("activity", 0, 0, None, event("a", 5 * HOUR_MS), 5 * HOUR_MS, 0.0)
    raw.append("activity", 1, 0, None, event("b", HOUR_MS), HOUR_MS, 0.0)
    assert task.score(raw).watermark_ms == HOUR_MS
    task.assigned([("activity", 0)])  # partition 1 went to another consumer
    more = RawBatch()
    more.append("activity", 0, 1, None, event("c", 6 * HOUR_MS), 6 * HOUR_MS, 0.0)
    assert task.score(more).watermark_ms == 6 * HOUR_MS
