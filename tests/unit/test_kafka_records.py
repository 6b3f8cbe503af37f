"""connectors.kafka_records against kafka-python's own reader, on the same fetched bytes.

Every case builds record batches with kafka-python's builders (or alters their attributes and
checksum the way a broker would have written them), reads them once through kafka-python's
``PartitionRecords`` and once through the plain reader, taking a few records at a time, and
compares what each take returns and where each leaves the next fetch offset: that offset is
what the fetcher turns into the consumer's position, and so into what the engine commits.
"""

from __future__ import annotations

import random
import struct
from collections import namedtuple
from itertools import cycle
from typing import Any

import kafka
import pytest
from kafka.consumer.fetcher import Fetcher, IsolationLevel
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.record.util import calc_crc32c
from kafka.structs import TopicPartition

from connectors.kafka_records import _PlainPartitionRecords, read_records, use_plain_records

TP = TopicPartition("events", 0)
T0 = 1_700_000_000_000
Aborted = namedtuple("Aborted", "producer_id first_offset")

LOG_APPEND_TIME = 0x08
CONTROL = 0x20
GZIP = 0x01


def v2_batch(
    base_offset: int,
    records: list[tuple[int, Any, Any, list[tuple[str, bytes | None]]]],
    *,
    compression: int = 0,
    producer_id: int = -1,
    transactional: bool = False,
    set_attributes: int = 0,
    log_append_time: int | None = None,
) -> bytes:
    """A v2 batch of ``(timestamp, key, value, headers)`` records, offsets from ``base_offset``.

    ``set_attributes`` ORs bits into the batch attributes (control, log-append time) and
    re-seals the checksum, as a broker writes such batches.
    """
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1,
        batch_size=1 << 22,
    )
    for delta, (timestamp, key, value, headers) in enumerate(records):
        assert builder.append(delta, timestamp=timestamp, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base_offset)
    if set_attributes or log_append_time is not None:
        offset = DefaultRecordBatch.ATTRIBUTES_OFFSET
        (attributes,) = struct.unpack_from(">h", data, offset)
        if log_append_time is not None:
            set_attributes |= LOG_APPEND_TIME
            struct.pack_into(">q", data, offset + 2 + 4 + 8, log_append_time)  # max timestamp
        struct.pack_into(">h", data, offset, attributes | set_attributes)
        struct.pack_into(">I", data, offset - 4, calc_crc32c(memoryview(data)[offset:]))
    return bytes(data)


def legacy_batch(magic: int, base_offset: int, values: list[bytes]) -> bytes:
    builder = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
    for i, value in enumerate(values):
        builder.append(base_offset + i, timestamp=T0 + i if magic else None, key=b"k", value=value)
    return bytes(builder.build())


def control_batch(base_offset: int, producer_id: int, *, abort: bool) -> bytes:
    marker = struct.pack(">hh", 0, 0 if abort else 1)
    return v2_batch(
        base_offset,
        [(T0, marker, b"\x00\x00\x00\x00\x00\x00", [])],
        producer_id=producer_id,
        transactional=True,
        set_attributes=CONTROL,
    )


def plain(record: Any) -> tuple[int, int, Any, Any]:
    if type(record) is tuple:
        return record
    return (record.offset, record.timestamp, record.key, record.value)


def read_with(
    cls: type, data: bytes, fetch_offset: int, sizes: list[int], **options: Any
) -> list[Any]:
    """Each take's records (as tuples) and the next fetch offset after it, until drained."""
    part = cls(fetch_offset, TP, MemoryRecords(data), **options)
    steps: list[Any] = []
    for n in cycle(sizes):
        try:
            taken = part.take(n)
        except Exception as error:  # the step records which error, compared below
            steps.append(("raised", type(error).__name__))
            break
        steps.append(([plain(r) for r in taken], part.next_fetch_offset, bool(part)))
        if not part or len(steps) > 10_000:
            break
    return steps


def same_as_kafka_python(data: bytes, fetch_offset: int, sizes: list[int], **options: Any) -> None:
    assert _PlainPartitionRecords is not None
    expected = read_with(Fetcher.PartitionRecords, data, fetch_offset, sizes, **options)
    assert read_with(_PlainPartitionRecords, data, fetch_offset, sizes, **options) == expected
    assert expected and expected[-1][0] != "raised"


def mixed_records(rng: random.Random, n: int) -> list[Any]:
    out = []
    t = T0
    for i in range(n):
        t += rng.choice([0, 1, 3, 70, 9_000, 5_000_000, -40])  # one to four varint bytes
        key = rng.choice(
            [None, b"", f"c{i}".encode(), bytes(rng.randrange(256) for _ in range(90))]
        )
        size = rng.choice([0, 5, 63, 64, 233, 8_191, 8_193, 70_000])
        value = rng.choice([None, rng.randbytes(size)])
        headers = rng.choice([[], [], [("trace", b"abc")], [("a", None), ("bé", b"")]])
        out.append((t, key, value, headers))
    return out


def test_the_plain_reader_is_in_use_with_the_pinned_kafka_python() -> None:
    # Falling back is safe but slow: a kafka-python release that changes the fetcher shows here.
    assert kafka.__version__.startswith("3.0.")
    assert _PlainPartitionRecords is not None


@pytest.mark.parametrize("seed", range(6))
def test_mixed_batches_read_the_same_in_any_take_sizes(seed: int) -> None:
    rng = random.Random(seed)
    data = b""
    offset = 100
    for _ in range(5):
        n = rng.choice([1, 2, 70, 300])
        data += v2_batch(offset, mixed_records(rng, n), compression=rng.choice([0, 0, GZIP]))
        offset += n + rng.choice([0, 0, 3])  # a gap, as compaction leaves
    for sizes in ([1], [7, 1, 500], [5_000]):
        for fetch_offset in (100, 101, 150, offset - 1):
            same_as_kafka_python(data, fetch_offset, sizes)


def test_offsets_past_a_batchs_last_record_come_from_its_header() -> None:
    # Compaction removed the batch's last records: its header still says where it ends.
    data = bytearray(v2_batch(10, [(T0, b"k", b"v", [])] * 3))
    struct.pack_into(">i", data, DefaultRecordBatch.ATTRIBUTES_OFFSET + 2, 9)  # last offset delta
    offset = DefaultRecordBatch.ATTRIBUTES_OFFSET
    struct.pack_into(">I", data, offset - 4, calc_crc32c(memoryview(data)[offset:]))
    same_as_kafka_python(bytes(data), 10, [2])
    assert read_with(_PlainPartitionRecords, bytes(data), 10, [5])[-1][1:] == (20, False)


def test_log_append_time_stamps_every_record_with_the_batchs_time() -> None:
    data = v2_batch(0, [(T0 + i, None, b"x", []) for i in range(5)], log_append_time=T0 + 999)
    same_as_kafka_python(data, 0, [2])
    assert {r[1] for r in read_with(_PlainPartitionRecords, data, 0, [9])[0][0]} == {T0 + 999}


def test_control_batches_and_aborted_transactions_are_skipped_as_kafka_python_does() -> None:
    data = (
        v2_batch(0, [(T0, None, b"plain", [])] * 3)
        + v2_batch(3, [(T0, None, b"aborted", [])] * 2, producer_id=7, transactional=True)
        + control_batch(5, 7, abort=True)
        + v2_batch(6, [(T0, None, b"kept", [])] * 2, producer_id=8, transactional=True)
        + control_batch(8, 8, abort=False)
        + v2_batch(9, [(T0, None, b"after", [])])
    )
    for level, aborted in (
        (IsolationLevel.READ_UNCOMMITTED, None),
        (IsolationLevel.READ_COMMITTED, [Aborted(7, 3)]),
    ):
        options = {"isolation_level": level, "aborted_transactions": aborted}
        for sizes in ([1], [3], [100]):
            same_as_kafka_python(data, 0, sizes, **options)
    committed = read_with(
        _PlainPartitionRecords,
        data,
        0,
        [100],
        isolation_level=IsolationLevel.READ_COMMITTED,
        aborted_transactions=[Aborted(7, 3)],
    )
    assert [r[3] for r in committed[0][0]] == [b"plain"] * 3 + [b"kept"] * 2 + [b"after"]


@pytest.mark.parametrize("magic", [0, 1])
def test_legacy_message_sets_read_as_kafka_python_reads_them(magic: int) -> None:
    data = legacy_batch(magic, 0, [b"a", b"bb", b""]) + legacy_batch(magic, 3, [b"c"])
    same_as_kafka_python(data, 0, [2])
    same_as_kafka_python(data, 1, [1])


def test_a_checksum_failure_raises_as_kafka_pythons() -> None:
    data = bytearray(v2_batch(0, [(T0, None, b"value", [])] * 4))
    data[-3] ^= 0xFF
    expected = read_with(Fetcher.PartitionRecords, bytes(data), 0, [10])
    assert expected == [("raised", "CorruptRecordError")]
    assert read_with(_PlainPartitionRecords, bytes(data), 0, [10]) == expected


def test_corrupt_record_structure_raises_corrupt_record_error_only() -> None:
    # Bytes flipped past the checksum (check_crcs off, as a broker bug would look): the reader
    # reads what kafka-python reads, or fails where it fails, with CorruptRecordError.
    rng = random.Random(3)
    clean = v2_batch(0, mixed_records(rng, 20))
    agreed = 0
    for _ in range(400):
        data = bytearray(clean)
        for _ in range(rng.choice([1, 2, 4])):
            data[rng.randrange(DefaultRecordBatch.HEADER_STRUCT.size, len(data))] = rng.randrange(
                256
            )
        ours = read_with(_PlainPartitionRecords, bytes(data), 0, [50], check_crcs=False)
        theirs = read_with(Fetcher.PartitionRecords, bytes(data), 0, [50], check_crcs=False)
        assert ours[-1][0] != "raised" or ours[-1] == ("raised", "CorruptRecordError")
        if theirs[-1][0] != "raised":
            assert ours == theirs
            agreed += 1
        else:
            # Both fail; kafka-python first hands over the batch's records before the bad one.
            assert ours[-1][0] == "raised"
            read = [r for step in ours[:-1] for r in step[0]]
            assert read == [r for step in theirs[:-1] for r in step[0]][: len(read)]
    assert agreed > 0


def test_read_records_rejects_trailing_and_missing_bytes() -> None:
    data = v2_batch(0, [(T0, None, b"abc", [])] * 2)
    start = DefaultRecordBatch.HEADER_STRUCT.size
    assert len(read_records(data, start, 2, 0, T0)) == 2
    with pytest.raises(CorruptRecordError, match="unconsumed"):
        read_records(data + b"\x00", start, 2, 0, T0)
    with pytest.raises(CorruptRecordError):
        read_records(data[:-2], start, 2, 0, T0)
    with pytest.raises(CorruptRecordError):
        read_records(data, start, 3, 0, T0)


def test_consumers_that_deserialize_keep_kafka_pythons_records() -> None:
    class Consumer:
        class _fetcher:  # noqa: N801 - stands in for kafka-python's attribute
            config = {"key_deserializer": bytes.decode, "value_deserializer": None}

    assert use_plain_records(Consumer()) is False
    assert "PartitionRecords" not in vars(Consumer._fetcher)
