"""Each user's current recommendations in Redis: ``{prefix}:{pipeline}:recs:{user}``, a ZSET.

A batch replaces the lists of the users it touched, each atomically (one script call per 500
users: a reader never sees a list half written), with a TTL so lists of users gone quiet
disappear. Item → score, the highest score first when read with ``ZREVRANGE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from connectors.redis_store import _classified, _text

__all__ = ["RecommendationStore", "recs_key"]

_CHUNK = 500

# KEYS: the users' list keys. ARGV: ttl_ms (0: none), then per key: n, then n (score, item).
_REPLACE_SCRIPT = """
local ttl = tonumber(ARGV[1])
local at = 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  redis.call('DEL', key)
  if n > 0 then
    redis.call('ZADD', key, unpack(ARGV, at + 1, at + 2 * n))
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    end
  end
  at = at + 1 + 2 * n
end
return #KEYS
"""


def recs_key(prefix: str, pipeline: str, user_id: str) -> str:
    """The Redis key of a user's list.

    >>> recs_key("sl", "shop", "u-7")
    'sl:shop:recs:u-7'
    """
    return f"{prefix}:{pipeline}:recs:{user_id}"


class RecommendationStore:
    """Writes and reads users' top-K lists.

    A transient Redis failure raises :class:`~streamlearn.errors.OutputBackpressure` (pause and
    retry the batch's outputs), a refusal :class:`~streamlearn.errors.OutputRejected`.
    """

    def __init__(self, client: redis.Redis, prefix: str, pipeline: str, ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.pipeline = pipeline
        self.ttl_ms = int(ttl_s * 1000)
        self._replace = client.register_script(_REPLACE_SCRIPT)

    def write(self, lists: Mapping[str, Sequence[tuple[str, float]]]) -> int:
        """Replace each user's list (best first) by the one given; return how many were written."""
        users = list(lists)
        for start in range(0, len(users), _CHUNK):
            chunk = users[start : start + _CHUNK]
            args: list[Any] = [self.ttl_ms]
            for user in chunk:
                ranked = lists[user]
                args.append(len(ranked))
                for item, score in ranked:
                    args += (repr(float(score)), item)
            keys = [recs_key(self.prefix, self.pipeline, u) for u in chunk]
            try:
                self._replace(keys=keys, args=args)
            except redis.RedisError as exc:
                raise _classified(exc, "writing recommendations to Redis") from exc
        return len(users)

    def read(self, user_id: str) -> list[tuple[str, float]]:
        """A user's list, best first (empty when there is none)."""
        key = recs_key(self.prefix, self.pipeline, user_id)
        found: list[tuple[bytes, float]] = self.client.zrevrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
        return [(_text(item), float(score)) for item, score in found]
