"""Keeps each entity's aggregate state in Redis: one string key per entity, per batch.

A batch's states are read with a few MGETs and written with one pipeline of ``SET .. PX``, so
an entity's history follows it when its partition moves to another processor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import redis

from connectors.redis_store import _classified
from streamlearn.aggregate_windows import EntityState

__all__ = ["AggregateStore", "aggregate_key"]

log = logging.getLogger(__name__)

_CHUNK = 1000


def aggregate_key(prefix: str, pipeline: str, entity_id: str) -> str:
    """The Redis key of an entity's aggregate state.

    >>> aggregate_key("sl", "fraud", "card-7")
    'sl:fraud:agg:card-7'
    """
    return f"{prefix}:{pipeline}:agg:{entity_id}"


class AggregateStore:
    """Per-entity aggregate states ``{prefix}:{pipeline}:agg:{entity}`` with a TTL.

    Save a batch's states before committing its offsets: after a crash the batch is delivered
    again, and the offsets each state records make the replay count nothing twice. ``ttl_s``
    should be ``Aggregator.state_ttl_s`` (the longest window plus the allowed lateness): an
    entity idle that long has nothing left in any window. A transient Redis failure raises
    :class:`~streamlearn.errors.OutputBackpressure` (pause and retry), a refusal
    :class:`~streamlearn.errors.OutputRejected`.

    Examples
    --------
    >>> store = AggregateStore(redis.Redis(), "sl", "fraud", ttl_s=3600)  # connects when used
    >>> store.key("card-1"), store.ttl_ms
    ('sl:fraud:agg:card-1', 3600000)
    """

    def __init__(self, client: redis.Redis, prefix: str, pipeline: str, ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.pipeline = pipeline
        self.ttl_ms = int(ttl_s * 1000)
        self.discarded = 0  # states that could not be read back and were started afresh

    def key(self, entity_id: str) -> str:
        """The Redis key of ``entity_id``'s state."""
        return aggregate_key(self.prefix, self.pipeline, entity_id)

    def load(self, entities: Iterable[str]) -> dict[str, EntityState]:
        """The stored state of each entity; a fresh one where none is stored or it is unreadable."""
        wanted = list(dict.fromkeys(entities))
        states: dict[str, EntityState] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            try:
                values = self.client.mget([self.key(e) for e in chunk])
            except redis.RedisError as exc:
                raise _classified(exc, "reading aggregate state from Redis") from exc
            for entity, value in zip(chunk, values):
                states[entity] = self._decoded(entity, value)
        return states

    def save(self, states: Mapping[str, EntityState]) -> int:
        """Write ``states`` (one pipeline per 1000 entities); return how many were written."""
        items = list(states.items())
        for start in range(0, len(items), _CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for entity, state in items[start : start + _CHUNK]:
                pipe.set(self.key(entity), state.to_bytes(), px=self.ttl_ms or None)
            try:
                pipe.execute()
            except redis.RedisError as exc:
                raise _classified(exc, "writing aggregate state to Redis") from exc
        return len(items)

    def _decoded(self, entity: str, value: bytes | str | None) -> EntityState:
        if value is None:
            return EntityState()
        try:
            return EntityState.from_bytes(value)
        except ValueError as exc:
            # Losing one entity's history costs a few features; stopping would cost them all.
            self.discarded += 1
            log.warning("aggregate state of %r is unreadable (%s); starting it afresh", entity, exc)
            return EntityState()
