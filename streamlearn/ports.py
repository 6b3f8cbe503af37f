"""What the pipeline runner needs of the outside: a source of messages and a writer of outputs.

:mod:`connectors` implements them against Kafka and Redis; the unit tests against in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from streamlearn.batch import RawBatch

__all__ = ["OutputWriter", "SendsAhead", "Source"]


class Source(Protocol):
    """Where messages come from; offsets are committed explicitly."""

    def poll(self, max_records: int, timeout_s: float, into: RawBatch) -> int:
        """Append up to ``max_records`` messages to ``into``, waiting at most ``timeout_s``."""
        ...

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the next offset to read per ``(topic, partition)``."""
        ...

    def pause_all(self) -> None:
        """Stop fetching (outputs are behind)."""
        ...

    def resume_all(self) -> None:
        """Fetch again."""
        ...

    def lag(self) -> dict[int, int]:
        """Messages not yet read, per partition."""
        ...

    def close(self) -> None:
        """Leave the consumer group."""
        ...

    def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        """Read the given partitions next from the given offsets."""
        ...

    def positions(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset each given partition would be read from."""
        ...

    def group_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The consumer group's committed offsets of the given partitions."""
        ...


class OutputWriter(Protocol):
    """Where a scored batch goes: predictions and dead letters, durably, before commit."""

    def write(self, scored: Any) -> None:
        """Write everything or raise; may be called again for the same batch after a failure."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class SendsAhead(Protocol):
    """Outputs that can send a batch's last write and wait for it after learning the batch."""

    def begin(self, scored: Any) -> Callable[[], None]:
        """Write what learning needs; send the rest; return the wait for it (see BatchOutputs)."""
        ...
