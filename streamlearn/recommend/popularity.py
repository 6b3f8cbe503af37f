"""Recency-weighted item popularity: signal counts that halve every half-life of event time.

The baseline model, and what an unknown user is shown (cold start).
"""

from __future__ import annotations

import numpy as np

from streamlearn.recommend.memory import grown

# Counts are kept on a scale that grows with event time instead of decaying them all at every
# event; past this many half-lives the scale is folded back into the counts.
RESCALE_AFTER = 30.0


class DecayClock:
    """Turns event times into the growing scale that decayed counts are stored on.

    A count added at time t is stored times ``2 ** ((t - origin) / half_life)``, so dividing all
    counts by the scale at ``now`` gives each its weight decayed to now, at no cost per count.
    Once ``now`` is :data:`RESCALE_AFTER` half-lives past the origin, the origin moves up to it
    and :meth:`advance` says by how much the stored counts must shrink.

    >>> clock = DecayClock(half_life_ms=10)
    >>> clock.advance(np.array([0, 20])), clock.scale(np.array([0, 10, 20])).tolist()
    (None, [1.0, 2.0, 4.0])
    >>> clock.advance(np.array([400])), clock.scale(np.array([400])).tolist()
    (9.094947017729282e-13, [1.0])
    """

    def __init__(self, half_life_ms: int) -> None:
        self.half_life_ms = half_life_ms
        self.origin_ms: int | None = None
        self.now_ms = 0

    def advance(self, ts_ms: np.ndarray) -> float | None:
        """Advance ``now`` to the latest of ``ts_ms``; return the factor stored counts shrink by."""
        if len(ts_ms) == 0:
            return None
        latest = int(np.max(ts_ms))
        if self.origin_ms is None:
            self.origin_ms = int(np.min(ts_ms))
        self.now_ms = max(self.now_ms, latest)
        exponent = (self.now_ms - self.origin_ms) / self.half_life_ms
        if exponent < RESCALE_AFTER:
            return None
        self.origin_ms = self.now_ms
        return float(np.exp2(-exponent))

    def scale(self, ts_ms: np.ndarray) -> np.ndarray:
        """The storage scale of counts at these times (after :meth:`advance` past them)."""
        origin = self.now_ms if self.origin_ms is None else self.origin_ms
        return np.exp2((np.asarray(ts_ms, dtype=np.int64) - origin) / self.half_life_ms)

    def now_scale(self) -> float:
        """The storage scale at ``now``: stored counts over it are counts decayed to now."""
        return float(self.scale(np.array([self.now_ms]))[0])


class Popularity:
    """Each item slot's event-weighted count, decayed with a half-life in event time.

    Examples
    --------
    >>> pop = Popularity(half_life_ms=1_000)
    >>> pop.resize(3)
    >>> pop.learn(np.array([0, 1, 1]), np.array([1.0, 1, 1]), np.array([0, 0, 2_000]))
    >>> pop.scores().round(3).tolist()  # item 1 twice, once 2 half-lives later
    [0.25, 1.25, 0.0]
    """

    def __init__(self, half_life_ms: int) -> None:
        self.clock = DecayClock(half_life_ms)
        self.counts = np.zeros(0, dtype=np.float64)

    def resize(self, size: int) -> None:
        """Make room for slots up to ``size``."""
        self.counts = grown(self.counts, size)

    def forget(self, slots: np.ndarray) -> None:
        """Zero slots whose item was evicted."""
        self.counts[slots] = 0.0

    def learn(self, slots: np.ndarray, weights: np.ndarray, ts_ms: np.ndarray) -> None:
        """Add weighted events, each decayed from its own time."""
        factor = self.clock.advance(ts_ms)
        if factor is not None:
            self.counts *= factor
        scaled = weights * self.clock.scale(ts_ms)
        self.counts += np.bincount(slots, scaled, minlength=len(self.counts))

    def scores(self) -> np.ndarray:
        """Every slot's count decayed to the latest event time seen."""
        return self.counts / self.clock.now_scale()
