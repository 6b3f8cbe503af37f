"""Learning exactly once across a crash: restore the checkpoint, read on from its offsets."""

from __future__ import annotations

import threading
import uuid

import orjson
import redis

from connectors.kafka import (
    KafkaSink,
    KafkaSource,
    committed_offsets,
    end_offsets,
    ensure_topics,
)
from streamlearn.app import App
from streamlearn.config import AppConfig
from streamlearn.generators.fraud import FraudGenerator
from tests.integration.settings import fraud_settings

EVENTS = 6_000


def settings(broker: str, redis_url: str, topic: str, prefix: str, interval_s: float) -> AppConfig:
    return fraud_settings(
        broker,
        redis_url,
        topic,
        prefix,
        batching={"min_size": 500, "max_size": 500},
        checkpoint={"interval_s": interval_s},
    )


def commit_to_end(broker: str, topic: str) -> None:
    """What a crash between commit and checkpoint leaves: commits ahead of the model."""
    source = KafkaSource(
        broker, [topic], f"g-{topic}", session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    from streamlearn.batch import RawBatch

    while not source.assignment_ready():
        source.poll(1, 0.2, RawBatch())
    source.commit({(topic, p): end for p, end in end_offsets(broker, topic).items()})
    source.close()


def test_restart_learns_each_event_exactly_once(broker: str, redis_url: str, topic: str) -> None:
    ensure_topics(broker, [topic], partitions=2)
    with KafkaSink(broker) as sink:
        for event in FraudGenerator(seed=2).events(EVENTS):
            sink.send(topic, orjson.dumps(event), key=event["entity_id"].encode())
        sink.flush()
    prefix = f"t{uuid.uuid4().hex[:6]}"

    # First run: checkpoint on shutdown only, after half the stream.
    with App(settings(broker, redis_url, topic, prefix, interval_s=3600)) as first:
        first_stats = first.run(max_events=EVENTS // 2)["fraud"]
        first_version = first.runners[0].pipeline.model.version
    stored = redis.Redis.from_url(redis_url).hgetall(f"{prefix}:fraud:model:checkpoint")
    assert int(stored[b"version"]) == first_version > 0
    assert sum(o for _, _, o in orjson.loads(stored[b"offsets"])) == EVENTS // 2

    # The crash: the group's commits move to the end, past what the model learned.
    commit_to_end(broker, topic)

    with App(settings(broker, redis_url, topic, prefix, interval_s=3600)) as second:
        # Without the checkpoint's offsets nothing would be left to read: stop, don't hang.
        guard = threading.Timer(60, second.stop.set)
        guard.start()
        second_stats = second.run(max_events=EVENTS - EVENTS // 2)["fraud"]
        guard.cancel()
        pipeline = second.runners[0].pipeline
    # The second run started from the checkpoint's model and offsets, not from the commits.
    assert first_stats.learned + second_stats.learned == EVENTS
    assert pipeline.model.version > first_version
    assert second_stats.consumed == EVENTS - EVENTS // 2
    # And it read exactly the second half: every partition now learned and committed to its end.
    ends = end_offsets(broker, topic)
    stored = redis.Redis.from_url(redis_url).hgetall(f"{prefix}:fraud:model:checkpoint")
    learned = {(t, p): o for t, p, o in orjson.loads(stored[b"offsets"])}
    assert learned == {(topic, p): end for p, end in ends.items()}
    committed = committed_offsets(broker, f"g-{topic}")
    assert {p: committed[(topic, p)] for p in ends} == ends
