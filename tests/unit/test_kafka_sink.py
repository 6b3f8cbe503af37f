"""The output producer's flush: durable, refusals final, retriable failures never dropped."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotEnoughReplicasError

from connectors.kafka_sink import DeliveryFailed, KafkaSink
from streamlearn.errors import OutputBackpressure


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.is_done = True
        self.exception = error

    def failed(self) -> bool:
        return self.exception is not None


class Producer:
    """Stands in for KafkaProducer: each send gets the next planned outcome."""

    def __init__(self, outcomes: list[Exception | str | None]) -> None:
        self.outcomes = outcomes
        self.delivered: list[bytes] = []

    def send(
        self,
        topic: str,
        value: bytes,
        key: Any = None,
        headers: Any = None,
        timestamp_ms: Any = None,
    ) -> Future:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome == "cannot queue":
            raise KafkaTimeoutError("buffer full")
        if outcome is None:
            self.delivered.append(value)
        return Future(outcome if isinstance(outcome, Exception) else None)

    def flush(self, timeout: float) -> None:
        pass


def sink(outcomes: list[Exception | str | None]) -> tuple[KafkaSink, Producer]:
    s = KafkaSink.__new__(KafkaSink)
    s.bootstrap, s._pending, s._unsent = "test:9092", [], []
    s.producer = Producer(outcomes)  # type: ignore[assignment]
    return s, s.producer  # type: ignore[return-value]


def test_retriable_failures_are_sent_again_and_never_dropped() -> None:
    # Three messages fail retriably; re-sending the first then cannot even be queued.
    s, producer = sink([NotEnoughReplicasError()] * 3 + ["cannot queue"])
    for value in (b"a", b"b", b"c"):
        s.send("dlq", value)
    with pytest.raises(OutputBackpressure):
        s.flush()
    with pytest.raises(OutputBackpressure):
        s.flush()  # the re-send of "a" could not be queued: still owed, not lost
    s.flush()
    assert sorted(producer.delivered) == [b"a", b"b", b"c"]


def test_a_refused_message_is_a_final_error() -> None:
    s, _ = sink([MessageSizeTooLargeError()])
    s.send("dlq", b"huge")
    with pytest.raises(DeliveryFailed):
        s.flush()
