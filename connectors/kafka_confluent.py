"""Kafka in, through librdkafka: the optional ``kafka.client: confluent`` source.

:class:`ConfluentSource` has the interface and the semantics of
:class:`connectors.kafka.KafkaSource` (the kafka-python source, the default) on top of
confluent-kafka: a consumer-group member that appends raw batches to a :class:`RawBatch` and
commits exactly the offsets it is given, when told to. Records are fetched and parsed in
librdkafka's own threads (C, outside the GIL) instead of in Python. Producers and the admin
helpers stay on kafka-python. Install it with ``pip install 'streamlearn[confluent]'``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from kafka import TopicPartition as KafkaTopicPartition

from connectors.kafka import CommitFailed
from connectors.kafka_admin import fresh_high_watermarks
from streamlearn.batch import RawBatch
from streamlearn.errors import ConfigError, ServiceUnavailable, StreamlearnError

try:
    from confluent_kafka import (
        OFFSET_INVALID,
        Consumer,
        KafkaError,
        KafkaException,
        Message,
        TopicPartition,
    )
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    raise ConfigError(
        "kafka.client: confluent needs the confluent-kafka package, which is not installed: "
        "install it with pip install 'streamlearn[confluent]' (or set kafka.client: "
        "kafka-python, the default)"
    ) from _missing

__all__ = ["ConfluentSource", "librdkafka_security"]

Partitions = Callable[[list[tuple[str, int]]], None]
WARNING_INTERVAL_S = 60.0
_PROBE_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)

# kafka-python keyword (KafkaConfig.client_options()) -> librdkafka property.
_SECURITY = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
}
# A commit refused because the group moved on: the new owner re-reads those messages.
_REBALANCED = {"REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "_STATE"}


def librdkafka_security(options: Mapping[str, Any]) -> dict[str, Any]:
    """The librdkafka properties of kafka-python's SASL and TLS keywords.

    ``options`` is what :meth:`streamlearn.config.KafkaConfig.client_options` returns; a
    keyword this mapping does not know is refused rather than silently dropped.

    Examples
    --------
    >>> librdkafka_security({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
    ...     "sasl_plain_username": "svc", "sasl_plain_password": "pw",
    ...     "ssl_check_hostname": False})  # doctest: +NORMALIZE_WHITESPACE
    {'security.protocol': 'SASL_SSL', 'sasl.mechanism': 'PLAIN', 'sasl.username': 'svc',
     'sasl.password': 'pw', 'ssl.endpoint.identification.algorithm': 'none'}
    >>> librdkafka_security({"ssl_password": "x"})
    Traceback (most recent call last):
    ...
    streamlearn.errors.ConfigError: kafka.client: confluent does not support the Kafka \
security option 'ssl_password'; use kafka.client: kafka-python
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key == "ssl_check_hostname":
            out["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif key in _SECURITY:
            out[_SECURITY[key]] = value
        else:
            raise ConfigError(
                f"kafka.client: confluent does not support the Kafka security option {key!r}; "
                "use kafka.client: kafka-python"
            )
    return out


class ConfluentSource:
    """A consumer-group member that appends messages to a :class:`RawBatch` (librdkafka).

    The same interface and semantics as :class:`connectors.kafka.KafkaSource`: offsets are
    committed only by :meth:`commit`, exactly as given; ``on_assign`` / ``on_revoke`` receive
    ``[(topic, partition), ...]`` during a rebalance, on the thread that calls :meth:`poll`
    (librdkafka serves rebalances inside ``consume``), and may :meth:`seek`; partitions
    assigned while paused stay paused. Not thread-safe: use it from one thread, and keep
    calling :meth:`poll` while paused so the group does not evict this member. ``security``
    holds kafka-python's SASL and TLS keywords (``KafkaConfig.client_options()``), mapped to
    librdkafka's by :func:`librdkafka_security`.

    One difference: :meth:`close` leaves the group without calling ``on_revoke`` (the App
    turns that hook off before closing a kafka-python source too).

    Examples
    --------
    >>> from connectors.embedded import EmbeddedBroker
    >>> from connectors.kafka import KafkaSink, committed_offsets, ensure_topics
    >>> with EmbeddedBroker() as broker:
    ...     ensure_topics(broker.bootstrap, ["clicks"])
    ...     with KafkaSink(broker.bootstrap) as sink:
    ...         sink.send("clicks", b'{"n": 1}', key=b"user-1")
    ...         sink.flush()
    ...     source = ConfluentSource(broker.bootstrap, ["clicks"], "doc",
    ...                              session_timeout_ms=6000, heartbeat_interval_ms=500)
    ...     batch = RawBatch()
    ...     while not batch:
    ...         _ = source.poll(100, 0.5, batch)
    ...     source.commit(batch.commit_offsets)
    ...     source.close()
    ...     batch.values, batch.keys, committed_offsets(broker.bootstrap, "doc")
    ([b'{"n": 1}'], [b'user-1'], {('clicks', 0): 1})
    """

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        group: str,
        *,
        client_id: str = "streamlearn",
        start: Literal["earliest", "latest"] = "earliest",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        max_poll_records: int = 5_000,
        fetch_max_wait_ms: int = 100,
        on_assign: Partitions | None = None,
        on_revoke: Partitions | None = None,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = dict(security or {})  # kafka-python's keywords, for the lag reader
        self.start = start
        self.paused = False
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.max_poll_records = max_poll_records
        self._seeks: dict[tuple[str, int], int] | None = None  # collected inside on_assign
        self._warned_at: dict[str, float] = {}
        self._fatal: KafkaError | None = None
        self._closed = False
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": start,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
            # As KafkaSource: the batch, not the message, is the unit of work, and the broker
            # may hold a fetch this long (Tansu always does).
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
            "fetch.wait.max.ms": fetch_max_wait_ms,
            # librdkafka prefetches in the background; bound it (default 64 MiB) so memory stays
            # near kafka-python's: 16 MiB is still many batches ahead.
            "queued.max.messages.kbytes": 16 * 1024,
            "enable.partition.eof": False,
            "error_cb": self._on_error,
            **librdkafka_security(self.security),
        }
        try:
            self.consumer = Consumer(settings, logger=logging.getLogger(f"{__name__}.librdkafka"))
        except KafkaException as error:  # a property librdkafka refuses
            raise ConfigError(f"kafka: librdkafka refused the settings: {error}") from error
        self._probe(bootstrap)
        self.consumer.subscribe(
            topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )

    def _probe(self, bootstrap: str) -> None:
        """Fail now, in one line, if the broker does not answer (as kafka-python does)."""
        try:
            self.consumer.list_topics(timeout=_PROBE_TIMEOUT_S)
        except KafkaException as error:
            self.consumer.close()
            raise ServiceUnavailable(
                f"Kafka broker at {bootstrap} unreachable: {error.args[0]}. Check that a Kafka "
                f"broker listens on {bootstrap}, or point streamlearn at yours with "
                "STREAMLEARN_KAFKA_BOOTSTRAP=host:port (or kafka.bootstrap in the configuration)."
            ) from error

    # librdkafka calls these inside consume(), on the polling thread.
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._seeks = {}
        try:
            # Told even of an empty assignment: a member with no partitions has still joined.
            if self.on_assign is not None:
                self.on_assign(sorted((tp.topic, tp.partition) for tp in partitions))
            seeks = self._seeks
        finally:
            self._seeks = None
        # A seek asked for now is the offset the partition starts at: librdkafka refuses
        # seek() on a partition that is not fetching yet.
        for tp in partitions:
            offset = seeks.get((tp.topic, tp.partition))
            if offset is not None:
                tp.offset = offset
        consumer.assign(partitions)
        if self.paused and partitions:
            consumer.pause(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_revoke is not None and partitions and not self._closed:
            self.on_revoke(sorted((tp.topic, tp.partition) for tp in partitions))
        consumer.unassign()

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        else:  # broker down, connection refused, ...: librdkafka retries by itself
            self._warn(error.name(), "Kafka consumer at %s: %s (retrying)", error.str())

    def _warn(self, kind: str, message: str, detail: object) -> None:
        now = time.monotonic()
        last = self._warned_at.get(kind)
        if last is None or now - last >= WARNING_INTERVAL_S:
            self._warned_at[kind] = now
            log.warning(message, self.bootstrap, detail)

    def poll(self, max_records: int, timeout_s: float, into: RawBatch) -> int:
        """Append up to ``max_records`` messages to ``into``; return how many were appended.

        Returns as soon as any message is there (waiting at most ``timeout_s`` for one), as
        kafka-python's poll does: librdkafka's ``consume`` alone would wait for all of them.
        """
        max_records = min(max_records, self.max_poll_records)
        if max_records <= 0:
            return 0
        consume = self.consumer.consume
        messages = consume(max_records, 0)
        if not messages and timeout_s > 0:
            messages = consume(1, timeout_s)
            if messages and max_records > 1:
                messages += consume(max_records - 1, 0)
        received = time.monotonic()
        if self._fatal is not None:
            raise StreamlearnError(f"Kafka consumer at {self.bootstrap}: {self._fatal.str()}")
        if not messages:
            return 0
        if any(m.error() is not None for m in messages):
            messages = self._without_errors(messages)
        into.extend(_columns(messages, received))
        return len(messages)

    def _without_errors(self, messages: list[Message]) -> list[Message]:
        good = []
        for m in messages:
            error = m.error()
            if error is None:
                good.append(m)
            elif error.fatal():
                raise StreamlearnError(f"Kafka consumer at {self.bootstrap}: {error.str()}")
            else:
                self._warn(error.name(), "Kafka consumer at %s: %s", error.str())
        return good

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the next offset to read per ``(topic, partition)``, synchronously."""
        if not offsets:
            return
        to_commit = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            answer = self.consumer.commit(offsets=to_commit, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            moved = isinstance(error, KafkaError) and error.name() in _REBALANCED
            why = " after a rebalance" if moved else ""
            raise CommitFailed(f"commit of {offsets} failed{why}: {exc}") from exc
        failed = [tp for tp in answer or () if tp.error is not None]
        if failed:
            raise CommitFailed(f"commit of {offsets} failed: {failed[0].error}")

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Read next from the given offset of each assigned ``(topic, partition)``."""
        if self._seeks is not None:  # inside on_assign: applied by the assignment itself
            self._seeks.update(offsets)
            return
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(topic, partition, offset)
            try:
                self.consumer.seek(tp)
            except KafkaException:
                # Not fetching yet (just assigned): start the partition there instead.
                self._reassign_at({(topic, partition): offset})

    def _reassign_at(self, offsets: dict[tuple[str, int], int]) -> None:
        assignment = self.consumer.assignment()
        for tp in assignment:
            if (tp.topic, tp.partition) in offsets:
                tp.offset = offsets[(tp.topic, tp.partition)]
            else:
                position = self.consumer.position([tp])[0].offset
                tp.offset = position if position >= 0 else OFFSET_INVALID
        self.consumer.assign(assignment)
        if self.paused and assignment:
            self.consumer.pause(assignment)

    def positions(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset each assigned partition would be read from.

        That is where this member has read to, else the group's commit, else where ``start``
        says (the partition's first offset, or its end as the broker lists it).
        """
        out: dict[tuple[str, int], int] = {}
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return out
        unknown = []
        for tp in self.consumer.position(tps):
            if tp.offset >= 0:
                out[(tp.topic, tp.partition)] = tp.offset
            else:
                unknown.append((tp.topic, tp.partition))
        committed = self.group_offsets(unknown) if unknown else {}
        out.update(committed)
        for topic, partition in unknown:
            if (topic, partition) in committed:
                continue
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10.0, cached=False
                )
            except KafkaException:
                continue
            out[(topic, partition)] = low if self.start == "earliest" else high
        return out

    def group_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The group's committed offset of each given partition that has one."""
        if not partitions:
            return {}
        try:
            answer = self.consumer.committed(
                [TopicPartition(t, p) for t, p in partitions], timeout=10.0
            )
        except KafkaException as error:
            raise CommitFailed(f"reading the group's commit failed: {error}") from error
        return {(tp.topic, tp.partition): tp.offset for tp in answer if tp.offset >= 0}

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition, including ones assigned later."""
        self.paused = True
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)

    def resume_all(self) -> None:
        """Fetch again from every assigned partition."""
        self.paused = False
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.resume(assignment)

    def assignment_ready(self) -> bool:
        """Whether the group has given this member its partitions."""
        return bool(self.consumer.assignment())

    def lag(self) -> dict[int, int]:
        """Messages not yet read per partition number (summed over topics).

        As :meth:`connectors.kafka.KafkaSource.lag`: while consuming, every fetch reports each
        partition's high watermark (librdkafka caches it), so this costs no round-trip; while
        paused that value goes stale, so a short-lived reader fetches it (Tansu's ListOffsets,
        which librdkafka's query would use, is only a lower bound).
        """
        assigned = self.consumer.assignment()
        if not assigned:
            return {}
        known: dict[tuple[str, int], int | None] = {}
        for tp in assigned:
            _, top = self.consumer.get_watermark_offsets(tp, cached=True) or (None, None)
            known[(tp.topic, tp.partition)] = top if top is not None and top >= 0 else None
        ends: dict[tuple[str, int], int] = {}
        try:
            if self.paused:
                fresh = fresh_high_watermarks(
                    self.bootstrap,
                    [KafkaTopicPartition(t, p) for t, p in known],
                    timeout_s=2.0,
                    security=self.security,
                )
                ends = {(tp.topic, tp.partition): end for tp, end in fresh.items()}
            elif any(end is None for end in known.values()):
                missing = [tp for tp in assigned if known[(tp.topic, tp.partition)] is None]
                ends = self._listed_ends(missing)
        except StreamlearnError as error:
            # Lag is a metric: report with what is known, and say why it may be stale.
            self._warn("lag", "consumer lag from Kafka at %s may be stale (%s)", error)
        positions = self.positions(sorted(known))
        out: dict[int, int] = {}
        for key, high in known.items():
            position = positions.get(key)
            if position is None:
                continue
            end = max(ends.get(key, 0), high or 0)
            out[key[1]] = out.get(key[1], 0) + max(0, end - position)
        return out

    def _listed_ends(self, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
        ends = {}
        for tp in tps:
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
            except KafkaException as error:
                raise StreamlearnError(f"end offsets unavailable: {error}") from error
            ends[(tp.topic, tp.partition)] = high
        return ends

    def close(self) -> None:
        """Leave the group (its partitions move to the other members at once)."""
        if self._closed:
            return
        self._closed = True
        self.consumer.close()


def _columns(messages: list[Message], received: float) -> RawBatch:
    # Column-wise, one pass per field: cheaper than per-message appends.
    # A message without an error always has its topic, partition and offset.
    n = len(messages)
    values = [m.value() for m in messages]
    return RawBatch(
        [m.topic() for m in messages],  # type: ignore[misc]
        [m.partition() for m in messages],  # type: ignore[misc]
        [m.offset() for m in messages],  # type: ignore[misc]
        [m.key() for m in messages],
        values,
        [m.timestamp()[1] for m in messages],
        [received] * n,
        sum(len(v) for v in values if v),
    )
