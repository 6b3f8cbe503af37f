"""Kafka in: a consumer-group member that reads raw batches and commits when told to.

Built on kafka-python 3 and tested against Tansu (the embedded broker) and Apache Kafka. Offsets
are committed only when the caller says so, after the batch's outputs are durable. The producer
of :mod:`connectors.kafka_sink` and the admin helpers of :mod:`connectors.kafka_admin` are
re-exported here, so ``connectors.kafka`` is the one import for Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, Literal

from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    TopicPartition,
)
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.kafka_admin import (
    committed_offsets,
    connecting,
    end_offsets,
    ensure_topics,
    fresh_high_watermarks,
    listed_end_offsets,
    read_all,
    wait_for_broker,
)
from connectors.kafka_records import PlainRecord, use_plain_records
from connectors.kafka_sink import DeliveryFailed, KafkaSink
from streamlearn.batch import RawBatch
from streamlearn.errors import StreamlearnError

__all__ = [
    "CommitFailed",
    "DeliveryFailed",
    "KafkaSink",
    "KafkaSource",
    "committed_offsets",
    "end_offsets",
    "ensure_topics",
    "read_all",
    "wait_for_broker",
]

Partitions = Callable[[list[tuple[str, int]]], None]
LAG_WARNING_INTERVAL_S = 60.0

log = logging.getLogger(__name__)


class CommitFailed(StreamlearnError):
    """The group rebalanced before the commit; the new owner re-reads those messages."""


class _RebalanceListener(ConsumerRebalanceListener):
    """Tells the source's owner about rebalances; re-pauses new partitions while paused."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        if self.source.on_revoke and revoked:
            self.source.on_revoke(sorted((tp.topic, tp.partition) for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.source.paused and assigned:
            self.source.consumer.pause(*assigned)
        # Told even of an empty assignment: a member with no partitions has still joined.
        if self.source.on_assign:
            self.source.on_assign(sorted((tp.topic, tp.partition) for tp in assigned))


class KafkaSource:
    """A consumer-group member that appends messages to a :class:`RawBatch`.

    Offsets are committed only by :meth:`commit`. Not thread-safe: use it from one thread.
    Keep calling :meth:`poll` while paused so the group does not evict this member.
    ``on_assign`` / ``on_revoke`` receive ``[(topic, partition), ...]`` during a rebalance,
    e.g. to :meth:`seek` to the offsets a restored model checkpoint covers. ``security``
    holds kafka-python's SASL and TLS keywords (``KafkaConfig.client_options()``).

    Examples
    --------
    >>> from connectors.embedded import EmbeddedBroker
    >>> with EmbeddedBroker() as broker:
    ...     ensure_topics(broker.bootstrap, ["clicks"])
    ...     with KafkaSink(broker.bootstrap) as sink:
    ...         sink.send("clicks", b'{"n": 1}', key=b"user-1")
    ...         sink.flush()
    ...     source = KafkaSource(broker.bootstrap, ["clicks"], "doc", session_timeout_ms=6000,
    ...                          heartbeat_interval_ms=500)
    ...     batch = RawBatch()
    ...     while not batch:
    ...         _ = source.poll(100, 0.5, batch)
    ...     source.commit(batch.commit_offsets)
    ...     source.close()
    ...     batch.values, committed_offsets(broker.bootstrap, "doc")
    ([b'{"n": 1}'], {('clicks', 0): 1})
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
        self.security = dict(security or {})
        self._lag_warned_at: float | None = None
        self.start = start
        self.paused = False
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        with connecting(bootstrap):
            self.consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=client_id,
                enable_auto_commit=False,
                auto_offset_reset=start,
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
                max_poll_records=max_poll_records,
                # Larger fetches: the batch, not the message, is the unit of work.
                max_partition_fetch_bytes=4 * 1024 * 1024,
                # The broker may hold a fetch this long waiting for data (Tansu always
                # does), so it bounds the latency an idle-then-busy partition adds.
                fetch_max_wait_ms=fetch_max_wait_ms,
                **self.security,
            )
        # Records as (offset, timestamp, key, value) tuples: a third of the hot path otherwise.
        self.plain_records = use_plain_records(self.consumer)
        self.consumer.subscribe(topics, listener=_RebalanceListener(self))

    def poll(self, max_records: int, timeout_s: float, into: RawBatch) -> int:
        """Append up to ``max_records`` messages to ``into``; return how many were appended."""
        if max_records <= 0:
            return 0
        timeout_ms = max(0, int(timeout_s * 1000))
        fetched = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        received = time.monotonic()
        count = 0
        for tp, records in fetched.items():
            if not self.plain_records:  # kafka-python's own ConsumerRecords
                records = [(r.offset, r.timestamp, r.key, r.value) for r in records]
            into.extend(_columns(tp.topic, tp.partition, records, received))
            count += len(records)
        return count

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the next offset to read per ``(topic, partition)``, synchronously."""
        if not offsets:
            return
        to_commit = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in offsets.items()
        }
        try:
            self.consumer.commit(to_commit)
        except CommitFailedError as error:
            raise CommitFailed(f"commit of {offsets} failed after a rebalance: {error}") from error
        except KafkaError as error:  # coordinator unavailable, request timed out, ...
            raise CommitFailed(f"commit of {offsets} failed: {error}") from error

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Read next from the given offset of each assigned ``(topic, partition)``."""
        for (topic, partition), offset in offsets.items():
            self.consumer.seek(TopicPartition(topic, partition), offset)

    def positions(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset each assigned partition would be read from.

        That is the group's commit, or where ``start`` says when the group has none.
        """
        out: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            position = self.consumer.position(TopicPartition(topic, partition), timeout_ms=10_000)
            if position is not None:
                out[(topic, partition)] = position
        return out

    def group_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The group's committed offset of each given partition that has one."""
        out: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            try:
                committed = self.consumer.committed(TopicPartition(topic, partition))
            except KafkaError as error:
                raise CommitFailed(f"reading the group's commit failed: {error}") from error
            if committed is not None:
                out[(topic, partition)] = committed
        return out

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition, including ones assigned later."""
        self.paused = True
        self.consumer.pause(*self.consumer.assignment())

    def resume_all(self) -> None:
        """Fetch again from every assigned partition."""
        self.paused = False
        self.consumer.resume(*self.consumer.assignment())

    def assignment_ready(self) -> bool:
        """Whether the group has given this member its partitions."""
        return bool(self.consumer.assignment())

    def lag(self) -> dict[int, int]:
        """Messages not yet read per partition number (summed over topics).

        While consuming, every fetch reports each partition's high watermark, so this costs no
        round-trip (a ListOffsets request only before the first fetch). While paused that value
        goes stale, so a short-lived reader fetches it (Tansu's ListOffsets is a lower bound).
        """
        assigned = list(self.consumer.assignment())
        if not assigned:
            return {}
        known = {tp: self.consumer.highwater(tp) for tp in assigned}
        try:
            if self.paused:
                ends = fresh_high_watermarks(
                    self.bootstrap, assigned, timeout_s=2.0, security=self.security
                )
            elif any(end is None for end in known.values()):
                ends = listed_end_offsets(self.consumer, assigned)
            else:
                ends = {}  # every fetch reports the high watermark: no round-trip needed
        except StreamlearnError as error:
            # Lag is a metric: report with what is known, and say why it may be stale.
            self._warn_lag_unknown(error)
            ends = {}
        out: dict[int, int] = {}
        for tp in assigned:
            position = self.consumer.position(tp, timeout_ms=1000)
            if position is None:
                continue
            end = max(ends.get(tp, 0), known[tp] or 0)
            out[tp.partition] = out.get(tp.partition, 0) + max(0, end - position)
        return out

    def _warn_lag_unknown(self, error: StreamlearnError) -> None:
        now = time.monotonic()
        if self._lag_warned_at is not None and now - self._lag_warned_at < LAG_WARNING_INTERVAL_S:
            return
        self._lag_warned_at = now
        log.warning(
            "consumer lag from Kafka at %s may be stale (end offsets unavailable: %s)",
            self.bootstrap,
            error,
        )

    def close(self) -> None:
        """Leave the group (its partitions move to the other members at once)."""
        self.consumer.close(autocommit=False)


def _columns(topic: str, partition: int, records: list[PlainRecord], received: float) -> RawBatch:
    n = len(records)
    if not n:
        return RawBatch()
    offsets, timestamps, keys, values = (list(map(itemgetter(i), records)) for i in range(4))
    return RawBatch(
        [topic] * n,
        [partition] * n,
        offsets,
        keys,
        values,
        timestamps,
        [received] * n,
        sum(map(len, filter(None, values))),
    )
