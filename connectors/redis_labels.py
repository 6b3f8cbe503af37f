"""Delayed labels joined through Redis: pending events, early labels, joins, expiry.

``{prefix}:{pipeline}:pending:{event_id}`` is one HASH per event id, in one of three states:
``w`` (a scored event waits for its label: its payload, time and source), ``l`` (a label came
before its event: its target, time, source and bytes) or ``j`` (joined: both, plus the source of
the joiner, the message whose processing made the join). Waiting and joined entries expire after
the horizon; early labels are also indexed in the ZSET ``{prefix}:{pipeline}:pending-early`` by
event-time deadline, so labels whose event never came are dead-lettered as ``unknown_event``
(and deleted once the dead letter is durable); one whose event turns out to lie more than the
horizon before it is ``past_horizon``. Where the store may forget by event time (one process
owns the offsets), events are indexed in ``{prefix}:{pipeline}:pending-due`` by their deadline
(event time plus horizon), and :meth:`RedisLabelStore.forget` deletes those past the bound, so
a backlog keeps no more than a horizon of them.
Each batch is one script call per chunk; the rules (see :mod:`streamlearn.labels`) make a replay
after a crash learn each join exactly once. Standalone Redis only (keys are built in the script).
"""

from __future__ import annotations

from typing import Any

import redis

from connectors.redis_store import _classified
from streamlearn.labels import ArrivedLabels, Exchange, ExpiredLabel, Join, PendingEvents
from streamlearn.rejections import Rejection

# ARGV: key prefix, horizon ms, index events by deadline (1/0), floor ms, number of events,
# then 4 per event (id, source, ts, payload), then 5 per label (id, source, ts, target, value).
# KEYS[1]: the early-label index; KEYS[2]: the events' deadline index. An event is due a
# horizon after its time, or after the floor (what was learned before this batch) if later.
_EXCHANGE = """
local base, horizon, index = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local floor, n = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
local i = 6
local function due(id, ts)
  if index then redis.call('ZADD', KEYS[2], math.max(tonumber(ts), floor) + horizon, id) end
end
for _ = 1, n do
  local id, src, ts, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local key = base .. id
  local st = redis.call('HGET', key, 'st')
  if not st then
    redis.call('HSET', key, 'st', 'w', 'p', payload, 'et', ts, 'es', src)
    redis.call('PEXPIRE', key, horizon)
    due(id, ts)
    out[#out + 1] = 'stored'
  elseif st == 'l' then
    local f = redis.call('HMGET', key, 'lt', 'lts', 'ls', 'lv')
    redis.call('ZREM', KEYS[1], id)
    if tonumber(f[2]) - tonumber(ts) > horizon then
      -- the label was read first, and lies past the horizon after its event: refused, and
      -- kept with the event so that a replay of the event refuses it again
      redis.call('DEL', key)
      redis.call('HSET', key, 'st', 'w', 'p', payload, 'et', ts, 'es', src, 'xs', f[3], 'xv', f[4])
      redis.call('PEXPIRE', key, horizon)
      due(id, ts)
      out[#out + 1] = {'late', f[3], f[4]}
    else
      redis.call('HSET', key, 'st', 'j', 'p', payload, 'et', ts, 'es', src, 'jn', src, 'lv', '')
      redis.call('PEXPIRE', key, horizon)
      due(id, ts)
      out[#out + 1] = {'join', payload, f[1], src}
    end
  else
    local f = redis.call('HMGET', key, 'jn', 'p', 'lt', 'es', 'xs', 'xv')
    if st == 'j' and f[1] == src then
      out[#out + 1] = {'join', f[2], f[3], src}
    elseif f[4] == src and f[5] then
      out[#out + 1] = {'late', f[5], f[6]}
    else
      out[#out + 1] = 'replay'
    end
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
      if index then  -- the label is the joiner: due no sooner than a horizon after the floor
        local at = tonumber(redis.call('ZSCORE', KEYS[2], id) or 0)
        if at < floor + horizon then redis.call('ZADD', KEYS[2], floor + horizon, id) end
      end
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

# Early labels whose deadline (event time) passed, from position ARGV[4] of the index: returned,
# and kept until their dead letters are durable (ARGV[5] == '1'; else deleted at once). Index
# entries whose key is gone (its TTL, or a join) are dropped. Returns the labels and how many
# index entries were kept. ARGV: prefix, watermark ms, limit, start, keep.
_EXPIRED = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', tonumber(ARGV[4]),
  tonumber(ARGV[3]))
local out, kept = {}, 0
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'st', 'ls', 'lv')
  if f[1] == 'l' then
    out[#out + 1] = {id, f[2], f[3]}
  end
  if f[1] == 'l' and ARGV[5] == '1' then
    kept = kept + 1
  else
    if f[1] == 'l' then redis.call('DEL', key) end
    redis.call('ZREM', KEYS[1], id)
  end
end
return {out, #ids, kept}
"""

# Expired early labels now dead-lettered: deleted, if still the same label. ARGV: prefix, then
# (id, source) pairs.
_DEAD_LETTERED = """
for i = 2, #ARGV, 2 do
  local key = ARGV[1] .. ARGV[i]
  local f = redis.call('HMGET', key, 'st', 'ls')
  if f[1] == 'l' and f[2] == ARGV[i + 1] then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 0
"""

# Events due before ARGV[2] ('' for none): deleted (waiting or joined; an early label since
# stored under the id stays), and out of the index. First, index entries whose key its TTL
# removed are dropped from the front, so the index stays bounded where nothing is forgotten.
# ARGV: prefix, before ms, limit. Returns how many were forgotten and how many dropped.
_FORGET = """
local limit, pruned = tonumber(ARGV[3]), 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, limit - 1)) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then break end
  redis.call('ZREM', KEYS[1], id)
  pruned = pruned + 1
end
if ARGV[2] == '' then return {0, pruned} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local st = redis.call('HGET', key, 'st')
  if st == 'w' or st == 'j' then
    redis.call('DEL', key)
  end
  redis.call('ZREM', KEYS[1], id)
end
return {#ids, pruned}
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
    ...     forgotten = store.forget(before_ms=1_000 + 3_600_000 + 1)  # every checkpoint is past
    >>> len(first.joins), [(j.event_id, j.target, j.joiner) for j in joined.joins]
    (0, [('e1', 1, 'lb/0/0')])
    >>> [(j.event_id, j.joiner) for j in again.joins]  # the joiner replayed: learned again
    [('e1', 'lb/0/0')]
    >>> forgotten
    1

    ``owner``: this process alone owns the pipeline's offsets and checkpoints (``--role
    all`` with checkpoints). Only then are events indexed to be forgotten by event time, and
    expired labels kept until :meth:`dead_lettered`; scorers share the early-label index, so
    each would send them, and they delete an expired label as they find it, leaving events to
    their TTL.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        pipeline: str,
        horizon_s: float,
        owner: bool = True,
    ) -> None:
        self.client = client
        self.base = f"{prefix}:{pipeline}:pending:"
        # Indexes beside the entries, not among them: an event id may be any string.
        self.early = f"{prefix}:{pipeline}:pending-early"
        self.due = f"{prefix}:{pipeline}:pending-due"
        self.horizon_ms = int(horizon_s * 1000)
        self.owner = owner
        self._exchange = client.register_script(_EXCHANGE)
        self._expire = client.register_script(_EXPIRED)
        self._dead_lettered = client.register_script(_DEAD_LETTERED)
        self._forget = client.register_script(_FORGET)
        self._moved_index = False

    def dead_lettered(self, expired: list[ExpiredLabel]) -> None:
        """Delete the expired early labels whose dead letters are durable."""
        early = [label for label in expired if label.reason == "unknown_event"]
        try:
            for start in range(0, len(early), _CHUNK):
                args: list[str] = [self.base]
                for label in early[start : start + _CHUNK]:
                    args += (label.event_id, label.source)
                self._dead_lettered(keys=[self.early], args=args)
        except redis.RedisError as exc:
            raise _classified(exc, "deleting dead-lettered labels in Redis") from exc

    def forget(self, before_ms: int | None) -> int:
        """Delete waiting and joined events due before ``before_ms``; return how many.

        With ``None``, only index entries whose key the TTL removed are dropped.
        """
        forgotten = 0
        bound = "" if before_ms is None else str(before_ms)
        try:
            while True:
                found, pruned = self._forget(keys=[self.due], args=[self.base, bound, 1000])
                forgotten += int(found)
                if int(found) < 1000 and int(pruned) < 1000:
                    return forgotten
        except redis.RedisError as exc:
            raise _classified(exc, "forgetting pending events in Redis") from exc

    def exchange(
        self,
        events: PendingEvents,
        labels: ArrivedLabels,
        watermark_ms: int,
        floor_ms: int = 0,
    ) -> Exchange:
        """Store events, join labels, and return early labels past ``watermark_ms``."""
        out = Exchange()
        try:
            if not self._moved_index:
                self._move_old_index()
            for start in range(0, len(events), _CHUNK):
                self._events(events, start, start + _CHUNK, floor_ms, out)
            for start in range(0, len(labels), _CHUNK):
                self._labels(labels, start, start + _CHUNK, floor_ms, out)
            self._expired(watermark_ms, out)
        except redis.RedisError as exc:
            raise _classified(exc, "joining delayed labels in Redis") from exc
        return out

    def _move_old_index(self) -> None:
        # Before 2026-12, early labels were indexed in "{base}early", among the entries.
        old = f"{self.base}early"
        if self.client.type(old) in (b"zset", "zset"):
            self.client.zunionstore(self.early, [self.early, old], aggregate="MIN")
            self.client.delete(old)
        self._moved_index = True

    def _call(self, floor_ms: int, args: list[Any]) -> list[Any]:
        index = 1 if self.owner else 0
        keys = [self.early, self.due]
        head: list[Any] = [self.base, self.horizon_ms, index, floor_ms]
        result = self._exchange(keys=keys, args=[*head, *args])
        return list(result)

    def _events(
        self, events: PendingEvents, start: int, stop: int, floor_ms: int, out: Exchange
    ) -> None:
        args: list[Any] = [len(events.event_ids[start:stop])]
        for i in range(start, min(stop, len(events))):
            args += (events.event_ids[i], events.sources[i], events.ts_ms[i], events.payloads[i])
        for event_id, result in zip(events.event_ids[start:stop], self._call(floor_ms, args)):
            if isinstance(result, list) and _text(result[0]) == "late":
                _, source, value = result
                expired = ExpiredLabel(event_id, _text(source), value or b"", "past_horizon")
                out.expired.append(expired)
            elif isinstance(result, list):
                out.joins.append(_join(event_id, result))

    def _labels(
        self, labels: ArrivedLabels, start: int, stop: int, floor_ms: int, out: Exchange
    ) -> None:
        args: list[Any] = [0]
        for i in range(start, min(stop, len(labels))):
            args += (
                labels.event_ids[i],
                labels.sources[i],
                labels.ts_ms[i],
                labels.targets[i],
                labels.values[i],
            )
        for i, result in zip(range(start, stop), self._call(floor_ms, args)):
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
        start = 0
        while True:
            keep = 1 if self.owner else 0
            args: list[str | int] = [self.base, watermark_ms, 1000, start, keep]
            found, scanned, kept = self._expire(keys=[self.early], args=args)
            for event_id, source, value in found:
                out.expired.append(ExpiredLabel(_text(event_id), _text(source), value or b""))
            start += int(kept)  # those stay in the index until dead-lettered
            if int(scanned) < 1000:
                return


def _join(event_id: str, result: list[Any]) -> Join:
    _, payload, target, joiner = result
    return Join(event_id, payload, int(target), _text(joiner))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
