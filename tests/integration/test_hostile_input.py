"""Hostile messages through the real broker and Redis: each is dead-lettered, none stops the run.

The messages come from the strategies of ``tests/unit/test_hostile_input.py``, drawn once with a
fixed seed, plus one payload of each megabyte kind; valid fraud events are interleaved with them.
"""

from __future__ import annotations

import random
import uuid

import orjson
import redis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from connectors.dead_letters import MAX_DEAD_LETTER_BYTES
from connectors.kafka import KafkaSink, committed_offsets, ensure_topics, read_all
from connectors.redis_store import PredictionStore
from streamlearn.app import App
from streamlearn.generators.fraud import FIELD_TYPES, FraudGenerator
from tests.integration.settings import fraud_settings
from tests.unit.test_hostile_input import (
    EVENTS,
    HOSTILE_KINDS,
    LIMIT,
    MEGABYTE_KINDS,
    Message,
    megabyte,
)

HOSTILE = 300
VALID = 600
# The megabyte branch is left out of the draw and sent once per kind: a handful of big payloads.
SMALL_HOSTILE = st.one_of(HOSTILE_KINDS[:-1])


def interleave(bad: list[Message], good: list[dict]) -> list[Message]:
    """The valid events and the hostile messages, shuffled together (reproducibly)."""
    messages = [*bad, *(Message("valid", orjson.dumps(e), e["event_id"]) for e in good)]
    random.Random(7).shuffle(messages)
    return messages


def produce(broker: str, topic: str, messages: list[Message]) -> None:
    # One partition: message k is at offset k, which the dead letters' `source` names.
    ensure_topics(broker, [topic], partitions=1)
    with KafkaSink(broker) as sink:
        for m in messages:
            key = b"bad" if m.event_id is None else b"good"
            sink.send(topic, m.value, key=key)  # type: ignore[arg-type]  # None: a tombstone
        sink.flush()


def draw(strategy: st.SearchStrategy[Message], n: int) -> list[Message]:
    """``n`` examples of ``strategy``, the same ones on every run."""
    drawn: list[Message] = []

    @seed(20_260_601)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(message: Message) -> None:
        drawn.append(message)

    collect()
    return drawn


def test_hostile_messages_are_dead_lettered_and_valid_events_scored(
    broker: str, redis_url: str, topic: str
) -> None:
    drawn = draw(SMALL_HOSTILE, HOSTILE)
    megabytes = [Message(f"a megabyte: {k}", megabyte(k, EVENTS[0])) for k in MEGABYTE_KINDS]
    events = list(FraudGenerator(seed=5).events(VALID))
    messages = interleave([*drawn, *megabytes], events)
    produce(broker, topic, messages)

    prefix = f"t{uuid.uuid4().hex[:6]}"
    # A size limit above the megabyte payloads, so they reach the parser.
    schema = {"target": "is_fraud", "features": FIELD_TYPES, "max_event_bytes": LIMIT}
    config = fraud_settings(broker, redis_url, topic, prefix, schema=schema)
    with App(config) as app:
        stats = app.run(max_events=len(messages))["fraud"]
    bad = {k: m for k, m in enumerate(messages) if m.event_id is None}
    assert (stats.consumed, stats.predicted, stats.invalid) == (len(messages), VALID, len(bad))

    # Every hostile message is dead-lettered, with a reason, and its bytes (cut past 512 KiB).
    letters = {}
    for record in read_all(broker, f"{topic}.dlq", timeout_s=30):
        headers = dict(record.headers)
        source = headers["source"].decode()
        assert source.startswith(f"{topic}/0/")
        letters[int(source.rsplit("/", 1)[1])] = (bytes(record.value or b""), headers)
    assert sorted(letters) == sorted(bad)
    for k, (value, headers) in letters.items():
        assert headers["reason"] and headers["detail"], bad[k]
        assert len(headers["detail"]) <= 300, bad[k]
        assert headers["reason"] != b"undecodable", (bad[k], headers)
        original = bad[k].value or b""
        assert value == original[:MAX_DEAD_LETTER_BYTES], bad[k]

    # Every valid event was scored: its entity's hash holds its latest event (by event time,
    # which the generator's order follows; the shuffle does not).
    store = PredictionStore(redis.Redis.from_url(redis_url), prefix, "fraud", ttl_s=3600)
    latest = {e["entity_id"]: e["event_id"] for e in events}
    for entity, event_id in latest.items():
        stored = store.read(entity)
        assert stored is not None and stored["event_id"] == event_id, entity
    assert committed_offsets(broker, f"g-{topic}") == {(topic, 0): len(messages)}
