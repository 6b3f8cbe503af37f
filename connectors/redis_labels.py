"""Delayed labels joined through Redis: pending events, early labels, joins, expiry.

``{prefix}:{pipeline}:pending:{event_id}`` is one HASH per event id, in one of three states:
``w`` (a scored event waits for its label: its payload, time and source), ``l`` (a label came
before its event: its target, time, source and bytes) or ``j`` (joined: both, plus the source of
the joiner, the message whose processing made the join). Waiting and joined entries expire after
the horizon; early labels are also indexed in the ZSET ``{prefix}:{pipeline}:pending:early`` by
event-time deadline, so labels whose event never came are dead-lettered as ``unknown_event``;
one whose event turns out to lie more than the horizon before it is ``past_horizon``.
Each batch is one script call per chunk; the rules (see :mod:`streamlearn.labels`) make a replay
after a crash learn each join exactly once. Standalone Redis only (keys are built in the script).
"""

from __future__ import annotations

from typing import Any

import redis

from connectors.redis_store import _classified
from streamlearn.labels import ArrivedLabels, Exchange, ExpiredLabel, Join, PendingEvents
from streamlearn.rejections import Rejection

# ARGV: key prefix, horizon ms, number of events, then 4 per event (id, source, ts, payload),
# then 5 per label (id, source, ts, target, value). KEYS[1]: the early-label index.
_EXCHANGE = """
local base, horizon, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local i = 4
for _ = 1, n do
  local id, src, ts, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local key = base .. id
  local st = redis.call('HGET', key, 'st')
  if not st then
    redis.call('HSET', key, 'st', 'w', 'p', payload, 'et', ts, 'es', src)
    redis.call('PEXPIRE', key, horizon)
    out[#out + 1] = 'stored'
  elseif st == 'l' then
    local f = redis.call('HMGET', key, 'lt', 'lts', 'ls', 'lv')
    redis.call('ZREM', KEYS[1], id)
    if tonumber(f[2]) - tonumber(ts) > horizon then
      -- the label was read first, and lies past the horizon after its event: refused
      redis.call('DEL', key)
      redis.call('HSET', key, 'st', 'w', 'p', payload, 'et', ts, 'es', src)
      redis.call('PEXPIRE', key, horizon)
      out[#out + 1] = {'late', f[3], f[4]}
    else
      redis.call('HSET', key, 'st', 'j', 'p', payload, 'et', ts, 'es', src, 'jn', src, 'lv', '')
      redis.call('PEXPIRE', key, horizon)
      out[#out + 1] = {'join', payload, f[1], src}
    end
  elseif st == 'j' and redis.call('HGET', key, 'jn') == src then
    local f = redis.call('HMGET', key, 'p', 'lt')
    out[#out + 1] = {'join', f[1], f[2], src}
  else
    out[#out + 1] = 'replay'
  end
end
while i <= #ARGV do
  local id, src, ts, target, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local key = base .. id
  local f = redis.call('HMGET', key, 'st', 'ls', 'jn', 'p', 'lt', 'et')
  local st = f[1]
  if not st then
    redis.call('HSET', key, 'st', 'l', 'lt', target, 'lts', ts, 'ls', src, 'lv', value)
    redis.call('PEXPIRE', key, 2 * horizon)
    redis.call('ZADD', KEYS[1], tonumber(ts) + horizon, id)
    out[#out + 1] = 'stored'
  elseif st == 'w' then
    if tonumber(ts) - tonumber(f[6]) > horizon then
      out[#out + 1] = 'past_horizon'
    else
      redis.call('HSET', key, 'st', 'j', 'lt', target, 'lts', ts, 'ls', src, 'jn', src)
      redis.call('PEXPIRE', key, horizon)
      out[#out + 1] = {'join', f[4], target, src}
    end
  elseif f[2] ~= src then
    out[#out + 1] = 'duplicate'
  elseif st == 'j' and f[3] == src then
    out[#out + 1] = {'join', f[4], f[5], src}
  else
    out[#out + 1] = 'replay'
  end
end
return out
"""

# Early labels whose deadline (event time) passed: remove and return them. ARGV: prefix,
# watermark ms, limit.
_EXPIRE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'st', 'ls', 'lv')
  if f[1] == 'l' then
    out[#out + 1] = {id, f[2], f[3]}
    redis.call('DEL', key)
  end
  redis.call('ZREM', KEYS[1], id)
end
return out
"""

_CHUNK = 500


class RedisLabelStore:
    """The :class:`streamlearn.labels.LabelStore` of a pipeline, in Redis.

    Examples
    --------
    >>> from connectors.embedded import EmbeddedRedis
    >>> events = PendingEvents(["e1"], ["ev/0/0"], [1_000], [b'{"v": "..."}'])
    >>> label = ArrivedLabels(["e1"], [1], [2_000], ["lb/0/0"], [0], [b"{}"])
    >>> with EmbeddedRedis() as server:
    ...     store = RedisLabelStore(redis.Redis.from_url(server.url), "sl", "churn", 3600)
    ...     first = store.exchange(events, ArrivedLabels(), watermark_ms=1_000)
    ...     joined = store.exchange(PendingEvents(), label, watermark_ms=2_000)
    ...     again = store.exchange(PendingEvents(), label, watermark_ms=2_000)  # a replay
    >>> len(first.joins), [(j.event_id, j.target, j.joiner) for j in joined.joins]
    (0, [('e1', 1, 'lb/0/0')])
    >>> [(j.event_id, j.joiner) for j in again.joins]  # the joiner replayed: learned again
    [('e1', 'lb/0/0')]
    """

    def __init__(self, client: redis.Redis, prefix: str, pipeline: str, horizon_s: float) -> None:
        self.client = client
        self.base = f"{prefix}:{pipeline}:pending:"
        self.early = f"{self.base}early"
        self.horizon_ms = int(horizon_s * 1000)
        self._exchange = client.register_script(_EXCHANGE)
        self._expire = client.register_script(_EXPIRE)

    def exchange(self, events: PendingEvents, labels: ArrivedLabels, watermark_ms: int) -> Exchange:
        """Store events, join labels, and expire early labels past ``watermark_ms``."""
        out = Exchange()
        try:
            for start in range(0, len(events), _CHUNK):
                self._events(events, start, start + _CHUNK, out)
            for start in range(0, len(labels), _CHUNK):
                self._labels(labels, start, start + _CHUNK, out)
            self._expired(watermark_ms, out)
        except redis.RedisError as exc:
            raise _classified(exc, "joining delayed labels in Redis") from exc
        return out

    def _call(self, args: list[Any]) -> list[Any]:
        result = self._exchange(keys=[self.early], args=[self.base, self.horizon_ms, *args])
        return list(result)

    def _events(self, events: PendingEvents, start: int, stop: int, out: Exchange) -> None:
        args: list[Any] = [len(events.event_ids[start:stop])]
        for i in range(start, min(stop, len(events))):
            args += (events.event_ids[i], events.sources[i], events.ts_ms[i], events.payloads[i])
        for event_id, result in zip(events.event_ids[start:stop], self._call(args)):
            if isinstance(result, list) and _text(result[0]) == "late":
                _, source, value = result
                expired = ExpiredLabel(event_id, _text(source), value or b"", "past_horizon")
                out.expired.append(expired)
            elif isinstance(result, list):
                out.joins.append(_join(event_id, result))

    def _labels(self, labels: ArrivedLabels, start: int, stop: int, out: Exchange) -> None:
        args: list[Any] = [0]
        for i in range(start, min(stop, len(labels))):
            args += (
                labels.event_ids[i],
                labels.sources[i],
                labels.ts_ms[i],
                labels.targets[i],
                labels.values[i],
            )
        for i, result in zip(range(start, stop), self._call(args)):
            if isinstance(result, list):
                out.joins.append(_join(labels.event_ids[i], result))
            elif _text(result) in ("duplicate", "past_horizon"):
                reason = _text(result)
                detail = f"label for event {labels.event_ids[i]!r}: " + (
                    "that event was already labelled"
                    if reason == "duplicate"
                    else "it came later than labels.horizon_s after its event"
                )
                out.unmatched.append(Rejection(labels.rows[i], reason, detail))

    def _expired(self, watermark_ms: int, out: Exchange) -> None:
        while True:
            found = self._expire(keys=[self.early], args=[self.base, watermark_ms, 1000])
            for event_id, source, value in found:
                out.expired.append(ExpiredLabel(_text(event_id), _text(source), value or b""))
            if len(found) < 1000:
                return


def _join(event_id: str, result: list[Any]) -> Join:
    _, payload, target, joiner = result
    return Join(event_id, payload, int(target), _text(joiner))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
