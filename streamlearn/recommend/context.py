"""What each event of a batch is scored from: its user's history just before it, and exclusions.

A batch's earlier events of the same user count as history, exactly as if each event had come in
a batch of its own; only the models' parameters stay as they were before the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamlearn.recommend.memory import UserHistories


@dataclass(slots=True)
class Contexts:
    """Per query, the weighted recent items it is scored from and the items it must not show.

    ``slots[ptr[q]:ptr[q+1]]`` (oldest first) with ``weights`` is query q's context, already
    decayed by age; ``excluded[ex_ptr[q]:ex_ptr[q+1]]`` are the slots it must not show.
    Items not in the catalogue are left out of both.
    """

    ptr: np.ndarray
    slots: np.ndarray
    weights: np.ndarray
    ex_ptr: np.ndarray
    excluded: np.ndarray

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def rows(self) -> np.ndarray:
        """The query each context entry belongs to."""
        return np.repeat(np.arange(len(self)), np.diff(self.ptr))

    def excluded_rows(self) -> np.ndarray:
        """The query each excluded slot belongs to."""
        return np.repeat(np.arange(len(self)), np.diff(self.ex_ptr))

    def sizes(self) -> np.ndarray:
        """How many context entries each query has."""
        return np.diff(self.ptr)

    def take(self, queries: np.ndarray) -> Contexts:
        """The given queries, in that order, as contexts of their own."""
        sizes, ex_sizes = np.diff(self.ptr)[queries], np.diff(self.ex_ptr)[queries]
        return Contexts(
            np.r_[0, np.cumsum(sizes)].astype(np.int64),
            self.slots[_spans(self.ptr[queries], sizes)],
            self.weights[_spans(self.ptr[queries], sizes)],
            np.r_[0, np.cumsum(ex_sizes)].astype(np.int64),
            self.excluded[_spans(self.ex_ptr[queries], ex_sizes)],
        )

    def part(self, start: int, stop: int) -> Contexts:
        """Queries ``start`` to ``stop`` as contexts of their own."""
        a, b = self.ptr[start], self.ptr[stop]
        ea, eb = self.ex_ptr[start], self.ex_ptr[stop]
        return Contexts(
            self.ptr[start : stop + 1] - a,
            self.slots[a:b],
            self.weights[a:b],
            self.ex_ptr[start : stop + 1] - ea,
            self.excluded[ea:eb],
        )


@dataclass(slots=True)
class BatchEvents:
    """A batch's events as the contexts need them: who, which slot (-1 unknown), how much."""

    users: list[str]
    slots: np.ndarray
    weights: np.ndarray
    excludes: np.ndarray  # whether the event's kind keeps its item from being shown again


def batch_contexts(
    events: BatchEvents,
    histories: UserHistories,
    generation: np.ndarray,
    decay: float,
    finals: bool,
    extra_users: Sequence[str] = (),
) -> tuple[Contexts, list[str]]:
    """One context per event (the history before it) and, with ``finals``, one per user after all.

    Returns the contexts (events first, then with ``finals`` one per distinct user of the batch
    and of ``extra_users``, in first-seen order) and those users. Reads ``histories`` only.

    Examples
    --------
    >>> h = UserHistories(max_users=10, history_len=3, excluded_len=3)
    >>> gen = np.zeros(8, dtype=np.int32)
    >>> h.append(["u"], np.array([1]), np.array([1.0]), np.array([True]), gen)
    >>> batch = BatchEvents(["u", "v", "u"], np.array([2, 3, -1]), np.array([1.0, 1, 1]),
    ...                     np.array([False, True, True]))
    >>> ctx, users = batch_contexts(batch, h, gen, decay=0.5, finals=True)
    >>> users, ctx.ptr.tolist(), ctx.slots.tolist(), ctx.weights.tolist()
    (['u', 'v'], [0, 1, 1, 3, 5, 6], [1, 1, 2, 1, 2, 3], [1.0, 0.5, 1.0, 0.5, 1.0, 1.0])
    >>> ctx.ex_ptr.tolist(), ctx.excluded.tolist()
    ([0, 1, 1, 2, 3, 4], [1, 1, 1, 3])
    """
    users = list(dict.fromkeys([*events.users, *extra_users]))
    index = {u: i for i, u in enumerate(users)}
    owner = np.fromiter((index[u] for u in events.users), dtype=np.int64, count=len(events.users))
    rows = np.array([histories.row(u) for u in users], dtype=np.int64)
    known = rows >= 0
    pre_slots = np.full((len(users), histories.history_len), -1, dtype=np.int64)
    pre_weights = np.zeros((len(users), histories.history_len), dtype=np.float64)
    pre_excluded = np.full((len(users), histories.excluded_len), -1, dtype=np.int64)
    if known.any():
        pre_slots[known], pre_weights[known] = histories.recent(rows[known], generation)
        pre_excluded[known] = histories.recent_excluded(rows[known], generation)

    # A known item's event joins its user's history (and exclusions, for an excluding kind).
    joins = events.slots >= 0
    excludes = joins & np.asarray(events.excludes, dtype=bool)
    history = _Sequences(pre_slots, pre_weights, owner, joins, events.slots, events.weights)
    banned = _Sequences(pre_excluded, None, owner, excludes, events.slots, None)
    queries = np.r_[owner, np.arange(len(users))] if finals else owner
    ctx = history.windows(queries, finals, histories.history_len)
    ex = banned.windows(queries, finals, histories.excluded_len)
    sizes = ctx[:, 1] - ctx[:, 0]
    ptr = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    take = _spans(ctx[:, 0], sizes)
    # Age 0 is a query's latest event: it counts fully, older ones by decay ** age.
    age = np.repeat(ptr[1:], sizes) - 1 - np.arange(ptr[-1])
    ex_sizes = ex[:, 1] - ex[:, 0]
    return (
        Contexts(
            ptr=ptr,
            slots=history.slots[take],
            weights=history.weights[take] * decay ** age.astype(np.float64),
            ex_ptr=np.r_[0, np.cumsum(ex_sizes)].astype(np.int64),
            excluded=banned.slots[_spans(ex[:, 0], ex_sizes)],
        ),
        users if finals else [],
    )


class _Sequences:
    """Every user's remembered entries followed by their batch events, in one flat array."""

    def __init__(
        self,
        pre: np.ndarray,
        pre_weights: np.ndarray | None,
        owner: np.ndarray,
        joins: np.ndarray,
        slots: np.ndarray,
        weights: np.ndarray | None,
    ) -> None:
        valid = pre >= 0
        self.pre_len = valid.sum(axis=1)
        joined = owner[joins]
        self.batch_len = np.bincount(joined, minlength=len(pre))
        lengths = (self.pre_len + self.batch_len).astype(np.int64)
        self.start = np.cumsum(lengths) - lengths
        total = int((self.pre_len + self.batch_len).sum())
        # Each event's place among its user's joining events in the batch (before it: `seen`).
        self.seen = _count_before(owner, joins)
        at_pre = _spans(self.start, self.pre_len)
        at_batch = self.start[joined] + self.pre_len[joined] + self.seen[joins]
        self.slots = np.empty(total, dtype=np.int64)
        self.slots[at_pre] = pre[valid]
        self.slots[at_batch] = slots[joins]
        self.weights = np.zeros(total, dtype=np.float64)
        if pre_weights is not None and weights is not None:
            self.weights[at_pre] = pre_weights[valid]
            self.weights[at_batch] = weights[joins]
        self.owner = owner

    def windows(self, queries: np.ndarray, finals: bool, length: int) -> np.ndarray:
        """Per query, [start, stop) of its last ``length`` entries: before the event, or all."""
        n = len(self.owner)
        users = queries
        ends = self.pre_len[users].copy()
        ends[:n] += self.seen
        if finals:
            ends[n:] += self.batch_len[users[n:]]
        starts = np.maximum(ends - length, 0)
        base = self.start[users]
        return np.stack([base + starts, base + ends], axis=1)


def _count_before(groups: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements of its group have ``mask`` set."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    g, m = groups[order], mask[order].astype(np.int64)
    running = np.cumsum(m) - m  # masked elements before each, over the sorted array
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[first, len(g)])
    counts = np.empty(len(groups), dtype=np.int64)
    counts[order] = running - np.repeat(running[first], sizes)
    return counts


def _spans(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The indices ``start .. start + size - 1`` of each span, concatenated."""
    total = int(sizes.sum())
    offsets = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
    return np.arange(total, dtype=np.int64) + offsets
