"""Prequential ranking quality: hit-rate@K and NDCG@K of the lists served before each event.

Each event's served list is judged against the item the user then interacted with, cumulatively
and over a rolling window; the per-event hits of the last update feed a drift detector.
"""

from __future__ import annotations

import numpy as np

from streamlearn.recommend.events import InteractionBatch
from streamlearn.recommend.recommender import Served


class RankingEvaluator:
    """Hit-rate@K and NDCG@K of served lists, since the start and over the last ``window`` events.

    A hit is the event's item anywhere in its served top ``k``; its NDCG is
    ``1 / log2(rank + 1)`` at 1-based ``rank`` (one relevant item, so the ideal DCG is 1).

    Parameters
    ----------
    k
        The list length judged (longer served lists are cut to it).
    window
        How many of the most recent judged events the rolling scores cover.

    Examples
    --------
    >>> from streamlearn.recommend.events import InteractionBatch
    >>> from streamlearn.recommend.recommender import Served
    >>> ev = RankingEvaluator(k=10, window=2)
    >>> batch = InteractionBatch(["u", "u", "v"], ["a", "b", "c"], ["view"] * 3, [1, 1, 1],
    ...                          [1, 2, 3])
    >>> ev.update(Served([["a", "x"], ["x", "b"], ["y"]], [[2, 1], [2, 1], [1]]), batch)
    >>> ev.last_hits.tolist(), ev.scores()
    ([1, 1, 0], {'hit_rate_at_10': 0.6666666666666666, 'ndcg_at_10': 0.5436432511904858})
    >>> ev.rolling()  # the last two events
    {'hit_rate_at_10': 0.5, 'ndcg_at_10': 0.31546487678572877}
    """

    def __init__(self, k: int = 10, window: int = 10_000) -> None:
        if k < 1 or window < 1:
            raise ValueError(f"k and window must be at least 1, got k={k}, window={window}")
        self.k = k
        self.window = window
        self.count = 0
        self._hits_total = 0.0
        self._gain_total = 0.0
        self._hits = np.zeros(window, dtype=np.int8)
        self._gains = np.zeros(window, dtype=np.float64)
        self._next = 0
        self._filled = 0
        self.last_hits = np.zeros(0, dtype=np.int8)

    def update(
        self, served: Served, batch: InteractionBatch, keep: np.ndarray | None = None
    ) -> None:
        """Judge each event's served list against its item (only events where ``keep``)."""
        if len(served.items) != len(batch):
            raise ValueError(
                f"served {len(served.items)} lists for {len(batch)} events; they must pair up"
            )
        rows = range(len(batch)) if keep is None else np.flatnonzero(keep).tolist()
        ranks = np.array([_rank(served.items[i][: self.k], batch.items[i]) for i in rows])
        hits = (ranks > 0).astype(np.int8)
        gains = np.where(ranks > 0, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
        self.last_hits = hits
        self.count += len(hits)
        self._hits_total += float(hits.sum())
        self._gain_total += float(gains.sum())
        self._push(hits, gains)

    def scores(self) -> dict[str, float]:
        """Cumulative ``hit_rate_at_{k}`` and ``ndcg_at_{k}``; empty before any event."""
        if self.count == 0:
            return {}
        return self._named(self._hits_total / self.count, self._gain_total / self.count)

    def rolling(self) -> dict[str, float]:
        """The same scores over the last ``window`` judged events."""
        if self._filled == 0:
            return {}
        n = self._filled
        return self._named(float(self._hits[:n].mean()), float(self._gains[:n].mean()))

    def _named(self, hit_rate: float, ndcg: float) -> dict[str, float]:
        return {f"hit_rate_at_{self.k}": hit_rate, f"ndcg_at_{self.k}": ndcg}

    def _push(self, hits: np.ndarray, gains: np.ndarray) -> None:
        if len(hits) > self.window:
            hits, gains = hits[-self.window :], gains[-self.window :]
        n = len(hits)
        head = min(n, self.window - self._next)
        self._hits[self._next : self._next + head] = hits[:head]
        self._gains[self._next : self._next + head] = gains[:head]
        self._hits[: n - head] = hits[head:]
        self._gains[: n - head] = gains[head:]
        self._next = (self._next + n) % self.window
        self._filled = min(self.window, self._filled + n)


def _rank(items: list[str], item: str) -> int:
    """1-based position of ``item`` in ``items``, 0 when absent."""
    try:
        return items.index(item) + 1
    except ValueError:
        return 0
