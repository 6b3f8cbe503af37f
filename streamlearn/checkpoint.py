"""Model checkpoints: the model as learned up to given offsets, saved often, restored at start.

A checkpoint pairs the model with the offsets it has learned up to. Restoring it and reading on
from those offsets (not from the consumer group's commits, which may be ahead) means no event is
learned twice or skipped across a crash.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

Offsets = dict[tuple[str, int], int]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A model, its version, the next offset to learn per partition, and when it was taken.

    Examples
    --------
    >>> c = Checkpoint(model=b"m", version=3, offsets={("t", 0): 10}, written_at=1.5,
    ...                fingerprint="ab12")
    >>> Checkpoint.from_fields(c.to_fields()) == c
    True
    """

    model: bytes
    version: int
    offsets: Offsets
    written_at: float
    fingerprint: str = ""

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
            "fingerprint": self.fingerprint.encode(),
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
            fingerprint=get.get("fingerprint", b"").decode(),
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
    """Saves the model with the offsets it learned up to, every ``interval_s``, and restores it.

    ``fingerprint`` identifies the schema and model configuration: a checkpoint taken under
    another one (features or estimator changed) is not restored, since the model would not fit.

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
    >>> cp = Checkpointer(store, holder, interval_s=10, fingerprint="v1", clock=lambda: now[0],
    ...                   wall=lambda: 100.0)
    >>> cp.due()
    False
    >>> now[0] = 11.0
    >>> cp.due(), cp.save({("t", 0): 5}, version=2).offsets, cp.due()
    (True, {('t', 0): 5}, False)
    >>> holder.model = None
    >>> cp.restore().version, holder.model
    (2, {'weights': [1.0]})
    >>> Checkpointer(store, holder, 10, fingerprint="v2").restore() is None  # config changed
    True
    """

    def __init__(
        self,
        store: CheckpointStore,
        holder: Any,
        interval_s: float,
        fingerprint: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.holder = holder  # anything with a picklable ``model`` attribute (the Pipeline)
        self.interval_s = interval_s
        self.fingerprint = fingerprint
        self.clock = clock
        self.wall = wall
        self._due = clock() + interval_s

    def due(self) -> bool:
        """Whether ``interval_s`` has passed since the last save (or attempt)."""
        return self.clock() >= self._due

    def save(self, offsets: Offsets, version: int) -> Checkpoint:
        """Save the model as it is now, as having learned up to ``offsets``."""
        self._due = self.clock() + self.interval_s  # a failed attempt waits a full interval too
        checkpoint = Checkpoint(
            model=pickle.dumps(self.holder.model, protocol=pickle.HIGHEST_PROTOCOL),
            version=version,
            offsets=dict(offsets),
            written_at=self.wall(),
            fingerprint=self.fingerprint,
        )
        self.store.save(checkpoint)
        return checkpoint

    def restore(self) -> Checkpoint | None:
        """Load the stored checkpoint into the holder; ``None`` when there is none that fits."""
        checkpoint = self.store.load()
        if checkpoint is None:
            return None
        if checkpoint.fingerprint != self.fingerprint:
            log.warning(
                "the stored checkpoint was taken under another schema or model configuration; "
                "starting with a fresh model"
            )
            return None
        # The store is the operator's own Redis: a checkpoint is trusted like the config file.
        self.holder.model = pickle.loads(checkpoint.model)
        return checkpoint


def fingerprint(*parts: str) -> str:
    """A short stable digest of configuration text.

    >>> fingerprint("a", "b") == fingerprint("a", "b") != fingerprint("a", "c")
    True
    """
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
