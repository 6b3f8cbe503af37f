"""Bounded per-item and per-user memory: item slots and users' recent histories.

Both forget the least recently active entry once full, so memory never grows past the caps.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

FIRST_CAPACITY = 64  # arrays start this small and double up to the cap


def grown(array: np.ndarray, size: int, fill: float | int = 0) -> np.ndarray:
    """``array`` with its first axis extended to ``size`` rows of ``fill`` (itself if long enough).

    >>> grown(np.array([1, 2]), 4, fill=-1).tolist()
    [1, 2, -1, -1]
    """
    if len(array) >= size:
        return array
    extra = np.full((size - len(array), *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, extra])


def _capacity(needed: int, current: int, cap: int) -> int:
    size = max(current, FIRST_CAPACITY)
    while size < needed:
        size *= 2
    return min(size, cap)


class ItemCatalogue:
    """Item ids mapped to dense slots 0..n-1, at most ``max_items`` of them.

    A new item past the cap takes the slot of the least recently active item; the slot's
    generation goes up, so anything that stored (slot, generation) can tell it went stale.

    Examples
    --------
    >>> cat = ItemCatalogue(max_items=2)
    >>> cat.admit(["a", "b", "a"]).tolist(), cat.evicted
    ([0, 1, 0], [])
    >>> cat.admit(["c"]).tolist(), cat.evicted, cat.lookup(["a", "b", "zz"]).tolist()
    ([1], [1], [0, -1, -1])
    >>> cat.ids, cat.generation.tolist()[:2]
    (['a', 'c'], [0, 1])
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._slots: OrderedDict[str, int] = OrderedDict()  # least recently active first
        self.ids: list[str] = []  # slot -> item id
        self.generation = np.zeros(0, dtype=np.int32)
        self.evicted: list[int] = []  # slots reused by the last admit

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def size(self) -> int:
        """How many slots are in use (all of 0..size-1)."""
        return len(self.ids)

    def lookup(self, items: list[str]) -> np.ndarray:
        """Each item's slot, or -1 for an item not in the catalogue; changes nothing."""
        get = self._slots.get
        return np.fromiter((get(item, -1) for item in items), dtype=np.int64, count=len(items))

    def admit(self, items: list[str]) -> np.ndarray:
        """Each item's slot, adding new items (evicting the least recently active past the cap).

        The items become the most recently active, in order. :attr:`evicted` lists the slots
        that were handed to new items; their old contents must be forgotten.
        """
        slots = np.empty(len(items), dtype=np.int64)
        self.evicted = []
        table = self._slots
        for i, item in enumerate(items):
            slot = table.get(item)
            if slot is not None:
                table.move_to_end(item)
            elif len(table) < self.max_items:
                slot = len(self.ids)
                self.ids.append(item)
                table[item] = slot
            else:
                _, slot = table.popitem(last=False)
                self.ids[slot] = item
                table[item] = slot
                self.evicted.append(slot)
            slots[i] = slot
        if len(self.generation) < len(self.ids):
            self.generation = grown(
                self.generation, _capacity(len(self.ids), len(self.generation), self.max_items)
            )
        if self.evicted:
            np.add.at(self.generation, np.array(self.evicted), 1)
        return slots


class UserHistories:
    """Each user's last ``history_len`` events and last ``excluded_len`` excluded items.

    Rows are ring buffers of (item slot, slot generation, weight); an entry whose item was
    evicted from the catalogue since is skipped on reading. A new user past ``max_users`` takes
    the row of the least recently active user.

    Examples
    --------
    >>> users = UserHistories(max_users=1, history_len=2, excluded_len=2)
    >>> gen = np.zeros(8, dtype=np.int32)
    >>> users.append(["u"], np.array([3]), np.array([1.0]), np.array([True]), gen)
    >>> users.append(["u", "u"], np.array([4, 5]), np.array([2.0, 1.0]), np.array([0, 0]) > 0, gen)
    >>> users.history("u", gen), users.excluded("u", gen)
    ([(4, 2.0), (5, 1.0)], [3])
    >>> users.append(["v"], np.array([6]), np.array([1.0]), np.array([False]), gen)
    >>> "u" in users, users.history("v", gen)
    (False, [(6, 1.0)])
    """

    def __init__(self, max_users: int, history_len: int, excluded_len: int) -> None:
        self.max_users = max_users
        self.history_len = history_len
        self.excluded_len = excluded_len
        self._rows: OrderedDict[str, int] = OrderedDict()  # least recently active first
        self._free: list[int] = []
        self._n_rows = 0
        self.slots = np.zeros((0, history_len), dtype=np.int32)
        self.gens = np.zeros((0, history_len), dtype=np.int32)
        self.weights = np.zeros((0, history_len), dtype=np.float32)
        self.count = np.zeros(0, dtype=np.int64)  # events ever appended to each row
        self.ex_slots = np.zeros((0, excluded_len), dtype=np.int32)
        self.ex_gens = np.zeros((0, excluded_len), dtype=np.int32)
        self.ex_count = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, user: object) -> bool:
        return user in self._rows

    def row(self, user: str) -> int:
        """The user's row, or -1 for a user not remembered."""
        return self._rows.get(user, -1)

    def append(
        self,
        users: list[str],
        slots: np.ndarray,
        weights: np.ndarray,
        exclude: np.ndarray,
        generation: np.ndarray,
    ) -> None:
        """Add events (in stream order) to their users' histories, admitting new users."""
        rows = np.fromiter((self._admit(u) for u in users), dtype=np.int64, count=len(users))
        r, pos, keep = _ring_writes(rows, self.count, self.history_len)
        self.slots[r, pos] = slots[keep]
        self.gens[r, pos] = generation[slots[keep]]
        self.weights[r, pos] = weights[keep]
        ex = np.asarray(exclude, dtype=bool)
        r, pos, keep = _ring_writes(rows[ex], self.ex_count, self.excluded_len)
        self.ex_slots[r, pos] = slots[ex][keep]
        self.ex_gens[r, pos] = generation[slots[ex][keep]]

    def history(self, user: str, generation: np.ndarray) -> list[tuple[int, float]]:
        """The user's remembered (slot, weight) events, oldest first."""
        row = self.row(user)
        if row < 0:
            return []
        slots, weights = self.recent(np.array([row]), generation)
        return [(int(s), float(w)) for s, w in zip(slots[0], weights[0]) if s >= 0]

    def excluded(self, user: str, generation: np.ndarray) -> list[int]:
        """The slots the user must not be shown again, oldest first."""
        row = self.row(user)
        if row < 0:
            return []
        slots = self.recent_excluded(np.array([row]), generation)
        return [int(s) for s in slots[0] if s >= 0]

    def recent(self, rows: np.ndarray, generation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows' histories, oldest first, as (slots, weights) arrays; -1 marks an empty entry."""
        order = _ring_order(self.count[rows], self.history_len)
        valid = order >= 0
        take = np.where(valid, order, 0)
        slots = np.take_along_axis(self.slots[rows], take, axis=1).astype(np.int64)
        gens = np.take_along_axis(self.gens[rows], take, axis=1)
        weights = np.take_along_axis(self.weights[rows], take, axis=1).astype(np.float64)
        valid &= gens == generation[slots]
        return np.where(valid, slots, -1), np.where(valid, weights, 0.0)

    def recent_excluded(self, rows: np.ndarray, generation: np.ndarray) -> np.ndarray:
        """Rows' excluded slots, oldest first; -1 marks an empty entry."""
        order = _ring_order(self.ex_count[rows], self.excluded_len)
        valid = order >= 0
        take = np.where(valid, order, 0)
        slots = np.take_along_axis(self.ex_slots[rows], take, axis=1).astype(np.int64)
        gens = np.take_along_axis(self.ex_gens[rows], take, axis=1)
        valid &= gens == generation[slots]
        return np.where(valid, slots, -1)

    def _admit(self, user: str) -> int:
        table = self._rows
        row = table.get(user)
        if row is not None:
            table.move_to_end(user)
            return row
        if len(table) >= self.max_users:
            _, row = table.popitem(last=False)
            self.count[row] = 0
            self.ex_count[row] = 0
        else:
            row = self._n_rows
            self._n_rows += 1
            if row >= len(self.count):
                self._grow(_capacity(row + 1, len(self.count), self.max_users))
        table[user] = row
        return row

    def _grow(self, size: int) -> None:
        self.slots = grown(self.slots, size)
        self.gens = grown(self.gens, size)
        self.weights = grown(self.weights, size)
        self.count = grown(self.count, size)
        self.ex_slots = grown(self.ex_slots, size)
        self.ex_gens = grown(self.ex_gens, size)
        self.ex_count = grown(self.ex_count, size)


def _ring_writes(
    rows: np.ndarray, count: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where events for ``rows`` (in order) go in rings of ``length``; advances ``count``.

    Returns the rows and ring positions to write, and which events they are: only a row's last
    ``length`` events of the call, since earlier ones would be overwritten within it.
    """
    if len(rows) == 0:
        return rows, rows, np.zeros(0, dtype=bool)
    # Each event's position among its row's events in this call, so one call equals many.
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    sizes = np.diff(np.r_[starts, len(rows)])
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - np.repeat(starts, sizes)
    total = np.empty(len(rows), dtype=np.int64)
    total[order] = np.repeat(sizes, sizes)
    keep = rank >= total - length
    pos = (count[rows] + rank)[keep] % length
    np.add.at(count, rows, 1)
    return rows[keep], pos, keep


def _ring_order(count: np.ndarray, length: int) -> np.ndarray:
    """For rows with ``count`` events written, the ring index of each kept entry, oldest first."""
    j = np.arange(length)
    start = count[:, None] - length + j[None, :]
    return np.where(start >= 0, start % length, -1)
