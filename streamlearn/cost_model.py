"""How long a batch takes to process as a function of its size, fitted online.

The batcher plans sizes with it: ``seconds ≈ a + b·size``, refitted after every batch.
"""

from __future__ import annotations


class CostModel:
    """Per-batch processing time ``a + b·size``, fitted by least squares with forgetting.

    Old batches fade by ``forgetting`` per observation so a change of cost is followed. While all
    recent batches have (nearly) one size the slope is not identifiable; a weak ridge towards the
    previous slope keeps it, and the overhead absorbs the change.

    Examples
    --------
    >>> m = CostModel()
    >>> for n in (10, 100, 10, 100):
    ...     m.update(n, 0.002 + 0.0001 * n)
    >>> round(m.predict(1000), 4)
    0.102
    """

    def __init__(self, forgetting: float = 0.9, ridge: float = 1e-3) -> None:
        self.forgetting = forgetting
        self.ridge = ridge
        self.overhead_s = 0.0
        self.per_event_s = 0.0
        self._sums = [0.0] * 5  # weight, Σn, Σn², Σy, Σny

    def update(self, size: int, seconds: float) -> None:
        """Add one batch of ``size`` events that took ``seconds``."""
        n, y = float(size), max(0.0, seconds)
        w, sn, snn, sy, sny = (s * self.forgetting for s in self._sums)
        self._sums = [w + 1, sn + n, snn + n * n, sy + y, sny + n * y]
        self._solve()

    def predict(self, size: float) -> float:
        """Return the expected seconds to process ``size`` events (0 before any data)."""
        return self.overhead_s + self.per_event_s * size

    def _solve(self) -> None:
        w, sn, snn, sy, sny = self._sums
        lam = self.ridge * snn
        det = w * (snn + lam) - sn * sn
        b = (w * (sny + lam * self.per_event_s) - sn * sy) / det
        a = (sy - b * sn) / w
        if b < 0:
            a, b = sy / w, 0.0
        if a < 0:
            a, b = 0.0, sny / snn
        self.overhead_s, self.per_event_s = a, b
