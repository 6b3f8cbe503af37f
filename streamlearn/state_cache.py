"""Keeps the entity states this process wrote in memory, so the next batch need not read them.

Reading an entity's aggregate state back from Redis and parsing it cost about a third of the
retention pipeline's time, although the state is the one this process wrote a moment ago.
While a process owns a partition nobody else writes its entities' states, so the copy it keeps
is the stored one.

Writes go through to the store at once, or, with ``write_behind``, at the next :meth:`flush`.
The processor flushes first thing in every checkpoint save (on its interval, on a rebalance, at
shutdown), and offsets are committed only after a checkpoint: whatever a restart or another
process replays from the committed offsets, the stored states are at least that far, and the
offsets each state records keep a replayed event from counting twice. Writing an entity once
per checkpoint rather than once per batch saves most of the serialising and Redis writes.

A copy is dropped when it may no longer be the stored one:

* its entity has events of a partition that was revoked or assigned (another process may have
  written the state meanwhile); the runner reports both from Kafka's rebalance thread, so they
  are queued and applied by the pipeline thread at its next read;
* it is older than the store's TTL (the stored state would have expired);
* it is the least recently used beyond ``capacity`` entities.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from streamlearn.aggregate_windows import EntityState
from streamlearn.tasks.entity_features import StateStore

DEFAULT_CAPACITY = 100_000


class CachedStateStore:
    """A read cache in front of a :class:`StateStore`; writes go through.

    Examples
    --------
    >>> from streamlearn.tasks.entity_features import MemoryStateStore
    >>> class Counting(MemoryStateStore):
    ...     reads = 0
    ...     def load(self, entities):
    ...         entities = list(entities)
    ...         self.reads += len(entities)
    ...         return {e: EntityState() for e in entities}
    >>> inner = Counting()
    >>> cache = CachedStateStore(inner, ttl_s=3600, capacity=2)
    >>> first = cache.load(["a", "b"])
    >>> first["a"].positions[0] = 7
    >>> cache.save(first)
    2
    >>> cache.load(["a", "b"])["a"].positions, inner.reads  # from memory
    ({0: 7}, 2)
    >>> cache.moved([("activity", 0)])  # partition 0 moved: "a" has events of it
    >>> cache.load(["a"])["a"].positions, inner.reads  # read again
    ({}, 3)

    Written behind, a state reaches the store at :meth:`flush` (once):

    >>> behind = CachedStateStore(inner, ttl_s=3600, write_behind=True)
    >>> behind.save({"b": EntityState()}), behind.flush(), behind.flush()
    (1, 1, 0)
    """

    def __init__(
        self,
        inner: StateStore,
        ttl_s: float,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
        write_behind: bool = False,
    ) -> None:
        self.inner = inner
        self.write_behind = write_behind
        self.ttl_s = ttl_s
        self.capacity = capacity
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._states: OrderedDict[str, tuple[EntityState, float]] = OrderedDict()
        self._moved: set[int] = set()
        self._moved_lock = threading.Lock()
        self._dirty: set[str] = set()  # kept here, not yet written to the store

    def __len__(self) -> int:
        return len(self._states)

    def moved(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions were revoked or assigned; safe to call from another thread."""
        with self._moved_lock:
            self._moved.update(partition for _, partition in partitions)

    def flush(self) -> int:
        """Write the states saved since the last flush to the store; return how many."""
        if not self._dirty:
            return 0
        written = self.inner.save({e: self._states[e][0] for e in self._dirty})
        self._dirty.clear()
        return written

    def load(self, entities: Iterable[str]) -> dict[str, EntityState]:
        """Each entity's state: the copy kept here where it is still valid, else the store's."""
        self._forget_moved()
        now = self.clock()
        found: dict[str, EntityState] = {}
        missing: list[str] = []
        for entity in dict.fromkeys(entities):
            kept = self._states.get(entity)
            if kept is not None and (now - kept[1] < self.ttl_s or entity in self._dirty):
                found[entity] = kept[0]
                self._states.move_to_end(entity)
            else:
                missing.append(entity)
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            found.update(self.inner.load(missing))
        return found

    def save(self, states: Mapping[str, EntityState]) -> int:
        """Keep ``states`` as the stored copies, written now or at the next :meth:`flush`."""
        saved = len(states) if self.write_behind else self.inner.save(states)
        now = self.clock()
        for entity, state in states.items():
            self._states[entity] = (state, now)
            self._states.move_to_end(entity)
        if self.write_behind:
            self._dirty.update(states)
        if len(self._states) > self.capacity:
            oldest = next(iter(self._states))
            if oldest in self._dirty:
                self.flush()  # nothing leaves memory before it is written
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)
        return saved

    def _forget_moved(self) -> None:
        with self._moved_lock:
            moved, self._moved = self._moved, set()
        if not moved:
            return
        stale = [
            e for e, (state, _) in self._states.items() if not moved.isdisjoint(state.positions)
        ]
        for entity in stale:
            # Not written yet either: the partition's next owner replays from the committed
            # offsets, which the last flush covers (a flush precedes every checkpoint).
            del self._states[entity]
            self._dirty.discard(entity)
