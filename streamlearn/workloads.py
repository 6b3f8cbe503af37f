"""Writes a task's synthetic event stream to Kafka at a steady rate (``streamlearn generate``).

Part of the composition layer, like the CLI: it joins a pure generator to the Kafka sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from streamlearn.errors import ConfigError, StreamlearnError

if TYPE_CHECKING:
    from streamlearn.generators.recommendation import RecommendationGenerator
    from streamlearn.generators.retention import RetentionGenerator

TASK_TOPICS = {
    "fraud": "transactions",
    "retention": "customer-activity",
    "recommendation": "interactions",
}
LABEL_TOPICS = {"retention": "churn-labels"}  # tasks whose labels come later, on their own topic
TASK_EVENTS = {"fraud": 10_000, "retention": 2_000_000, "recommendation": 500_000}  # --events
# The generator options each task takes beyond seed, drift and size (keyword names).
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "fraud": (),
    "retention": ("customers", "label_fraction", "label_delay_days"),
    "recommendation": ("users", "items"),
}

Message = tuple[str, str, dict[str, Any], int | None]
"""``(topic_kind, key, value, timestamp_ms)``; topic_kind is "events" or "labels"."""

# Kinds of broken message the demo mixes in, so the dead-letter path is visible.
MALFORMED_SAMPLES: tuple[bytes, ...] = (
    b"{not json",
    b'{"event_id": "bad-1", "entity_id": "card-x", "ts": 1}',
    b'{"event_id": "bad-2", "entity_id": "card-x", "ts": 1, "amount": "12.5"}',
    b"[1, 2, 3]",
    b'{"event_id": "bad-3", "entity_id": "card-x", "ts": 1, "amount": NaN}',
)


def task_events(
    task: str,
    *,
    seed: int,
    drift_at: int | None,
    rate: float | None = None,
    events: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> Callable[[int], Iterator[dict[str, Any]]]:
    """The event factory of a task: call it with a count to get that many more events.

    Labels that travel on their own topic are left out; :func:`task_messages` has them.
    """
    if task == "fraud":
        from streamlearn.generators.fraud import FraudGenerator

        _check_options(task, options)
        return FraudGenerator(seed=seed, drift_at=drift_at, rate=rate or 1000.0).events
    if task == "retention":
        return _retention(seed, drift_at, events, options).events
    if task == "recommendation":
        return _recommendation(seed, drift_at, options).events
    raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(TASK_TOPICS)}")


def task_messages(
    task: str,
    *,
    seed: int,
    drift_at: int | None,
    rate: float | None = None,
    events: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> Callable[[int], Iterator[Message]]:
    """The message factory of a task: ``n`` more events and the labels due among them.

    A timestamp of None lets the producer stamp the message with the time it is sent.

    >>> factory = task_messages("fraud", seed=1, drift_at=None)
    >>> [(kind, key, timestamp) for kind, key, _, timestamp in factory(1)]  # doctest: +ELLIPSIS
    [('events', 'card-...', None)]
    """
    if task == "retention":
        return _retention(seed, drift_at, events, options).messages
    if task == "recommendation":
        return _recommendation(seed, drift_at, options).messages
    events_of = task_events(task, seed=seed, drift_at=drift_at, rate=rate, options=options)

    def messages(n: int) -> Iterator[Message]:
        for event in events_of(n):
            yield "events", str(event["entity_id"]), event, None

    return messages


def _retention(
    seed: int, drift_at: int | None, events: int | None, options: Mapping[str, Any] | None
) -> RetentionGenerator:
    from streamlearn.generators.retention import RetentionGenerator

    chosen = _check_options("retention", options)
    try:
        return RetentionGenerator(
            seed=seed, drift_at=drift_at, events=events or TASK_EVENTS["retention"], **chosen
        )
    except ValueError as error:
        raise ConfigError(f"retention generator: {error}") from error


def _recommendation(
    seed: int, drift_at: int | None, options: Mapping[str, Any] | None
) -> RecommendationGenerator:
    from streamlearn.generators.recommendation import RecommendationGenerator

    chosen = _check_options("recommendation", options)
    try:
        return RecommendationGenerator(seed=seed, drift_at=drift_at, **chosen)
    except ValueError as error:
        raise ConfigError(f"recommendation generator: {error}") from error


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _check_options(task: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(TASK_OPTIONS[task]))
    if unknown:
        takes = ", ".join(_flag(name) for name in TASK_OPTIONS[task]) or "no extra options"
        raise ConfigError(
            f"the {task} task does not take {', '.join(map(_flag, unknown))} (it takes {takes})"
        )
    return given


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
    labels_topic: str | None = None,
    rate: float | None = None,
    seed: int = 0,
    drift_at: int | None = None,
    partitions: int = 1,
    malformed_every: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> int:
    """Send ``events`` events of ``task`` (plus one malformed message every ``malformed_every``).

    Tasks whose labels come later (retention) also send those labels, in event-time order, to
    ``labels_topic``; they are not counted in the events returned. Retention and recommendation
    messages carry their event time (a label: the time it became known) as the Kafka timestamp.
    """
    from connectors.kafka import KafkaSink, ensure_topics, wait_for_broker

    topics = _topics(task, topic, labels_topic)
    factory = task_messages(
        task, seed=seed, drift_at=drift_at, rate=rate, events=events, options=options
    )
    wait_for_broker(bootstrap, timeout_s=60)
    ensure_topics(bootstrap, sorted(set(topics.values())), partitions=partitions)
    sink = KafkaSink(bootstrap, client_id=f"streamlearn-generate-{task}")
    send, check = _stamped_sender(sink)
    sent = 0
    try:
        for n in paced(events, rate):
            for kind, key, value, timestamp_ms in factory(n):
                send(topics[kind], orjson.dumps(value), key.encode(), timestamp_ms)
                if kind != "events":
                    continue
                sent += 1
                if malformed_every and sent % malformed_every == 0:
                    sample = MALFORMED_SAMPLES[(sent // malformed_every) % len(MALFORMED_SAMPLES)]
                    sink.send(topics[kind], sample, key=b"card-x")
        sink.flush()
        check()
    finally:
        sink.close()
    return sent


def _topics(task: str, topic: str | None, labels_topic: str | None) -> dict[str, str]:
    """Where each kind of message goes: ``{"events": ..., "labels": ...}``."""
    topics = {"events": topic or TASK_TOPICS.get(task, task)}
    if task in LABEL_TOPICS:
        topics["labels"] = labels_topic or LABEL_TOPICS[task]
    elif labels_topic:
        raise ConfigError(
            f"the {task} task has no labels topic: its labels travel in the events themselves"
        )
    return topics


def _stamped_sender(
    sink: Any,
) -> tuple[Callable[[str, bytes, bytes, int | None], None], Callable[[], None]]:
    """A send that sets the Kafka timestamp when given one, and a check to call after flushing."""
    from kafka.errors import KafkaError

    failures: list[BaseException] = []

    def send(topic: str, value: bytes, key: bytes, timestamp_ms: int | None) -> None:
        if timestamp_ms is None:
            sink.send(topic, value, key=key)
            return
        # KafkaSink.send sets no timestamp, so stamped messages go to its producer directly;
        # their delivery failures are collected here and reported by check().
        try:
            future = sink.producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)
        except KafkaError as error:
            raise StreamlearnError(f"cannot send to Kafka topic {topic!r}: {error}") from error
        future.add_errback(failures.append)

    def check() -> None:
        if failures:
            raise StreamlearnError(
                f"{len(failures)} message(s) to Kafka at {sink.bootstrap} were not delivered: "
                f"{failures[0]}"
            )

    return send, check
