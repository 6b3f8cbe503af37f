"""Fetched Kafka records as plain tuples, read without kafka-python's per-record objects.

kafka-python turns each fetched record into a ``DefaultRecord`` and then a 13-field
``ConsumerRecord``, decoding six varints through function calls on the way: at large batches
that is the largest single cost of the hot path (a third of the pipeline thread, profiled in
``benchmarks/results/hotpath.md``). :func:`read_records` reads a v2 record batch's records in
one loop into ``(offset, timestamp, key, value)`` tuples, and :func:`use_plain_records` makes a
consumer's fetcher yield those instead.

Everything else stays kafka-python's: fetching, positions, pausing, the batch checksum,
decompression, control batches and aborted transactions. Headers are checked and dropped (the
engine does not use them). The fetcher's record reader is an internal of kafka-python 3.0, so
:func:`use_plain_records` checks the version and the hooks it needs, and leaves the consumer as
it is (returning False) when they differ. Only ``poll`` serves tuples: iterating the consumer
(``for record in consumer``) reads ``ConsumerRecord`` attributes, and the engine never does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import kafka
from kafka.errors import CorruptRecordError

__all__ = ["PlainRecord", "read_records", "use_plain_records"]

log = logging.getLogger(__name__)

PlainRecord = tuple[int, int, bytes | None, bytes | None]
"""``(offset, timestamp_ms, key, value)`` of one fetched record."""

_SUPPORTED_SERIES = "3.0."


def _varint(buffer: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint at ``pos`` and the position after it (any length up to 64 bits)."""
    result = 0
    shift = 0
    while True:
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift >= 64:
            raise ValueError("varint out of int64 range")


def read_records(
    buffer: bytes,
    pos: int,
    count: int,
    base_offset: int,
    first_timestamp: int,
    log_append_time: int | None = None,
) -> list[PlainRecord]:
    """Read the ``count`` records of a v2 record batch that start at ``pos`` in ``buffer``.

    ``buffer`` holds the batch's (uncompressed) records section; ``log_append_time`` is the
    batch's max timestamp when the broker stamps records (their own deltas are then ignored).
    Raises :class:`kafka.errors.CorruptRecordError` on any structure that does not add up,
    as kafka-python's reader does.

    Examples
    --------
    >>> from kafka.record.default_records import DefaultRecordBatchBuilder
    >>> builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
    ...     producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 16)
    >>> _ = builder.append(0, timestamp=1_700_000_000_000, key=b"k", value=b'{"a": 1}',
    ...                    headers=[])
    >>> _ = builder.append(1, timestamp=1_700_000_000_005, key=None, value=None,
    ...                    headers=[("h", b"v")])
    >>> raw = bytes(builder.build())
    >>> read_records(raw, 61, 2, base_offset=40, first_timestamp=1_700_000_000_000)
    [(40, 1700000000000, b'k', b'{"a": 1}'), (41, 1700000000005, None, None)]
    """
    out: list[PlainRecord] = []
    append = out.append
    end = len(buffer)
    # Each varint below is decoded in line when it takes one or two bytes (a zigzag value
    # within +-8191, which covers a record's length, deltas and sizes up to 8 KiB), and by
    # _varint otherwise: a function call per field would cost more than the rest of the loop.
    try:
        for _ in range(count):
            b = buffer[pos]
            if b < 0x80:
                length, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buffer[pos + 1] < 0x80:
                r = (b & 0x7F) | (buffer[pos + 1] << 7)
                length, pos = (r >> 1) ^ -(r & 1), pos + 2
            else:
                length, pos = _varint(buffer, pos)
            start = pos
            pos = pos + 1 if buffer[pos] < 0x80 else _varint(buffer, pos)[1]  # attributes: unused
            b = buffer[pos]
            if b < 0x80:
                ts_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buffer[pos + 1] < 0x80:
                r = (b & 0x7F) | (buffer[pos + 1] << 7)
                ts_delta, pos = (r >> 1) ^ -(r & 1), pos + 2
            else:
                ts_delta, pos = _varint(buffer, pos)
            b = buffer[pos]
            if b < 0x80:
                offset_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buffer[pos + 1] < 0x80:
                r = (b & 0x7F) | (buffer[pos + 1] << 7)
                offset_delta, pos = (r >> 1) ^ -(r & 1), pos + 2
            else:
                offset_delta, pos = _varint(buffer, pos)
            b = buffer[pos]
            if b < 0x80:
                size, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buffer[pos + 1] < 0x80:
                r = (b & 0x7F) | (buffer[pos + 1] << 7)
                size, pos = (r >> 1) ^ -(r & 1), pos + 2
            else:
                size, pos = _varint(buffer, pos)
            key: bytes | None = None
            if size >= 0:
                key = buffer[pos : pos + size]
                pos += size
            b = buffer[pos]
            if b < 0x80:
                size, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buffer[pos + 1] < 0x80:
                r = (b & 0x7F) | (buffer[pos + 1] << 7)
                size, pos = (r >> 1) ^ -(r & 1), pos + 2
            else:
                size, pos = _varint(buffer, pos)
            value: bytes | None = None
            if size >= 0:
                value = buffer[pos : pos + size]
                pos += size
            if buffer[pos]:  # headers: read past them
                headers, pos = _varint(buffer, pos)
                pos = _skip_headers(buffer, pos, headers)
            else:
                pos += 1
            if pos - start != length or pos > end:
                raise CorruptRecordError(
                    f"Invalid record size: expected to read {length} bytes in record "
                    f"payload, but instead read {pos - start}"
                )
            append((base_offset + offset_delta, first_timestamp + ts_delta, key, value))
    except (ValueError, IndexError) as error:
        raise CorruptRecordError(f"Found invalid record structure: {error!r}") from error
    if pos != end:
        raise CorruptRecordError(f"{end - pos} unconsumed bytes after all records consumed")
    if log_append_time is not None:
        return [(offset, log_append_time, key, value) for offset, _, key, value in out]
    return out


def _skip_headers(buffer: bytes, pos: int, count: int) -> int:
    if count < 0:
        raise CorruptRecordError(f"Found invalid number of record headers {count}")
    for _ in range(count):
        size, pos = _varint(buffer, pos)
        if size < 0:
            raise CorruptRecordError(f"Invalid negative header key size {size}")
        buffer[pos : pos + size].decode()  # a key that is not UTF-8 is corrupt, as for kafka-python
        pos += size
        size, pos = _varint(buffer, pos)
        if size > 0:
            pos += size
    return pos


def use_plain_records(consumer: Any) -> bool:
    """Make ``consumer.poll`` return :data:`PlainRecord` tuples; False where it cannot.

    It cannot when kafka-python is not a 3.0 release, or the consumer deserializes keys or
    values; the consumer then keeps returning ``ConsumerRecord`` objects.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    config = getattr(fetcher, "config", None) or {}
    if (
        _PlainPartitionRecords is None
        or fetcher is None
        or config.get("key_deserializer") is not None
        or config.get("value_deserializer") is not None
    ):
        log.info("reading Kafka records through kafka-python %s's own reader", kafka.__version__)
        return False
    fetcher.PartitionRecords = _PlainPartitionRecords
    return True


def _plain_partition_records() -> type | None:
    from kafka.consumer.fetcher import Fetcher

    base = getattr(Fetcher, "PartitionRecords", None)
    needed = ("_unpack_records", "_maybe_skip_record", "take", "drain")
    if not kafka.__version__.startswith(_SUPPORTED_SERIES) or base is None:
        return None
    if not all(hasattr(base, name) for name in needed):
        return None

    class PlainPartitionRecords(base):  # type: ignore[misc, valid-type]
        """kafka-python's ``PartitionRecords``, yielding :data:`PlainRecord` tuples.

        The base class advances ``next_fetch_offset`` record by record as it yields; here a
        batch's records are read at once, so :meth:`take` advances it past what it returns.
        """

        fetch_offset: int
        next_fetch_offset: int

        def _maybe_skip_record(self, record: PlainRecord) -> bool:
            # Records before the fetch offset come back when the fetch starts mid-batch.
            return record[0] < self.fetch_offset

        def take(self, n: int | None = None) -> list[PlainRecord]:
            records: list[PlainRecord] = super().take(n)
            if records and records[-1][0] >= self.next_fetch_offset:
                self.next_fetch_offset = records[-1][0] + 1
            return records

        def _unpack_records(
            self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
        ) -> Iterator[PlainRecord]:
            try:
                batch = records.next_batch()
                last_batch = None
                while batch is not None:
                    last_batch = batch
                    if self.check_crcs and not batch.validate_crc():
                        raise CorruptRecordError(
                            f"Record batch for partition {self.topic_partition} at offset "
                            f"{batch.base_offset} failed crc check"
                        )
                    if batch.magic == 2:
                        if self._skips(batch):
                            self.next_fetch_offset = batch.next_offset
                            batch = records.next_batch()
                            continue
                        yield from self._read_v2(batch)
                    else:
                        yield from self._read_legacy(batch)
                    batch = records.next_batch()
                if last_batch is not None and last_batch.magic == 2:
                    # Compaction may have removed the batch's last records: go past them.
                    self.next_fetch_offset = last_batch.next_offset
                self.drain()
            except StopIteration as error:  # would end the generator silently
                raise RuntimeError("StopIteration raised unpacking messageset") from error

        def _skips(self, batch: Any) -> bool:
            """Whether a v2 batch is a control batch or an aborted transaction's (as the base)."""
            self.leader_epoch = batch.leader_epoch
            if self.isolation_level == _READ_COMMITTED and batch.has_producer_id():
                self._consume_aborted_transactions_up_to(batch.last_offset)
                if self._contains_abort_marker(batch):
                    self.aborted_producer_ids.discard(batch.producer_id)
                elif self._is_batch_aborted(batch):
                    return True
            return bool(batch.is_control_batch)

        def _read_v2(self, batch: Any) -> list[PlainRecord]:
            batch._maybe_uncompress()
            buffer = bytes(batch._buffer)
            stamped = batch.max_timestamp if batch.timestamp_type == batch.LOG_APPEND_TIME else None
            out = read_records(
                buffer,
                batch._pos,
                batch.records_count,
                batch.base_offset,
                batch.first_timestamp,
                stamped,
            )
            self.records_read += len(out)
            self.bytes_read += len(buffer)
            return out

        def _read_legacy(self, batch: Any) -> Iterator[PlainRecord]:
            for record in batch:
                if self.check_crcs and not record.validate_crc():
                    raise CorruptRecordError(
                        f"Record for partition {self.topic_partition} at offset "
                        f"{record.offset} failed crc check"
                    )
                self.records_read += 1
                self.bytes_read += record.size_in_bytes
                yield (record.offset, record.timestamp, record.key, record.value)

    return PlainPartitionRecords


try:
    from kafka.consumer.fetcher import IsolationLevel

    _READ_COMMITTED: Any = IsolationLevel.READ_COMMITTED
    _PlainPartitionRecords = _plain_partition_records()
except ImportError:  # another kafka-python layout: keep its reader
    _READ_COMMITTED = None
    _PlainPartitionRecords = None
