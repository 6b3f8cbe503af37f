"""A batch of raw messages as the source delivered them, kept as parallel columns.

Sources append to a :class:`RawBatch`; the pipeline decodes it once; the runner commits the
offsets it records. No per-message objects are created on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_COLUMNS = ("topics", "partitions", "offsets", "keys", "values", "timestamps_ms", "received")


@dataclass(slots=True)
class RawBatch:
    """Messages in arrival order, as columns, plus the offsets to commit once they are done.

    ``received`` holds the monotonic time at which each message reached the process; the
    batcher closes a batch before its oldest message misses the latency target.

    Examples
    --------
    >>> b = RawBatch()
    >>> b.append("t", 0, 41, b"k", b'{"a": 1}', 1_700_000_000_000, received=5.0)
    >>> b.append("t", 0, 42, None, b"{}", 1_700_000_000_001, received=5.1)
    >>> len(b), b.commit_offsets, b.oldest_received, b.nbytes
    (2, {('t', 0): 43}, 5.0, 10)
    >>> head = b.take(1)
    >>> len(head), len(b), head.commit_offsets, b.commit_offsets
    (1, 1, {('t', 0): 42}, {('t', 0): 43})
    """

    topics: list[str] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    received: list[float] = field(default_factory=list)
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.values)

    def append(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
        received: float,
    ) -> None:
        """Add one message at the end."""
        self.topics.append(topic)
        self.partitions.append(partition)
        self.offsets.append(offset)
        self.keys.append(key)
        self.values.append(value)
        self.timestamps_ms.append(timestamp_ms)
        self.received.append(received)
        self.nbytes += len(value) if value else 0

    def extend(self, other: RawBatch) -> None:
        """Add all of ``other``'s messages at the end."""
        self.topics += other.topics
        self.partitions += other.partitions
        self.offsets += other.offsets
        self.keys += other.keys
        self.values += other.values
        self.timestamps_ms += other.timestamps_ms
        self.received += other.received
        self.nbytes += other.nbytes

    def take(self, n: int) -> RawBatch:
        """Remove and return the first ``n`` messages (all of them if fewer are buffered)."""
        head = RawBatch()
        for name in _COLUMNS:
            column = getattr(self, name)
            setattr(head, name, column[:n])
            del column[:n]
        head.nbytes = sum(len(v) for v in head.values if v)
        self.nbytes -= head.nbytes
        return head

    @property
    def oldest_received(self) -> float | None:
        """Arrival time of the first buffered message, or ``None`` when empty."""
        return self.received[0] if self.received else None

    @property
    def commit_offsets(self) -> dict[tuple[str, int], int]:
        """Next offset to commit per ``(topic, partition)``: one past the last message seen."""
        # A partition's messages arrive in offset order, so its last one is its highest (and
        # the last of a key's pairs is the one dict() keeps).
        last = dict(zip(zip(self.topics, self.partitions), self.offsets))
        return {tp: offset + 1 for tp, offset in last.items()}

    def drop_partitions(self, partitions: set[tuple[str, int]]) -> int:
        """Remove every message of the given ``(topic, partition)`` pairs; return how many.

        >>> b = RawBatch()
        >>> for p in (0, 1, 0):
        ...     b.append("t", p, 7, None, b"x", 0, received=0.0)
        >>> b.drop_partitions({("t", 0)}), b.partitions, b.nbytes
        (2, [1], 1)
        """
        keep = [i for i, tp in enumerate(zip(self.topics, self.partitions)) if tp not in partitions]
        dropped = len(self) - len(keep)
        if dropped:
            for name in _COLUMNS:
                column = getattr(self, name)
                setattr(self, name, [column[i] for i in keep])
            self.nbytes = sum(len(v) for v in self.values if v)
        return dropped

    def first_offsets(self) -> dict[tuple[str, int], int]:
        """Offset of the first buffered message per ``(topic, partition)``.

        >>> b = RawBatch()
        >>> for p, o in ((0, 7), (1, 3), (0, 8)):
        ...     b.append("t", p, o, None, b"x", 0, received=0.0)
        >>> b.first_offsets()
        {('t', 0): 7, ('t', 1): 3}
        """
        # Read backwards, each partition's first message is the last of its pairs: dict() keeps it.
        pairs = zip(zip(reversed(self.topics), reversed(self.partitions)), reversed(self.offsets))
        return dict(pairs)
