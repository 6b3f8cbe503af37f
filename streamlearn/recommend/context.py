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
    rows = np.array([histories.row(u) for u in users], dtype=np.int64)
    known = rows >= 0
    pre_slots = np.full((len(users), histories.history_len), -1, dtype=np.int64)
    pre_weights = np.zeros((len(users), histories.history_len), dtype=np.float64)
    pre_excluded = np.full((len(users), histories.excluded_len), -1, dtype=np.int64)
    if known.any():
        pre_slots[known], pre_weights[known] = histories.recent(rows[known], generation)
        pre_excluded[known] = histories.recent_excluded(rows[known], generation)

    index = {u: i for i, u in enumerate(users)}
    history: list[list[tuple[int, float]]] = []
    excluded: list[list[int]] = []
    for i in range(len(users)):
        s, w = pre_slots[i], pre_weights[i]
        history.append([(int(a), float(b)) for a, b in zip(s[s >= 0], w[s >= 0])])
        excluded.append([int(a) for a in pre_excluded[i] if a >= 0])

    length = histories.history_len
    ctx_lists: list[list[tuple[int, float]]] = []
    ex_lists: list[list[int]] = []
    slots, weights, flags = events.slots.tolist(), events.weights.tolist(), events.excludes
    for e, user in enumerate(events.users):
        u = index[user]
        ctx_lists.append(history[u][-length:])
        ex_lists.append(list(excluded[u]))
        if slots[e] >= 0:
            history[u].append((slots[e], weights[e]))
            if flags[e]:
                excluded[u].append(slots[e])
    if finals:
        ctx_lists.extend(h[-length:] for h in history)
        ex_lists.extend(excluded)
    return _pack(ctx_lists, ex_lists, decay), users if finals else []


def _spans(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The indices ``start .. start + size - 1`` of each span, concatenated."""
    total = int(sizes.sum())
    offsets = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes)
    return np.arange(total, dtype=np.int64) + offsets


def _pack(
    ctx_lists: list[list[tuple[int, float]]], ex_lists: list[list[int]], decay: float
) -> Contexts:
    sizes = np.fromiter((len(c) for c in ctx_lists), dtype=np.int64, count=len(ctx_lists))
    ptr = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    flat = [pair for c in ctx_lists for pair in c]
    pairs = np.array(flat, dtype=np.float64).reshape(-1, 2)
    # Age 0 is a query's latest event: it counts fully, older ones by decay ** age.
    age = np.repeat(ptr[1:], sizes) - 1 - np.arange(ptr[-1])
    ex_sizes = np.fromiter((len(x) for x in ex_lists), dtype=np.int64, count=len(ex_lists))
    return Contexts(
        ptr=ptr,
        slots=pairs[:, 0].astype(np.int64),
        weights=pairs[:, 1] * decay ** age.astype(np.float64),
        ex_ptr=np.r_[0, np.cumsum(ex_sizes)].astype(np.int64),
        excluded=np.fromiter((s for x in ex_lists for s in x), dtype=np.int64),
    )
