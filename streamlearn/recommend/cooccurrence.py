"""Item-to-item co-occurrence: items a user interacts with close together in their history.

Each item keeps its ``neighbours`` strongest co-occurring items (decayed counts); a list is
scored by summing the cosine-normalised neighbours of the items in the user's recent context.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from streamlearn.recommend.context import Contexts
from streamlearn.recommend.memory import grown
from streamlearn.recommend.popularity import DecayClock


class Cooccurrence:
    """Bounded item-item co-occurrence counts, learned from each event and the events before it.

    Parameters
    ----------
    neighbours
        Co-occurring items kept per item: the strongest, the rest dropped.
    pair_window
        How many of the user's most recent events (the context's last) pair with a new event.
    half_life_ms
        How fast pair counts fade, in event time.
    repeat_weight
        How similar an item counts to itself: above 0, what the user just interacted with comes
        back (carts follow views; excluded kinds are still never shown again).

    Examples
    --------
    >>> from streamlearn.recommend.context import Contexts
    >>> co = Cooccurrence(neighbours=2, pair_window=1, half_life_ms=10**9)
    >>> co.resize(4)
    >>> ctx = Contexts(np.array([0, 0, 1, 1, 2]), np.array([0, 2]), np.array([1.0, 1.0]),
    ...                np.zeros(5, dtype=np.int64), np.zeros(0, dtype=np.int64))
    >>> co.learn(ctx, np.array([0, 1, 2, 3]), np.ones(4), np.zeros(4, dtype=np.int64))
    >>> co.neighbour_lists(0), co.neighbour_lists(3)  # 0 then 1; 2 then 3
    ([(1, 1.0)], [(2, 1.0)])
    >>> query = Contexts(np.array([0, 1]), np.array([3]), np.array([1.0]),
    ...                  np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64))
    >>> co.scores(query, 4).toarray().tolist()
    [[0.0, 0.0, 1.0, 0.0]]
    """

    def __init__(
        self, neighbours: int, pair_window: int, half_life_ms: int, repeat_weight: float = 0.0
    ) -> None:
        self.neighbours = neighbours
        self.repeat_weight = repeat_weight
        self.pair_window = pair_window
        self.clock = DecayClock(half_life_ms)
        self.index = np.full((0, neighbours), -1, dtype=np.int32)  # -1: an empty entry
        self.counts = np.zeros((0, neighbours), dtype=np.float32)
        self.mass = np.zeros(0, dtype=np.float64)  # all pair counts of a slot, kept or dropped

    def resize(self, size: int) -> None:
        """Make room for slots up to ``size``."""
        self.index = grown(self.index, size, fill=-1)
        self.counts = grown(self.counts, size)
        self.mass = grown(self.mass, size)

    def forget(self, slots: np.ndarray) -> None:
        """Drop evicted slots' rows and every pair that points at them."""
        self.index[slots] = -1
        self.counts[slots] = 0.0
        self.mass[slots] = 0.0
        stale = np.isin(self.index, slots)
        self.index[stale] = -1
        self.counts[stale] = 0.0

    def neighbour_lists(self, slot: int) -> list[tuple[int, float]]:
        """A slot's kept neighbours and their stored counts, strongest first."""
        keep = self.index[slot] >= 0
        pairs = zip(self.index[slot][keep].tolist(), self.counts[slot][keep].tolist())
        return sorted(pairs, key=lambda p: -p[1])

    def learn(
        self, contexts: Contexts, slots: np.ndarray, weights: np.ndarray, ts_ms: np.ndarray
    ) -> None:
        """Count each event (``slots[q]``) with the last events of its context, both ways."""
        factor = self.clock.advance(ts_ms)
        if factor is not None:
            self.counts *= np.float32(factor)
            self.mass *= factor
        rows = contexts.rows()
        # Only the context's last `pair_window` entries pair with the event.
        recent = (contexts.ptr[1:][rows] - np.arange(len(rows))) <= self.pair_window
        rows = rows[recent]
        before = contexts.slots[recent]
        after = slots[rows]
        inc = contexts.weights[recent] * weights[rows] * self.clock.scale(ts_ms)[rows]
        distinct = before != after
        before, after, inc = before[distinct], after[distinct], inc[distinct]
        if len(inc):
            self._add(np.r_[before, after], np.r_[after, before], np.r_[inc, inc])

    def scores(self, contexts: Contexts, size: int) -> sp.csr_matrix:
        """Per query, the summed cosine similarity of each slot to its context (sparse)."""
        used, col = np.unique(contexts.slots, return_inverse=True)
        query = sp.csr_matrix(
            (contexts.weights, col.ravel(), contexts.ptr), shape=(len(contexts), len(used))
        )
        index, counts = self.index[used], self.counts[used].astype(np.float64)
        keep = index >= 0
        norm = np.sqrt(np.maximum(self.mass, 1e-300))
        r = np.repeat(np.arange(len(used)), keep.sum(axis=1))
        cols = index[keep].astype(np.int64)
        sims = counts[keep] / (norm[used][r] * norm[cols])
        if self.repeat_weight > 0:
            r = np.r_[r, np.arange(len(used))]
            cols = np.r_[cols, used]
            sims = np.r_[sims, np.full(len(used), self.repeat_weight)]
        similar = sp.csr_matrix((sims, (r, cols)), shape=(len(used), size))
        return sp.csr_matrix(query @ similar)

    def _add(self, rows: np.ndarray, cols: np.ndarray, inc: np.ndarray) -> None:
        self.mass += np.bincount(rows, inc, minlength=len(self.mass))
        touched = np.unique(rows)
        old_index, old_counts = self.index[touched], self.counts[touched]
        kept = old_index >= 0
        old_rows = np.repeat(touched, kept.sum(axis=1))
        size = np.int64(len(self.mass))
        keys = np.r_[old_rows * size + old_index[kept], rows * size + cols]
        values = np.r_[old_counts[kept].astype(np.float64), inc]
        keys, inverse = np.unique(keys, return_inverse=True)
        sums = np.bincount(inverse.ravel(), values)
        key_rows, key_cols = keys // size, keys % size
        # Strongest first within each row; a row keeps its first `neighbours`.
        order = np.lexsort((key_cols, -sums, key_rows))
        key_rows, key_cols, sums = key_rows[order], key_cols[order], sums[order]
        starts = np.flatnonzero(np.r_[True, key_rows[1:] != key_rows[:-1]])
        rank = np.arange(len(key_rows)) - np.repeat(starts, np.diff(np.r_[starts, len(key_rows)]))
        top = rank < self.neighbours
        self.index[touched] = -1
        self.counts[touched] = 0.0
        self.index[key_rows[top], rank[top]] = key_cols[top]
        self.counts[key_rows[top], rank[top]] = sums[top]
