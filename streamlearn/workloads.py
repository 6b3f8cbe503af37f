"""Writes a task's synthetic event stream to Kafka at a steady rate (``streamlearn generate``).

Part of the composition layer, like the CLI: it joins a pure generator to the Kafka sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from streamlearn.errors import ConfigError

TASK_TOPICS = {"fraud": "transactions"}

# Kinds of broken message the demo mixes in, so the dead-letter path is visible.
MALFORMED_SAMPLES: tuple[bytes, ...] = (
    b"{not json",
    b'{"event_id": "bad-1", "entity_id": "card-x", "ts": 1}',
    b'{"event_id": "bad-2", "entity_id": "card-x", "ts": 1, "amount": "12.5"}',
    b"[1, 2, 3]",
    b'{"event_id": "bad-3", "entity_id": "card-x", "ts": 1, "amount": NaN}',
)


def task_events(
    task: str, *, seed: int, drift_at: int | None, rate: float | None = None
) -> Callable[[int], Iterator[dict[str, Any]]]:
    """The event factory of a task: call it with a count to get that many more events."""
    if task == "fraud":
        from streamlearn.generators.fraud import FraudGenerator

        return FraudGenerator(seed=seed, drift_at=drift_at, rate=rate or 1000.0).events
    raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(TASK_TOPICS)}")


def paced(total: int, rate: float | None, chunk: int = 500) -> Iterator[int]:
    """Yield chunk sizes adding up to ``total``, sleeping so they average ``rate`` per second.

    >>> list(paced(1200, None))
    [500, 500, 200]
    """
    started = time.monotonic()
    sent = 0
    step = chunk if rate is None else max(1, min(chunk, int(rate / 100) or 1))
    while sent < total:
        n = min(step, total - sent)
        if rate:
            wait = started + sent / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield n
        sent += n


def produce_workload(
    task: str,
    *,
    events: int,
    bootstrap: str,
    topic: str | None = None,
    rate: float | None = None,
    seed: int = 0,
    drift_at: int | None = None,
    partitions: int = 1,
    malformed_every: int | None = None,
) -> int:
    """Send ``events`` events of ``task`` (plus one malformed message every ``malformed_every``)."""
    from connectors.kafka import KafkaSink, ensure_topics, wait_for_broker

    topic = topic or TASK_TOPICS.get(task, task)
    factory = task_events(task, seed=seed, drift_at=drift_at, rate=rate)
    wait_for_broker(bootstrap, timeout_s=60)
    ensure_topics(bootstrap, [topic], partitions=partitions)
    sink = KafkaSink(bootstrap, client_id=f"streamlearn-generate-{task}")
    sent = 0
    try:
        for n in paced(events, rate):
            for event in factory(n):
                sink.send(topic, orjson.dumps(event), key=str(event["entity_id"]).encode())
                sent += 1
                if malformed_every and sent % malformed_every == 0:
                    sample = MALFORMED_SAMPLES[(sent // malformed_every) % len(MALFORMED_SAMPLES)]
                    sink.send(topic, sample, key=b"card-x")
        sink.flush()
    finally:
        sink.close()
    return sent
