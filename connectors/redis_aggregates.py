"""Keeps each entity's aggregate state in Redis: one string key per entity, per batch.

In Redis an entity's history follows its partition to another processor. A batch's states are
read with MGET and written by a script call per 1000 entities (SETs in a pipeline cost far more
client time).
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
_CHUNK_BYTES = 4 * 1024 * 1024  # a script call blocks the server: keep each one short

# KEYS: the state keys. ARGV: ttl_ms (0: none), then one state per key.
_SAVE_SCRIPT = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if ttl > 0 then
    redis.call('SET', key, ARGV[i + 1], 'PX', ttl)
  else
    redis.call('SET', key, ARGV[i + 1])
  end
end
return #KEYS
"""


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
        self._save = client.register_script(_SAVE_SCRIPT)

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
        """Write ``states``, one script call per 1000 entities or 4 MB; return how many."""
        keys: list[str] = []
        values: list[bytes] = []
        size = 0
        for entity, state in states.items():
            data = state.to_bytes()
            keys.append(self.key(entity))
            values.append(data)
            size += len(data)
            if len(keys) >= _CHUNK or size >= _CHUNK_BYTES:
                self._write(keys, values)
                keys, values, size = [], [], 0
        if keys:
            self._write(keys, values)
        return len(states)

    def _write(self, keys: list[str], values: list[bytes]) -> None:
        try:
            self._save(keys=keys, args=[self.ttl_ms, *values])
        except redis.RedisError as exc:
            raise _classified(exc, "writing aggregate state to Redis") from exc

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
