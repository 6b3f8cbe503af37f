"""The hand-written kafka-python consumers of the hot-path benchmark, each run in its own process.

- (a) :func:`consume_raw`: poll and ``orjson.loads`` every record, nothing else (the ceiling);
- (a') :func:`consume_raw_source` with ``confluent``: the same through the engine's librdkafka
  source (:class:`connectors.kafka_confluent.ConfluentSource`, polled into columns); (a'')
  without: through the engine's kafka-python source (:class:`connectors.kafka.KafkaSource`,
  whose record reader is :mod:`connectors.kafka_records`, not kafka-python's);
- (b) :func:`per_event_loop`: river predict, one HSET, learn, per event; commit per poll;
- (e) :func:`latency_floor`: decode and one HSET per event, no model; commit per poll.

Each counts events per second from the first poll that returned records to the last record
processed (and committed), like the engine's figure, and stops after ``read.events`` records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.hotpath_child import Read

Handler = Callable[[list[Any]], None]


def consume_raw(ready: Callable[[], None], read: Read, defaults: bool = False) -> dict[str, Any]:
    """(a) The consume ceiling: poll and decode every record, nothing else.

    Polls up to 5 000 records at a time with the engine's fetch settings; with ``defaults``,
    500 at a time with kafka-python's own (what Tansu's fetch hold makes of them).
    """
    import orjson

    loads = orjson.loads

    def handle(records: list[Any]) -> None:
        for record in records:
            loads(record.value)

    if defaults:
        return _drive(ready, read, handle, commit=False, fetch={})
    return _drive(ready, read, handle, commit=False, max_records=5000)


def consume_raw_source(
    ready: Callable[[], None], read: Read, confluent: bool = False
) -> dict[str, Any]:
    """(a') / (a'') The consume ceiling through one of the engine's own sources.

    Polls up to 5 000 records at a time into a :class:`~streamlearn.batch.RawBatch` (the
    engine's fetch settings) and ``orjson.loads`` every value; commits nothing. ``confluent``:
    the librdkafka source of ``kafka.client: confluent``; otherwise the default kafka-python one.
    """
    import orjson

    from connectors.kafka import KafkaSource
    from connectors.kafka_confluent import ConfluentSource
    from streamlearn.batch import RawBatch

    loads = orjson.loads
    kind = ConfluentSource if confluent else KafkaSource
    source = kind(
        read.bootstrap,
        [read.topic],
        read.group,
        client_id=read.group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=ENGINE_FETCH["fetch_max_wait_ms"],
    )
    began = time.monotonic()
    first: float | None = None
    last = received = began
    n = polls = 0
    signalled = False
    try:
        while n < read.events:
            batch = RawBatch()
            got = source.poll(min(5000, read.events - n), 0.2, batch)
            now = time.monotonic()
            if not signalled and source.assignment_ready():
                ready()
                signalled = True
            if not got:
                if _should_stop(read, first, received, began, now):
                    break
                continue
            if first is None:
                first = now
            received = now
            for value in batch.values:
                loads(value)  # type: ignore[arg-type]
            n += got
            polls += 1
            last = time.monotonic()
    finally:
        source.close()
    seconds = last - (first or last)
    return {
        "events": n,
        "polls": polls,
        "startup_s": round((first or last) - began, 2),
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1) if seconds > 0 else None,
    }


def per_event_loop(ready: Callable[[], None], read: Read) -> dict[str, Any]:
    """(b) The per-event loop a user writes: predict, HSET, learn each event; commit per poll."""
    import orjson
    import redis

    from benchmarks.hotpath_river import PerEventJob

    job = PerEventJob(redis.Redis.from_url(read.redis_url), pipeline=f"{read.group}")
    loads = orjson.loads

    def handle(records: list[Any]) -> None:
        for record in records:
            job(loads(record.value))

    figures = _drive(ready, read, handle, commit=True)
    figures["scores"] = np.asarray(job.scores, dtype=np.float64)
    figures["labels"] = np.asarray(job.labels, dtype=np.int8)
    return figures


def latency_floor(ready: Callable[[], None], read: Read) -> dict[str, Any]:
    """(e) Decode each event and write it at once (one HSET), no model; commit per poll.

    Latency is the Kafka record timestamp (the producer's send time) to the HSET's reply.
    """
    import orjson
    import redis

    from benchmarks.hotpath_river import prediction_key

    client = redis.Redis.from_url(read.redis_url)
    loads, pipeline = orjson.loads, read.group
    latencies_ms: list[float] = []

    def handle(records: list[Any]) -> None:
        for record in records:
            event = loads(record.value)
            client.hset(
                prediction_key(pipeline, event["entity_id"]),
                mapping={"event_id": event["event_id"], "ts": event["ts"]},
            )
            latencies_ms.append(time.time() * 1000.0 - record.timestamp)

    figures = _drive(ready, read, handle, commit=True)
    figures["latencies_s"] = np.asarray(latencies_ms, dtype=np.float64) / 1000.0
    return figures


# Tansu holds fetches for the full fetch_max_wait_ms (see connectors.kafka.KafkaSource): with
# kafka-python's defaults (500 ms, 1 MiB per partition) a raw consumer lost 1.5 to 2 s on each
# backlog here (17 900 events/s over 40 000 events, 65 000 over 200 000, against 150 000 and
# 115 000 with these settings). Every variant fetches as the engine does, so the broker's fetch
# hold is not what is measured; (a) is also run once with the defaults to show it.
ENGINE_FETCH = {"fetch_max_wait_ms": 100, "max_partition_fetch_bytes": 4 * 1024 * 1024}


def _consumer(read: Read, fetch: dict[str, int] | None) -> Any:
    from kafka import KafkaConsumer

    # The engine's demo settings for the group protocol (a quick join on the embedded broker);
    # everything else is kafka-python's default, as a hand-written consumer would have it.
    return KafkaConsumer(
        read.topic,
        bootstrap_servers=read.bootstrap,
        group_id=read.group,
        client_id=read.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        **(ENGINE_FETCH if fetch is None else fetch),
    )


def _drive(
    ready: Callable[[], None],
    read: Read,
    handle: Handler,
    commit: bool,
    max_records: int = 500,
    fetch: dict[str, int] | None = None,
) -> dict[str, Any]:
    consumer = _consumer(read, fetch)
    began = time.monotonic()
    first: float | None = None
    last = received = began
    n = polls = 0
    signalled = False
    try:
        while n < read.events:
            polled = consumer.poll(timeout_ms=200, max_records=min(max_records, read.events - n))
            now = time.monotonic()
            if not signalled and consumer.assignment():
                ready()
                signalled = True
            if not polled:
                if _should_stop(read, first, received, began, now):
                    break
                continue
            if first is None:
                first = now
            received = now
            for records in polled.values():
                handle(records)
                n += len(records)
            if commit:
                consumer.commit()
            polls += 1
            last = time.monotonic()
            if read.time_cap_s is not None and last - first >= read.time_cap_s:
                break
    finally:
        consumer.close(autocommit=False)
    seconds = last - (first or last)
    return {
        "events": n,
        "polls": polls,
        "startup_s": round((first or last) - began, 2),
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1) if seconds > 0 else None,
    }


def _should_stop(
    read: Read, first: float | None, received: float, began: float, now: float
) -> bool:
    if now - began > read.timeout_s:
        return True
    return first is not None and read.idle_stop_s is not None and now - received > read.idle_stop_s
