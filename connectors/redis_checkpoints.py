"""Checkpoint versions in Redis, written only by the holder of the pipeline's lock.

Layout (prefix ``sl``, pipeline ``fraud``): ``sl:fraud:model:checkpoint:{n}`` is one HASH per
version (``meta`` JSON, pickled ``state``, ``signature``); ``sl:fraud:model:checkpoints`` is a
ZSET indexing the versions; ``sl:fraud:model:request`` holds an operator's rollback or import
request until the running processor (or the next start) adopts it. A save is one server-side
script: it checks the fencing token, writes the version, indexes it and drops old ones at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from connectors.redis_store import _classified
from streamlearn.checkpoint import Checkpoint, CheckpointRefused
from streamlearn.errors import PipelineFenced, StreamlearnError

# KEYS: lock, index, new version's hash. ARGV: token ('' = unfenced), version, meta, state,
# signature, keep, key prefix of versions, lease ms. A lease that expired while Redis was
# stalled or restarted empty is taken back; one held by another process refuses the write.
_SAVE = """
if ARGV[1] ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[8])
  elseif holder ~= ARGV[1] then
    return redis.error_reply('FENCED the pipeline lock is held by another process')
  end
end
redis.call('HSET', KEYS[3], 'meta', ARGV[3], 'state', ARGV[4], 'signature', ARGV[5])
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[2])
local keep = tonumber(ARGV[6])
local old = redis.call('ZRANGE', KEYS[2], 0, -(keep + 1))
for _, v in ipairs(old) do
  redis.call('DEL', ARGV[7] .. v)
  redis.call('ZREM', KEYS[2], v)
end
return #old
"""


class RedisCheckpointStore:
    """One pipeline's checkpoint versions, fenced by the token of its :class:`ReplicaLock`.

    ``fence`` returns the lock value this process holds (``None``: no fencing, e.g. the CLI);
    ``lease_ms`` is the lock's lease, used to take it back if it expired meanwhile.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        pipeline: str,
        fence: Any | None = None,
        lease_ms: int = 10_000,
    ) -> None:
        self.client = client
        self.base = f"{prefix}:{pipeline}:model"
        self.index = f"{self.base}:checkpoints"
        self.request_key = f"{self.base}:request"
        self.lock_key = f"{prefix}:{pipeline}:lock"
        self.fence = fence
        self.lease_ms = lease_ms
        self._save = client.register_script(_SAVE)

    def key(self, version: int) -> str:
        """The hash of one version."""
        return f"{self.base}:checkpoint:{version}"

    def versions(self) -> list[int]:
        """Stored versions, newest first (members that are not integers are ignored)."""
        try:
            members = self.client.zrevrange(self.index, 0, -1)
        except redis.ResponseError as exc:  # WRONGTYPE: someone wrote another type there
            raise StreamlearnError(
                f"the checkpoint index {self.index} is unreadable: {exc}"
            ) from None
        except redis.RedisError as exc:
            raise _classified(exc, "reading the checkpoint index") from exc
        return [int(m) for m in members if _is_int(m)]  # type: ignore[arg-type]

    def load(self, version: int) -> Mapping[Any, Any]:
        """The raw fields of one version."""
        try:
            fields = self.client.hgetall(self.key(version))
        except redis.ResponseError as exc:
            raise CheckpointRefused(f"{self.key(version)} is not a hash ({exc})") from None
        except redis.RedisError as exc:
            raise _classified(exc, "reading a checkpoint") from exc
        if not fields:
            raise CheckpointRefused(f"{self.key(version)} is missing or empty")
        return fields

    def save(self, checkpoint: Checkpoint, keep: int) -> None:
        """Write a new version and trim old ones, only while this process holds the lock."""
        fields = checkpoint.to_fields()
        token = self.fence() if callable(self.fence) else ""
        try:
            self._save(
                keys=[self.lock_key, self.index, self.key(checkpoint.version)],
                args=[
                    token or "",
                    checkpoint.version,
                    fields["meta"],
                    fields["state"],
                    fields["signature"],
                    keep,
                    f"{self.base}:checkpoint:",
                    self.lease_ms,
                ],
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise PipelineFenced(
                    f"{self.base}: another process took over this pipeline's lock; this one "
                    "stops without writing its checkpoint"
                ) from None
            raise _classified(exc, "writing the model checkpoint") from exc
        except redis.RedisError as exc:
            raise _classified(exc, "writing the model checkpoint") from exc

    def request(self) -> dict[str, bytes] | None:
        """An operator's pending request (``action``: rollback/import, and its data)."""
        try:
            raw = self.client.hgetall(self.request_key)
        except redis.ResponseError:
            return None
        except redis.RedisError as exc:
            raise _classified(exc, "reading the model request") from exc
        if not raw:
            return None
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v if isinstance(v, bytes) else str(v).encode()
            )
            for k, v in raw.items()
        }

    def ask(self, fields: Mapping[str, bytes | str | int]) -> None:
        """File a request for the running processor (or the next start) to adopt."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.request_key)
        pipe.hset(self.request_key, mapping=dict(fields))  # type: ignore[arg-type]
        pipe.execute()

    def done(self, fields: Mapping[str, bytes]) -> None:
        """Remove the request, unless it was replaced by a newer one meanwhile."""
        if self.request() == dict(fields):
            self.client.delete(self.request_key)


def _is_int(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True
