"""What one entity's aggregates remember, in bounded memory, and its compact JSON form.

A window of ``W`` is cut into ``BUCKETS_PER_WINDOW`` buckets of ``b = ceil(W / 64)`` ms,
aligned on the epoch (bucket ``j`` holds event times ``[j*b, (j+1)*b)``). Each bucket keeps the
event count, the time of its newest event, ``n``/sum/min/max per numeric field and, per category
field, the count of events carrying it and up to ``DISTINCT_CAP`` distinct value hashes.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson

__all__ = [
    "BUCKETS_PER_WINDOW",
    "DISTINCT_CAP",
    "Bucket",
    "EntityState",
    "WindowBuckets",
    "bucket_width_ms",
    "value_hashes",
]

BUCKETS_PER_WINDOW = 64
DISTINCT_CAP = 64

# A bucket is a flat list, for speed: [events, newest_ts, (n, sum, min, max) per numeric field,
# (count, set of value hashes) per category field]. Summaries have the same shape.
Bucket = list[Any]
_FORMAT = 1
_HASH_CACHE_LIMIT = 100_000
_hash_cache: dict[str, int] = {}


def bucket_width_ms(window_s: float) -> int:
    """The bucket width, in ms, of a window of ``window_s`` seconds: ``ceil(W / 64)``.

    >>> bucket_width_ms(3600), bucket_width_ms(90), bucket_width_ms(30 * 86400)
    (56250, 1407, 40500000)
    """
    return max(1, math.ceil(round(window_s * 1000) / BUCKETS_PER_WINDOW))


def value_hashes(values: Iterable[str | None]) -> list[int | None]:
    """Stable signed 64-bit hashes (BLAKE2b) of category values; ``None`` stays ``None``.

    Distinct values are told apart by these hashes, so state holds 8 bytes per value whatever
    its length; two values collide with probability about ``n**2 / 2**65``.

    >>> value_hashes(["web", None]) == [value_hashes(["web"])[0], None]
    True
    """
    cache = _hash_cache
    if len(cache) > _HASH_CACHE_LIMIT:
        cache.clear()
    out: list[int | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        h = cache.get(value)
        if h is None:
            digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
            h = cache[value] = int.from_bytes(digest, "little", signed=True)
        out.append(h)
    return out


class WindowBuckets:
    """One entity's buckets for one bucket width, oldest first, and a summary that slides.

    ``keys`` holds the bucket indices (sorted), ``rows`` the buckets (:data:`Bucket` lists).
    The summary of the buckets before the scored event's is kept and moved forward bucket by
    bucket; an out-of-order change to a bucket it covers makes it rebuilt from the rows.

    Examples
    --------
    >>> w = WindowBuckets(1000, ("amount",), ())
    >>> for ts, amount in [(1500, 2.0), (2500, 5.0), (2900, 1.0)]:
    ...     w.add(ts, [amount], [])
    >>> s, head = w.summary(lo=-62, k=2)  # bucket 1; the head, bucket 2, is not summarised
    >>> s, w.keys, w.rows[head]
    ([1, 1500, 1, 2.0, 2.0, 2.0], [1, 2], [2, 2900, 2, 6.0, 1.0, 5.0])
    """

    __slots__ = (
        "_cache",
        "_cache_k",
        "_cache_lo",
        "_empty",
        "_numeric_end",
        "_reducers",
        "_set_slots",
        "categories",
        "keys",
        "numeric",
        "rows",
        "width",
    )

    def __init__(self, width: int, numeric: tuple[str, ...], categories: tuple[str, ...]) -> None:
        self.width = width
        self.keys: list[int] = []
        self.rows: list[Bucket] = []
        self._layout(numeric, categories)

    def _layout(self, numeric: tuple[str, ...], categories: tuple[str, ...]) -> None:
        self.numeric = numeric
        self.categories = categories
        self._empty, self._set_slots, self._reducers = _layout(len(numeric), len(categories))
        self._numeric_end = 2 + 4 * len(numeric)
        self._cache_k: int | None = None
        self._cache_lo = 0
        self._cache: Bucket = []

    def __len__(self) -> int:
        return len(self.keys)

    def empty(self) -> Bucket:
        """A bucket with no events in this layout (with fresh sets: safe to fill)."""
        b = self._empty[:]
        for slot in self._set_slots:
            b[slot] = set()
        return b

    def add(
        self,
        ts: int,
        numbers: Sequence[float],
        hashes: Sequence[int | None],
        cap: int = DISTINCT_CAP,
    ) -> None:
        """Fold one event into its bucket (NaN numbers and ``None`` categories are absent)."""
        j = ts // self.width
        keys = self.keys
        b = self.rows[-1] if keys and keys[-1] == j else self._insert(j)
        if self._cache_k is not None and self._cache_lo <= j < self._cache_k:
            self._cache_k = None  # an out-of-order event changed a summarised bucket
        b[0] += 1
        if ts > b[1]:
            b[1] = ts
        slot = 2
        for v in numbers:
            if v == v:  # not NaN
                b[slot] += 1
                b[slot + 1] += v
                if v < b[slot + 2]:
                    b[slot + 2] = v
                if v > b[slot + 3]:
                    b[slot + 3] = v
            slot += 4
        for h in hashes:
            if h is not None:
                b[slot] += 1
                seen = b[slot + 1]
                if len(seen) < cap:
                    seen.add(h)
            slot += 2

    def _insert(self, j: int) -> Bucket:
        """Bucket ``j``, created where it belongs if it does not exist yet."""
        keys = self.keys
        b = self._empty[:]
        for slot in self._set_slots:
            b[slot] = set()
        if not keys or keys[-1] < j:
            keys.append(j)
            self.rows.append(b)
            return b
        i = bisect.bisect_left(keys, j)
        if keys[i] == j:
            return self.rows[i]
        keys.insert(i, j)
        self.rows.insert(i, b)
        return b

    def summary(self, lo: int, k: int) -> tuple[Bucket, int]:
        """Buckets ``lo .. k-1`` merged, and the position of bucket ``k`` in :attr:`keys` or -1.

        The summary is kept between calls (read it, never change it): as the window slides
        forward, the buckets it passes are added and those it leaves subtracted, so an entity's
        events cost O(1) each rather than a pass over the window. Its sums are therefore exact
        up to floating-point rounding; counts are exact. Distinct values are held as a count of
        the buckets holding each one.
        """
        keys = self.keys
        n = len(keys)
        if not n or keys[-1] < k:
            head = -1
        elif keys[-1] == k:
            head = n - 1
        else:
            head = bisect.bisect_left(keys, k)
            if keys[head] != k:
                head = -1
        cached_k, cached_lo = self._cache_k, self._cache_lo
        if cached_k == k and cached_lo == lo:
            return self._cache, head
        if (
            cached_k is None
            or not cached_lo <= lo <= cached_k <= k
            or not self._slide(cached_lo, cached_k, lo, k)
        ):
            self._cache = self._merged(bisect.bisect_left(keys, lo), bisect.bisect_left(keys, k))
        self._cache_k, self._cache_lo = k, lo
        return self._cache, head

    def _slide(self, old_lo: int, old_k: int, lo: int, k: int) -> bool:
        """Move the summary from ``old_lo .. old_k-1`` to ``lo .. k-1``; False: rebuild it."""
        keys, rows, acc, end = self.keys, self.rows, self._cache, self._numeric_end
        if lo > old_lo:
            left = bisect.bisect_left(keys, old_lo)
            for row in rows[left : bisect.bisect_left(keys, lo)]:
                if not _minus(acc, row, end):
                    return False
        if k > old_k:
            left = bisect.bisect_left(keys, old_k)
            for row in rows[left : bisect.bisect_left(keys, k)]:
                _plus(acc, row, end)
        return True

    def _merged(self, a: int, b: int) -> Bucket:
        """A summary of the buckets at positions ``a .. b-1``, owned by the caller."""
        if a >= b:
            acc = self._empty[:]
            for slot in self._set_slots:
                acc[slot] = {}
            return acc
        return [reduce(column) for reduce, column in zip(self._reducers, zip(*self.rows[a:b]))]

    def evict_before(self, j: int) -> None:
        """Drop the buckets older than bucket ``j``."""
        keys = self.keys
        if keys and keys[0] < j:
            i = bisect.bisect_left(keys, j)
            del keys[:i]
            del self.rows[:i]
            if self._cache_k is not None and self._cache_lo < j:
                self._cache_k = None

    def relayout(self, numeric: tuple[str, ...], categories: tuple[str, ...]) -> None:
        """Re-slot the buckets for other fields: kept ones keep their stats, new ones are empty."""
        if (numeric, categories) == (self.numeric, self.categories):
            return
        old_numeric, old_categories = self.numeric, self.categories
        old_end = 2 + 4 * len(old_numeric)
        self._layout(numeric, categories)
        rows = []
        for old in self.rows:
            row = old[:2]
            for name in numeric:
                if name in old_numeric:
                    slot = 2 + 4 * old_numeric.index(name)
                    row += old[slot : slot + 4]
                else:
                    row += self._empty[2:6]
            for name in categories:
                if name in old_categories:
                    slot = old_end + 2 * old_categories.index(name)
                    row += old[slot : slot + 2]
                else:
                    row += (0, set())
            rows.append(row)
        self.rows = rows

    def to_json(self) -> list[Any]:
        """``[width, numeric, categories, keys, rows]`` for ``orjson.dumps(default=list)``.

        orjson writes the infinite min/max of a field no event carried as ``null``.
        """
        return [self.width, self.numeric, self.categories, self.keys, self.rows]

    @classmethod
    def from_json(cls, doc: list[Any]) -> WindowBuckets:
        """Rebuild from :meth:`to_json`; raises ``ValueError`` when it has the wrong shape."""
        width, numeric, categories, keys, rows = doc
        out = cls(int(width), tuple(numeric), tuple(categories))
        if len(rows) != len(keys) or not set(map(len, rows)) <= {len(out._empty)}:
            raise ValueError("buckets do not match their fields or keys")
        if keys != sorted(keys) or len(set(keys)) != len(keys):
            raise ValueError("bucket keys are not in order")
        if None in itertools.chain.from_iterable(rows):  # a field no event of a bucket carried
            end = 2 + 4 * len(numeric)
            for row in rows:
                for slot in range(4, end, 4):
                    if row[slot] is None:
                        row[slot], row[slot + 1] = math.inf, -math.inf
        for slot in out._set_slots:
            for row in rows:
                row[slot] = set(row[slot])
        out.keys, out.rows = keys, rows
        return out


class EntityState:
    """What one entity's aggregates remember: buckets per window, recent events, offsets.

    Serialises to compact JSON (:meth:`to_bytes`, :meth:`from_bytes`) that does not depend on the
    configuration: an ``Aggregator`` re-slots a state written under other aggregates.

    Examples
    --------
    >>> state = EntityState()
    >>> state.positions[3] = 41
    >>> state.to_bytes()
    b'{"v":1,"p":[[3,41]],"n":null,"rf":[],"r":[],"w":[]}'
    >>> EntityState.from_bytes(state.to_bytes()).positions
    {3: 41}
    """

    __slots__ = ("bound", "newest_ts", "positions", "recent", "recent_fields", "windows")

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}  # partition -> highest offset applied
        self.newest_ts: int | None = None  # newest event time applied, ms
        self.recent: list[tuple[int, tuple[float, ...]]] = []  # newest events, by time
        self.recent_fields: tuple[str, ...] = ()  # the values each recent event keeps
        self.windows: dict[int, WindowBuckets] = {}  # by bucket width, ms
        self.bound: object = None  # the aggregator the layout was last fitted to

    def to_bytes(self) -> bytes:
        """Compact JSON; NaN values and infinite extremes are written as ``null``."""
        doc = {
            "v": _FORMAT,
            "p": list(self.positions.items()),
            "n": self.newest_ts,
            "rf": self.recent_fields,
            "r": [(ts, *values) for ts, values in self.recent],
            "w": [w.to_json() for w in self.windows.values()],
        }
        return orjson.dumps(doc, default=list)  # sets of value hashes become lists

    @classmethod
    def from_bytes(cls, data: bytes | str) -> EntityState:
        """Rebuild a state from :meth:`to_bytes`; raises ``ValueError`` on anything else."""
        try:
            doc = orjson.loads(data)
            if doc["v"] != _FORMAT:
                raise ValueError(f"state format {doc['v']!r}, expected {_FORMAT}")
            state = cls()
            state.positions = {int(p): int(o) for p, o in doc["p"]}
            state.newest_ts = None if doc["n"] is None else int(doc["n"])
            state.recent_fields = tuple(doc["rf"])
            recent = doc["r"]
            if None in itertools.chain.from_iterable(recent):  # NaN values
                recent = [[math.nan if v is None else v for v in r] for r in recent]
            state.recent = [(r[0], tuple(r[1:])) for r in recent]
            for window in doc["w"]:
                w = WindowBuckets.from_json(window)
                state.windows[w.width] = w
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"not an aggregate state: {exc}") from None
        return state


@lru_cache(maxsize=64)
def _layout(numeric: int, categories: int) -> tuple[Bucket, tuple[int, ...], tuple[Any, ...]]:
    """The empty bucket, the slots of hash sets and the reducer per slot of a layout."""
    empty = _empty(numeric, categories)
    end = 2 + 4 * numeric
    set_slots = tuple(range(end + 1, len(empty), 2))
    reducers = (sum, max) + (sum, sum, min, max) * numeric + (sum, _counted) * categories
    return empty, set_slots, reducers


def _counted(sets: Iterable[set[int]]) -> dict[int, int]:
    """How many of ``sets`` hold each value (a plain dict: sets test membership in it fast)."""
    return dict(Counter(itertools.chain.from_iterable(sets)))


def _plus(acc: Bucket, row: Bucket, end: int) -> None:
    """Add bucket ``row`` to the summary ``acc``; numeric slots end before ``end``."""
    acc[0] += row[0]
    for slot in range(2, end, 4):
        acc[slot] += row[slot]
        acc[slot + 1] += row[slot + 1]
        if row[slot + 2] < acc[slot + 2]:
            acc[slot + 2] = row[slot + 2]
        if row[slot + 3] > acc[slot + 3]:
            acc[slot + 3] = row[slot + 3]
    for slot in range(end, len(acc), 2):
        acc[slot] += row[slot]
        counts = acc[slot + 1]
        for value in row[slot + 1]:
            counts[value] = counts.get(value, 0) + 1


def _minus(acc: Bucket, row: Bucket, end: int) -> bool:
    """Take bucket ``row`` out of ``acc``; False if it may have held an extreme (rebuild)."""
    acc[0] -= row[0]
    for slot in range(2, end, 4):
        if row[slot] and (row[slot + 2] <= acc[slot + 2] or row[slot + 3] >= acc[slot + 3]):
            return False
        acc[slot] -= row[slot]
        acc[slot + 1] = acc[slot + 1] - row[slot + 1] if acc[slot] else 0.0
    for slot in range(end, len(acc), 2):
        acc[slot] -= row[slot]
        counts = acc[slot + 1]
        for value in row[slot + 1]:
            if counts[value] == 1:
                del counts[value]
            else:
                counts[value] -= 1
    return True


def _empty(numeric: int, categories: int) -> Bucket:
    """A bucket with no events: [events, newest, (n, sum, min, max)..., (count, set)...]."""
    out: Bucket = [0, -1]
    out += (0, 0.0, math.inf, -math.inf) * numeric
    for _ in range(categories):
        out += (0, set())
    return out
