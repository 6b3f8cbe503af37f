"""Online standard scaling of the numeric columns of a feature matrix, a batch at a time.

Running means and variances are merged batch by batch (Chan et al.), which gives the same
statistics as updating them event by event, at the cost of one numpy pass per batch.
"""

from __future__ import annotations

import numpy as np


class OnlineStandardScaler:
    """Scales the first ``n_columns`` columns to zero mean and unit variance, as seen so far.

    Columns after those (one-hot buckets) pass through unchanged.

    Examples
    --------
    >>> s = OnlineStandardScaler(1)
    >>> s.learn(np.array([[1.0, 1.0], [3.0, 0.0]]))
    >>> s.learn(np.array([[5.0, 0.0]]))
    >>> s.mean.tolist(), s.var.tolist()
    ([3.0], [2.6666666666666665])
    >>> s.transform(np.array([[3.0, 1.0]])).tolist()
    [[0.0, 1.0]]
    """

    def __init__(self, n_columns: int) -> None:
        self.n_columns = n_columns
        self.count = 0
        self.mean = np.zeros(n_columns)
        self._m2 = np.zeros(n_columns)

    @property
    def var(self) -> np.ndarray:
        """Population variance of each scaled column."""
        return self._m2 / self.count if self.count else np.zeros(self.n_columns)

    def learn(self, matrix: np.ndarray) -> None:
        """Merge a batch's column statistics into the running ones."""
        block = matrix[:, : self.n_columns]
        n = len(block)
        if n == 0:
            return
        batch_mean = block.mean(axis=0)
        batch_m2 = ((block - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self._m2 = self._m2 + batch_m2 + delta**2 * (self.count * n / total)
        self.count = total

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Return a scaled copy; columns with no variance yet are only centred."""
        out = matrix.copy()
        std = np.sqrt(self.var)
        safe = np.where(std > 0, std, 1.0)
        out[:, : self.n_columns] = (out[:, : self.n_columns] - self.mean) / safe
        return out
