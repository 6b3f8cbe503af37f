"""Per-entity streaming features inside a task: load each entity's state, aggregate, keep.

Before a batch is scored, the states of its entities are loaded (from Redis in production, so
another process can take a partition over), :class:`streamlearn.aggregates.Aggregator` computes
every event's features from the history before it, and the changed states go out with the
batch's other outputs, before its offsets are committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np

from streamlearn.aggregates import Aggregator, EntityState
from streamlearn.batch import RawBatch
from streamlearn.config import FieldType, SchemaConfig
from streamlearn.decoding import DecodedBatch


class StateStore(Protocol):
    """Where entities' aggregate states live."""

    def load(self, entities: Iterable[str]) -> dict[str, EntityState]:
        """The state of each entity (fresh where none is stored)."""
        ...

    def save(self, states: Mapping[str, EntityState]) -> int:
        """Keep the given states."""
        ...


class MemoryStateStore:
    """States in this process's memory (tests, and trying a pipeline without Redis).

    >>> store = MemoryStateStore()
    >>> a = store.load(["c1"])["c1"]
    >>> store.load(["c1"])["c1"] is a
    True
    """

    def __init__(self) -> None:
        self.states: dict[str, EntityState] = {}

    def load(self, entities: Iterable[str]) -> dict[str, EntityState]:
        """The live state objects (created on first use), so no save is needed."""
        return {e: self.states.setdefault(e, EntityState()) for e in entities}

    def save(self, states: Mapping[str, EntityState]) -> int:
        """Nothing to do: :meth:`load` handed out the stored objects themselves."""
        return len(states)


class EntityFeatures:
    """Adds a schema's ``aggregates`` to decoded batches as numeric columns.

    Examples
    --------
    >>> from streamlearn.decoding import EventDecoder
    >>> schema = SchemaConfig.model_validate({
    ...     "features": {"amount": "float"},
    ...     "aggregates": {"spend_1h": {"fn": "sum", "field": "amount", "window": "1h"}}})
    >>> raw = RawBatch()
    >>> for i, amount in enumerate((10, 5)):
    ...     raw.append("t", 0, i, None, b'{"event_id": "e%d", "entity_id": "c", "ts": %d, '
    ...                b'"amount": %d}' % (i, i * 1000, amount), 0, received=0.0)
    >>> decoded = EventDecoder(schema).decode(raw.values)
    >>> changed = EntityFeatures(schema, MemoryStateStore()).add(raw, decoded)
    >>> decoded.numeric["spend_1h"].tolist(), sorted(changed)
    ([0.0, 10.0], ['c'])
    """

    def __init__(self, schema: SchemaConfig, store: StateStore) -> None:
        categories = [n for n, s in schema.features.items() if s.type == FieldType.CATEGORY]
        self.aggregator = Aggregator(
            schema.aggregates, schema.allowed_lateness_s, category_fields=categories
        )
        self.names = list(schema.aggregates)
        self.store = store
        self.too_late = 0

    def add(self, raw: RawBatch, decoded: DecodedBatch) -> dict[str, EntityState]:
        """Put each event's aggregates in ``decoded.numeric``; return the states it changed."""
        if not len(decoded):
            for name in self.names:
                decoded.numeric[name] = np.empty(0)
            return {}
        states = self.store.load(decoded.entity_ids)
        rows = decoded.index.tolist()
        result = self.aggregator.apply(
            states,
            decoded.entity_ids,
            decoded.timestamps_ms,
            {f: decoded.numeric[f] for f in self.aggregator.numeric_fields},
            {f: decoded.categorical[f] for f in self.aggregator.category_fields},
            [raw.partitions[i] for i in rows],
            [raw.offsets[i] for i in rows],
        )
        decoded.numeric.update(result.features)
        self.too_late += result.too_late
        return {e: states[e] for e in result.changed}

    def restore(self, decoded: DecodedBatch, stored: list[dict[str, float]]) -> None:
        """Put back the aggregates an event had when it was scored (kept with its label)."""
        for name in self.names:
            decoded.numeric[name] = np.array([s.get(name, 0.0) for s in stored], dtype=float)
