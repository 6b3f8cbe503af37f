"""The Kafka producer for outputs: dead letters and predictions, durable once flushed."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from connectors.kafka_admin import connecting
from streamlearn.errors import OutputBackpressure, OutputRejected


class DeliveryFailed(OutputRejected):
    """The broker rejected a produced message for good (e.g. too large, unknown topic)."""


_Message = tuple[str, bytes, bytes | None, list[tuple[str, bytes]] | None, int | None]


class KafkaSink:
    """A producer for outputs (dead letters, predictions); :meth:`flush` makes them durable.

    ``acks="all"`` with idempotence: a message counts as written only once every in-sync
    replica has it, and retries cannot duplicate it. That is what lets the runner commit
    input offsets after a flush without losing dead letters; flushing once per batch keeps
    the extra round-trip off the per-message path. ``security`` holds kafka-python's SASL and
    TLS keywords (:meth:`streamlearn.config.KafkaConfig.client_options`).

    Examples
    --------
    >>> sink = KafkaSink("127.0.0.1:1", connect_timeout_s=0.2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamlearn.errors.ServiceUnavailable: Kafka broker at 127.0.0.1:1 unreachable: ...
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "streamlearn",
        connect_timeout_s: float = 10.0,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._pending: list[tuple[Any, _Message]] = []
        self._unsent: list[_Message] = []
        with connecting(bootstrap):
            self.producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                batch_size=256 * 1024,
                max_request_size=4 * 1024 * 1024,
                max_block_ms=10_000,
                bootstrap_timeout_ms=int(connect_timeout_s * 1000),
                **(security or {}),
            )

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one message; delivery failures surface in :meth:`flush`.

        ``timestamp_ms`` sets the record's timestamp (default: the producer's clock), e.g. the
        event time of a replayed or generated stream.
        """
        message = (topic, value, key, headers, timestamp_ms)
        self._pending.append((self._send(message), message))

    def _send(self, message: _Message) -> Any:
        topic, value, key, headers, timestamp_ms = message
        try:
            return self.producer.send(
                topic, value=value, key=key, headers=headers, timestamp_ms=timestamp_ms
            )
        except KafkaTimeoutError as error:
            raise OutputBackpressure(
                f"Kafka producer cannot queue to {topic!r}: {error}"
            ) from error
        except KafkaError as error:  # e.g. larger than max_request_size: never deliverable
            raise DeliveryFailed(f"cannot send to Kafka topic {topic!r}: {error}") from error

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued message is acknowledged.

        Raises :class:`OutputBackpressure` if some are still in flight after ``timeout_s`` or
        failed in a way worth retrying (they are queued again, so a later flush can succeed),
        or :class:`DeliveryFailed` if the broker refused any for good.
        """
        # Messages whose earlier delivery failed in a retriable way go out again first; each
        # leaves the list only once it is queued, so none is dropped if queueing fails.
        while self._unsent:
            message = self._unsent[0]
            self._pending.append((self._send(message), message))
            self._unsent.pop(0)
        if not self._pending:
            return  # nothing queued since the last flush: no round trip to the sender thread
        # A timeout is reported below, with how many messages are still waiting.
        with suppress(KafkaTimeoutError):
            self.producer.flush(timeout=timeout_s)
        failed = [(f, m) for f, m in self._pending if f.is_done and f.failed()]
        self._pending = [(f, m) for f, m in self._pending if not f.is_done]
        refused = [f for f, _ in failed if not getattr(f.exception, "retriable", False)]
        if refused:
            raise DeliveryFailed(
                f"{len(refused)} message(s) to Kafka at {self.bootstrap} were rejected: "
                f"{refused[0].exception}"
            )
        self._unsent.extend(m for _, m in failed)
        waiting = len(self._pending) + len(self._unsent)
        if waiting:
            raise OutputBackpressure(
                f"{waiting} message(s) not yet acknowledged by Kafka at "
                f"{self.bootstrap} within {timeout_s:.0f} s"
            )

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``) and disconnect."""
        self.producer.close(timeout=timeout_s)

    def __enter__(self) -> KafkaSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
