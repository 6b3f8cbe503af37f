"""Kafka administration: wait for the broker, create topics, read offsets and whole topics.

Used at start-up, by the demo and by tests. Works around Tansu's ListOffsets, which reports the
start of the last record batch as the end of a partition. Each function takes ``security``, the
kafka-python keywords of :meth:`streamlearn.config.KafkaConfig.client_options` (SASL, TLS).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, KafkaTimeoutError

from connectors.kafka_logging import quiet_kafka
from connectors.retry import retry
from streamlearn.errors import ServiceUnavailable, StreamlearnError

__all__ = [
    "committed_offsets",
    "connecting",
    "end_offsets",
    "ensure_topics",
    "fresh_high_watermarks",
    "high_watermarks",
    "listed_end_offsets",
    "read_all",
    "wait_for_broker",
]

TOPIC_ALREADY_EXISTS = 36

Security = Mapping[str, Any] | None


def _hint(bootstrap: str) -> str:
    return (
        f"Check that a Kafka broker listens on {bootstrap}, or point streamlearn at yours with "
        "STREAMLEARN_KAFKA_BOOTSTRAP=host:port (or kafka.bootstrap in the configuration)."
    )


@contextmanager
def connecting(bootstrap: str) -> Iterator[None]:
    """Turn kafka-python's failure to bootstrap into a message the user can act on."""
    try:
        yield
    except KafkaTimeoutError as error:  # kafka-python 3: "Unable to bootstrap from ..."
        raise ServiceUnavailable(
            f"Kafka broker at {bootstrap} unreachable: {error}. {_hint(bootstrap)}"
        ) from error


def _admin(bootstrap: str, security: Security, timeout_s: float = 10.0) -> KafkaAdminClient:
    with connecting(bootstrap):
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **(security or {}),
        )


def wait_for_broker(bootstrap: str, timeout_s: float, *, security: Security = None) -> None:
    """Block until the broker at ``bootstrap`` answers a metadata request.

    Raises :class:`ServiceUnavailable` naming the address after ``timeout_s`` seconds.
    kafka-python's own logging is silenced meanwhile: the one message says it all.

    Examples
    --------
    >>> wait_for_broker("127.0.0.1:1", timeout_s=0.2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamlearn.errors.ServiceUnavailable: Kafka broker at 127.0.0.1:1 unreachable after ...
    """
    deadline = time.monotonic() + timeout_s

    def probe() -> None:
        # Each try must end by the deadline, or a slow bootstrap overshoots it.
        budget_ms = max(100, min(2000, int((deadline - time.monotonic()) * 1000)))
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, bootstrap_timeout_ms=budget_ms, **(security or {})
        )
        try:
            admin.list_topics()
        finally:
            admin.close()

    with quiet_kafka():
        retry(
            probe,
            what=f"Kafka broker at {bootstrap}",
            timeout_s=timeout_s,
            retry_on=(KafkaError, OSError),
            hint=_hint(bootstrap),
        )


def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int = 1, *, security: Security = None
) -> None:
    """Create the topics that do not exist yet, with ``partitions`` partitions each."""
    wanted = {topic: {"num_partitions": partitions} for topic in topics}
    if not wanted:
        return
    admin = _admin(bootstrap, security)
    try:
        response = admin.create_topics(wanted, raise_errors=False, wait_for_metadata=True)
    finally:
        admin.close()
    for result in response["topics"]:
        if result["error_code"] not in (0, TOPIC_ALREADY_EXISTS):
            raise StreamlearnError(
                f"cannot create Kafka topic {result['name']!r} on {bootstrap}: "
                f"{result['error_message'] or 'error ' + str(result['error_code'])}"
            )


def committed_offsets(
    bootstrap: str, group: str, *, security: Security = None
) -> dict[tuple[str, int], int]:
    """Return the group's committed next-offsets per ``(topic, partition)``."""
    admin = _admin(bootstrap, security)
    try:
        by_group = admin.list_group_offsets(group)
    finally:
        admin.close()
    return {
        (tp.topic, tp.partition): meta.offset
        for tp, meta in by_group.get(group, {}).items()
        if meta.offset >= 0
    }


def listed_end_offsets(consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[Any, int]:
    """Return the broker's ListOffsets answer for ``tps`` ({} if it does not answer in time)."""
    try:
        return dict(consumer.end_offsets(tps, timeout_ms=2000))
    except KafkaError:
        return {}


def _reader(bootstrap: str, security: Security) -> KafkaConsumer:
    with connecting(bootstrap):
        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            fetch_max_wait_ms=50,
            **(security or {}),
        )


def high_watermarks(
    consumer: KafkaConsumer, tps: list[TopicPartition], timeout_s: float
) -> dict[Any, int]:
    """Return the true end offset of each of ``tps``, leaving them assigned to ``consumer``.

    Tansu's ListOffsets answers the start of the last record batch (+1), not its end, so the
    listed value is only a lower bound; a fetch from there reports the real high watermark.
    ``consumer`` must be outside any group.
    """
    listed = listed_end_offsets(consumer, tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, listed.get(tp, 0))
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(tp) is None for tp in tps):
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"no fetch answer from Kafka within {timeout_s} s")
        consumer.poll(timeout_ms=100)
    return {tp: max(listed.get(tp, 0), consumer.highwater(tp) or 0) for tp in tps}


def fresh_high_watermarks(
    bootstrap: str, tps: list[TopicPartition], timeout_s: float = 5.0, *, security: Security = None
) -> dict[Any, int]:
    """Return the true end offset of each of ``tps`` using a short-lived reader."""
    consumer = _reader(bootstrap, security)
    try:
        return high_watermarks(consumer, tps, timeout_s)
    finally:
        consumer.close(autocommit=False)


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def end_offsets(
    bootstrap: str, topic: str, timeout_s: float = 10.0, *, security: Security = None
) -> dict[int, int]:
    """Return the offset after the last message of each partition of ``topic`` ({} if none)."""
    consumer = _reader(bootstrap, security)
    try:
        tps = _partitions(consumer, topic)
        ends = high_watermarks(consumer, tps, timeout_s) if tps else {}
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        consumer.close(autocommit=False)


def read_all(
    bootstrap: str, topic: str, timeout_s: float = 10.0, *, security: Security = None
) -> list[ConsumerRecord]:
    """Read ``topic`` from its beginning to its current end, outside any consumer group.

    Returns the records ordered by partition then offset (``[]`` if the topic does not exist).
    """
    consumer = _reader(bootstrap, security)
    try:
        tps = _partitions(consumer, topic)
        if not tps:
            return []
        ends = high_watermarks(consumer, tps, timeout_s)
        consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"reading {topic!r} from Kafka at {bootstrap} did not finish in {timeout_s} s"
                )
            for tp, batch in consumer.poll(timeout_ms=100).items():
                records += [r for r in batch if r.offset < ends[tp]]
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close(autocommit=False)
