"""Model checkpoints: the model as learned up to given offsets, saved often, restored at start.

A checkpoint pairs the model with the offsets it has learned up to. Restoring it and reading on
from those offsets (not from the consumer group's commits, which may be ahead) means no event is
learned twice or skipped across a crash.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

Offsets = dict[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A model, its version, the next offset to learn per partition, and when it was taken.

    Examples
    --------
    >>> c = Checkpoint(model=b"m", version=3, offsets={("t", 0): 10}, written_at=1.5)
    >>> Checkpoint.from_fields(c.to_fields()) == c
    True
    """

    model: bytes
    version: int
    offsets: Offsets
    written_at: float

    def to_fields(self) -> dict[str, bytes]:
        """The checkpoint as flat byte fields, e.g. for one Redis hash."""
        offsets = [
            [topic, partition, offset] for (topic, partition), offset in self.offsets.items()
        ]
        return {
            "model": self.model,
            "version": str(self.version).encode(),
            "offsets": orjson.dumps(offsets),
            "written_at": repr(self.written_at).encode(),
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes] | dict[str, bytes]) -> Checkpoint:
        """Inverse of :meth:`to_fields` (keys may be bytes, as Redis returns them)."""
        get: dict[str, bytes] = {
            (k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()
        }
        offsets = {(t, int(p)): int(o) for t, p, o in orjson.loads(get["offsets"])}
        return cls(
            model=get["model"],
            version=int(get["version"]),
            offsets=offsets,
            written_at=float(get["written_at"]),
        )


class CheckpointStore(Protocol):
    """Where one pipeline's latest checkpoint lives."""

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the stored checkpoint, atomically."""
        ...

    def load(self) -> Checkpoint | None:
        """The stored checkpoint, if any."""
        ...


class Checkpointer:
    """Tracks what the model has learned up to and checkpoints it every ``interval_s``.

    Examples
    --------
    >>> class Memory:
    ...     saved = None
    ...     def save(self, c): self.saved = c
    ...     def load(self): return self.saved
    >>> class Holder:
    ...     model = {"weights": [1.0]}
    >>> now = [0.0]
    >>> store, holder = Memory(), Holder()
    >>> cp = Checkpointer(store, holder, interval_s=10, clock=lambda: now[0],
    ...                   wall=lambda: 100.0)
    >>> cp.learned({("t", 0): 5}, version=1) is None   # not due yet
    True
    >>> now[0] = 11.0
    >>> cp.learned({("t", 1): 7}, version=2).offsets
    {('t', 0): 5, ('t', 1): 7}
    >>> holder.model = None
    >>> cp.restore().version, holder.model
    (2, {'weights': [1.0]})
    """

    def __init__(
        self,
        store: CheckpointStore,
        holder: Any,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.holder = holder  # anything with a picklable ``model`` attribute (the Pipeline)
        self.interval_s = interval_s
        self.clock = clock
        self.wall = wall
        self.offsets: Offsets = {}
        self._due = clock() + interval_s
        self._dirty = False

    def learned(self, offsets: Offsets, version: int) -> Checkpoint | None:
        """The model has learned up to ``offsets``; save a checkpoint if one is due."""
        self.offsets.update(offsets)
        self._dirty = True
        if self.clock() < self._due:
            return None
        return self.save(version)

    def save(self, version: int) -> Checkpoint | None:
        """Save a checkpoint now if anything was learned since the last one."""
        if not self._dirty:
            return None
        checkpoint = Checkpoint(
            model=pickle.dumps(self.holder.model, protocol=pickle.HIGHEST_PROTOCOL),
            version=version,
            offsets=dict(self.offsets),
            written_at=self.wall(),
        )
        self.store.save(checkpoint)
        self._due = self.clock() + self.interval_s
        self._dirty = False
        return checkpoint

    def restore(self) -> Checkpoint | None:
        """Load the stored checkpoint into the holder; return it (``None`` when there is none)."""
        checkpoint = self.store.load()
        if checkpoint is None:
            return None
        # The store is the operator's own Redis: a checkpoint is trusted like the config file.
        self.holder.model = pickle.loads(checkpoint.model)
        self.offsets = dict(checkpoint.offsets)
        return checkpoint

    def resume_from(
        self, partitions: list[tuple[str, int]]
    ) -> tuple[Offsets, list[tuple[str, int]]]:
        """Where to read newly assigned partitions: offsets the checkpoint covers, and the rest.

        The rest are partitions this model never learned from; they are read from their start,
        whatever the group committed for them.
        """
        covered = {tp: self.offsets[tp] for tp in partitions if tp in self.offsets}
        return covered, [tp for tp in partitions if tp not in self.offsets]
