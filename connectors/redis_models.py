"""Published model versions in Redis, written only by the holder of the pipeline's lock.

Layout (prefix ``sl``, pipeline ``fraud``): ``sl:fraud:model:v{n}`` is one HASH per published
version (pickled ``state``, ``signature``, ``published_at``), ``n`` being the model version
stamped on the predictions it makes; ``sl:fraud:model:published`` is a ZSET indexing them;
``sl:fraud:model:latest`` is a HASH (``version``, ``published_at``, ``fresh_at``) that scorers
read before each batch. A publication is one server-side script: it checks the learner's
fencing token, writes the version, moves the pointer and drops old versions at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from connectors.redis_store import _classified
from streamlearn.errors import PipelineFenced
from streamlearn.roles.publication import Latest

# KEYS: lock, index, latest, new version's hash. ARGV: token ('' = unfenced), version, state,
# signature, at, keep, key prefix of versions.
_PUBLISH = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the pipeline lock is held by another process')
end
redis.call('HSET', KEYS[4], 'state', ARGV[3], 'signature', ARGV[4], 'published_at', ARGV[5])
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[2])
redis.call('HSET', KEYS[3], 'version', ARGV[2], 'published_at', ARGV[5], 'fresh_at', ARGV[5])
local keep = tonumber(ARGV[6])
local old = redis.call('ZRANGE', KEYS[2], 0, -(keep + 1))
for _, v in ipairs(old) do
  redis.call('DEL', ARGV[7] .. v)
  redis.call('ZREM', KEYS[2], v)
end
return #old
"""

# KEYS: lock, latest. ARGV: token, version, at. Refresh fresh_at if latest is still version.
_CONFIRM = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the pipeline lock is held by another process')
end
if redis.call('HGET', KEYS[2], 'version') == ARGV[2] then
  redis.call('HSET', KEYS[2], 'fresh_at', ARGV[3])
  return 1
end
return 0
"""


class RedisModelBoard:
    """One pipeline's published models (a ``streamlearn.roles.publication.ModelBoard``).

    ``fence`` returns the lock value the learner holds; scorers, which only read, pass none.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        pipeline: str,
        fence: Callable[[], str | None] | None = None,
    ) -> None:
        self.client = client
        self.base = f"{prefix}:{pipeline}:model"
        self.index = f"{self.base}:published"
        self.pointer = f"{self.base}:latest"
        self.lock_key = f"{prefix}:{pipeline}:lock"
        self.fence = fence or (lambda: None)
        self._publish = client.register_script(_PUBLISH)
        self._confirm = client.register_script(_CONFIRM)

    def key(self, version: int) -> str:
        """The hash of one published version."""
        return f"{self.base}:v{version}"

    def publish(self, version: int, state: bytes, signature: str, at: float, keep: int) -> None:
        """Store and point at ``version``; raise :class:`PipelineFenced` if not the learner."""
        keys = [self.lock_key, self.index, self.pointer, self.key(version)]
        args = [self.fence() or "", version, state, signature, repr(at), keep, f"{self.base}:v"]
        self._run(self._publish, keys, args, "publishing the model")

    def confirm(self, version: int, at: float) -> None:
        """Refresh ``fresh_at`` while ``latest`` still names ``version``."""
        args = [self.fence() or "", version, repr(at)]
        self._run(self._confirm, [self.lock_key, self.pointer], args, "confirming the model")

    def latest(self) -> Latest | None:
        """The pointer, or ``None`` before the first publication."""
        try:
            fields = self.client.hgetall(self.pointer)
        except redis.RedisError as exc:
            raise _classified(exc, "reading the published model pointer") from exc
        if not fields:
            return None
        return Latest(
            version=int(fields[b"version"]),
            published_at=float(fields[b"published_at"]),
            fresh_at=float(fields[b"fresh_at"]),
        )

    def fetch(self, version: int) -> tuple[bytes, str] | None:
        """A published version's state and signature, or ``None`` if it was dropped."""
        try:
            found: list[Any] = self.client.hmget(self.key(version), ["state", "signature"])
        except redis.RedisError as exc:
            raise _classified(exc, f"reading published model v{version}") from exc
        state, signature = found
        if state is None:
            return None
        return bytes(state), bytes(signature or b"").decode()

    def versions(self) -> list[int]:
        """The published versions still kept, oldest first."""
        found: list[Any] = self.client.zrange(self.index, 0, -1)
        return [int(v) for v in found]

    def _run(self, script: Any, keys: list[str], args: list[Any], doing: str) -> None:
        try:
            script(keys=keys, args=args)
        except redis.ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise PipelineFenced(f"{self.base}: {doing} refused: {exc}") from None
            raise _classified(exc, doing) from exc
        except redis.RedisError as exc:
            raise _classified(exc, doing) from exc
