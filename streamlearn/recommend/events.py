"""One mini-batch of user-item interaction events, as columns in stream order.

The recommender, its evaluator and the benchmarks all take this shape; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EVENT_TYPES = ("view", "cart", "purchase", "rating")
"""The interaction kinds an event's ``event_type`` may name."""


@dataclass(slots=True)
class InteractionBatch:
    """The columns of one mini-batch of interaction events, in stream order.

    Parameters
    ----------
    users, items
        Who interacted with what, one entry per event.
    kinds
        Each event's type: ``"view"``, ``"cart"``, ``"purchase"`` or ``"rating"``.
    values
        A rating from 1 to 5 for ``"rating"``, otherwise a weight (often 1), as float64.
    ts_ms
        Event time in epoch milliseconds, as int64.

    Examples
    --------
    >>> batch = InteractionBatch.from_events([
    ...     {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view",
    ...      "value": 1, "ts": 1000},
    ...     {"event_id": "e2", "user_id": "u1", "item_id": "i2", "event_type": "rating",
    ...      "value": 4.5, "ts": 2000}])
    >>> len(batch), batch.items, batch.values.tolist()
    (2, ['i1', 'i2'], [1.0, 4.5])
    >>> batch[1:].kinds
    ['rating']
    """

    users: list[str]
    items: list[str]
    kinds: list[str]
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    ts_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.ts_ms = np.asarray(self.ts_ms, dtype=np.int64)
        n = len(self.users)
        sizes = (len(self.items), len(self.kinds), len(self.values), len(self.ts_ms))
        if any(size != n for size in sizes):
            raise ValueError(
                f"the batch's columns differ in length (users {n}, items, kinds, values, ts_ms "
                f"{sizes}); every column needs one entry per event"
            )
        unknown = set(self.kinds).difference(EVENT_TYPES)
        if unknown:
            raise ValueError(
                f"unknown event_type {sorted(unknown)}; expected one of {list(EVENT_TYPES)}"
            )

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]]) -> InteractionBatch:
        """Build the columns from decoded event dicts (``user_id``, ``item_id``, ...)."""
        rows = list(events)
        return cls(
            users=[str(e["user_id"]) for e in rows],
            items=[str(e["item_id"]) for e in rows],
            kinds=[str(e["event_type"]) for e in rows],
            values=np.array([float(e.get("value", 1.0)) for e in rows], dtype=np.float64),
            ts_ms=np.array([int(e["ts"]) for e in rows], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, part: slice) -> InteractionBatch:
        """The events in a slice of the batch, as a batch of their own."""
        return InteractionBatch(
            self.users[part],
            self.items[part],
            self.kinds[part],
            self.values[part],
            self.ts_ms[part],
        )

    def select(self, keep: np.ndarray) -> InteractionBatch:
        """The events where ``keep`` is true, in stream order."""
        rows = np.flatnonzero(np.asarray(keep, dtype=bool))
        return InteractionBatch(
            [self.users[i] for i in rows],
            [self.items[i] for i in rows],
            [self.kinds[i] for i in rows],
            self.values[rows],
            self.ts_ms[rows],
        )
