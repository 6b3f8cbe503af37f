"""A backlog of events and delayed labels keeps a horizon of pending events in Redis, not all.

On the real broker and Redis: parts of 3 000 events a minute apart in event time (50 hours),
days apart, each event labelled 30 minutes later, a horizon of one hour. Read as a backlog, no
entry's TTL (wall time) fires; the store forgets entries by event time behind the oldest kept
checkpoint. In process, and as a child process SIGKILLed while it forgets.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import redis

from connectors.kafka import KafkaSink, ensure_topics
from streamlearn.app import App
from streamlearn.generators.fraud import FIELD_TYPES, FraudGenerator
from tests.integration.processes import (
    PIPELINE,
    Processor,
    dead_letters,
    drain,
    newest_checkpoint,
    processor_config,
    write_config,
)
from tests.integration.settings import fraud_settings

EVENTS = 3_000  # per part: 50 hours of event time
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


def produce(broker: str, topic: str, day: int) -> list[str]:
    """Events a minute apart from ``day`` on, each labelled 30 minutes later; their ids.

    Record times rise within each partition, as producers stamp them (the watermarks, and so
    what may be forgotten, rest on it).
    """
    events = list(FraudGenerator(seed=5 + day).events(EVENTS))
    start = next(FraudGenerator(seed=5).events(1))["ts"] + day * DAY_MS
    with KafkaSink(broker) as sink:
        for i, event in enumerate(events):
            ts = start + i * MINUTE_MS
            body = {k: v for k, v in event.items() if k != "is_fraud"} | {"ts": ts}
            sink.send(topic, orjson.dumps(body), event["entity_id"].encode(), None, ts)
        for i, event in enumerate(events):
            label = {"event_id": event["event_id"], "is_fraud": event["is_fraud"]}
            ts = start + (i + 30) * MINUTE_MS
            sink.send(f"{topic}-labels", orjson.dumps(label), event["entity_id"].encode(), None, ts)
        sink.flush()
    return [e["event_id"] for e in events]


def test_a_backlog_keeps_a_horizon_of_pending_events_not_the_stream(
    broker: str, redis_url: str
) -> None:
    topic = f"test-pending-memory-{uuid.uuid4().hex[:8]}"
    labels_topic = f"{topic}-labels"
    ensure_topics(broker, [topic, labels_topic], partitions=1)
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config = fraud_settings(
        broker,
        redis_url,
        topic,
        prefix,
        schema={"features": FIELD_TYPES},
        batching={"min_size": 100, "max_size": 100},
        checkpoint={"interval_s": 0.05, "keep": 2, "lock_ttl_s": 2},
        labels={"topic": labels_topic, "id": "event_id", "target": "is_fraud", "horizon_s": 3600},
    )
    client = redis.Redis.from_url(redis_url)
    base = f"{prefix}:fraud:pending:"
    learned = 0
    days = [produce(broker, topic, 0), produce(broker, topic, 3)]
    with App(config) as app:  # both days are a backlog: an hour of TTL never passes here
        learned += app.run(max_events=4 * EVENTS)["fraud"].learned
    pending = {k.decode()[len(base) :] for k in client.scan_iter(f"{base}*", count=1000)}
    assert learned == 2 * EVENTS  # every label joined and learned once
    # The first part is forgotten: its events' deadline (an hour of event time after each) lies
    # before what every kept checkpoint has read of both topics. Of the second, what is left
    # is its end: the events the kept checkpoints have not read past by an hour.
    assert not pending & set(days[0]), len(pending & set(days[0]))
    assert 60 <= len(pending) < EVENTS


def test_sigkills_while_forgetting_lose_no_label_and_learn_none_twice(
    tmp_path: Path, broker: str, redis_url: str
) -> None:
    # The same backlog in three parts, read by ``streamlearn run`` as a child process that is
    # SIGKILLed twice while it forgets (checkpoints every 50 ms, 2 kept); a restart goes back
    # to the newest checkpoint and reads again what the kill cut off.
    topic = f"test-pending-kills-{uuid.uuid4().hex[:8]}"
    labels_topic = f"{topic}-labels"
    ensure_topics(broker, [topic, labels_topic], partitions=1)
    parts = [produce(broker, topic, day) for day in (0, 3, 6)]
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config = processor_config(broker, redis_url, topic, prefix)
    pipeline = config["pipelines"][0]
    del pipeline["schema"]["target"]
    pipeline["labels"] = {
        "topic": labels_topic,
        "id": "event_id",
        "target": "is_fraud",
        "horizon_s": 3600,
    }
    pipeline["batching"] = {"min_size": 100, "max_size": 100}
    pipeline["checkpoint"] = {"interval_s": 0.05, "keep": 2, "lock_ttl_s": 3.0}
    path, _ = write_config(tmp_path, config)
    processor = Processor(path, tmp_path)
    with processor.explained():
        for kill_after in (2_500, 3_000):  # predictions of that run: a part and more in
            processor.start()
            deadline = time.monotonic() + 60
            while processor.predictions() < kill_after and time.monotonic() < deadline:
                time.sleep(0.05)
            processor.kill()
        processor.start()
        drained = drain(processor, broker, topic, f"group-{topic}", 60, also=(labels_topic,))
        assert processor.terminate() == 0
        assert drained.seconds is not None, "the last run did not read both topics to the end"
        learned = newest_checkpoint(path).get("learned")
        reasons = [letter.reason for letter in dead_letters(broker, f"{topic}.dlq")]
        client = redis.Redis.from_url(redis_url)
        base = f"{prefix}:{PIPELINE}:pending:"
        pending = {k.decode()[len(base) :] for k in client.scan_iter(f"{base}*", count=1000)}
    assert processor.kills == 2
    assert learned == 3 * EVENTS, f"{learned} labels learned of {3 * EVENTS}; dead: {reasons}"
    assert reasons == []
    assert not pending & set(parts[0])  # forgotten, across the kills
