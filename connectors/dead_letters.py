"""Sends rejected messages to a pipeline's dead-letter topic, with the reason in headers.

Each dead letter keeps the original bytes (cut at :data:`MAX_DEAD_LETTER_BYTES`, with a header
saying so) and its key; headers name the reason, a detail, where it came from
(``topic/partition/offset``) and the pipeline. Every task's output writer uses this.
"""

from __future__ import annotations

from typing import Protocol

from streamlearn.batch import RawBatch
from streamlearn.rejections import Rejection

# The original bytes of a dead letter are kept up to this size (then cut, with a header saying so).
MAX_DEAD_LETTER_BYTES = 512 * 1024


class MessageSink(Protocol):
    """A producer of Kafka messages."""

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one message."""
        ...

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every queued message is acknowledged, or raise."""
        ...

    def close(self) -> None:
        """Deliver what is queued and disconnect."""
        ...


class DeadLetters:
    """Queues dead letters of one pipeline on its producer (the caller flushes).

    Examples
    --------
    >>> class Printing:
    ...     def send(self, topic, value, key=None, headers=None):
    ...         print(topic, value, key, dict(headers)["reason"])
    >>> raw = RawBatch()
    >>> raw.append("clicks", 0, 7, b"u1", b"{oops", 0, received=0.0)
    >>> DeadLetters(Printing(), "clicks.dlq", "recs").send(raw, [Rejection(0, "not_json", "")])
    clicks.dlq b'{oops' b'u1' b'not_json'
    """

    def __init__(self, producer: MessageSink, topic: str, pipeline: str) -> None:
        self.producer = producer
        self.topic = topic
        self.pipeline = pipeline

    def send(self, raw: RawBatch, rejections: list[Rejection]) -> None:
        """Dead-letter each rejected message of ``raw`` (by its index) with its reason."""
        for rejection in rejections:
            i = rejection.index
            source = f"{raw.topics[i]}/{raw.partitions[i]}/{raw.offsets[i]}"
            self.send_one(raw.values[i] or b"", raw.keys[i], rejection, source)

    def send_one(self, value: bytes, key: bytes | None, rejection: Rejection, source: str) -> None:
        """Dead-letter one message read from ``source``."""
        headers = [
            ("reason", rejection.reason.encode()),
            ("detail", rejection.detail.encode()),
            ("source", source.encode()),
            ("pipeline", self.pipeline.encode()),
        ]
        if len(value) > MAX_DEAD_LETTER_BYTES:
            # A message near the broker's size limit would not fit again with headers.
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:MAX_DEAD_LETTER_BYTES]
        self.producer.send(self.topic, value, key=key, headers=headers)
