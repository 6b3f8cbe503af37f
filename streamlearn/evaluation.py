"""Prequential (test-then-train) model scores over a rolling window of recent predictions.

Each batch's scores are recorded before the model learns from it; AUC, accuracy and log-loss
are computed over the last ``window`` labelled predictions with numpy, never per event.
"""

from __future__ import annotations

import numpy as np

# Probabilities are clipped this far from 0 and 1 so one confident mistake costs a large but
# finite log-loss instead of infinity.
LOGLOSS_EPS = 1e-15


class PrequentialEvaluator:
    """Rolling-window AUC, accuracy and log-loss of a binary classifier's scores.

    The window is a numpy ring buffer: ``update`` costs O(batch) and only the last ``window``
    (score, label) pairs count. A score above ``threshold`` is a positive prediction (a tie is
    negative, as river's ``predict_one`` breaks it and as the served label is set).

    Parameters
    ----------
    window
        How many of the most recent labelled predictions the scores cover.
    threshold
        The score from which a prediction counts as positive, for accuracy.

    Examples
    --------
    >>> import numpy as np
    >>> ev = PrequentialEvaluator(window=4)
    >>> ev.auc() is None, ev.scores()
    (True, {})
    >>> ev.update(np.array([0.9, 0.2, 0.6]), np.array([1, 0, 0]))
    >>> ev.auc(), ev.accuracy()
    (1.0, 0.6666666666666666)
    >>> ev.update(np.array([0.1, 0.7]), np.array([1, 1]))  # the 0.9 falls out of the window
    >>> ev.count, round(ev.auc(), 4)
    (5, 0.5)
    >>> sorted(ev.scores())
    ['accuracy', 'auc', 'logloss']
    """

    def __init__(self, window: int = 10_000, threshold: float = 0.5) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self.threshold = threshold
        self._scores = np.zeros(window, dtype=np.float64)
        self._labels = np.zeros(window, dtype=np.int8)
        self._next = 0  # where the next pair is written
        self._filled = 0  # how many slots hold real pairs
        self._count = 0

    @property
    def count(self) -> int:
        """How many labelled predictions were seen since the start, window or not."""
        return self._count

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Record a batch of predicted probabilities of the positive class and their 0/1 labels."""
        s, y = _as_pairs(scores, labels)
        self._count += len(s)
        if len(s) > self.window:
            s, y = s[-self.window :], y[-self.window :]
        n = len(s)
        head = min(n, self.window - self._next)
        self._scores[self._next : self._next + head] = s[:head]
        self._labels[self._next : self._next + head] = y[:head]
        # What did not fit before the end of the buffer wraps around to its start.
        self._scores[: n - head] = s[head:]
        self._labels[: n - head] = y[head:]
        self._next = (self._next + n) % self.window
        self._filled = min(self.window, self._filled + n)

    def auc(self) -> float | None:
        """ROC AUC over the window (Mann-Whitney U, ties count half); None with one class only."""
        s, y = self._window()
        n_pos = int(y.sum())
        n_neg = len(y) - n_pos
        if n_pos == 0 or n_neg == 0:
            return None
        rank_sum = float(_average_ranks(s)[y == 1].sum())
        return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    def accuracy(self) -> float | None:
        """Share of the window predicted right at the threshold; None when the window is empty."""
        s, y = self._window()
        if len(s) == 0:
            return None
        return float(np.mean((s > self.threshold) == (y == 1)))

    def logloss(self) -> float | None:
        """Mean binary cross-entropy over the window, scores clipped; None when it is empty."""
        s, y = self._window()
        if len(s) == 0:
            return None
        p = np.clip(s, LOGLOSS_EPS, 1 - LOGLOSS_EPS)
        return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))

    def scores(self) -> dict[str, float]:
        """Return the defined scores by name (``auc``, ``accuracy``, ``logloss``), for metrics."""
        values = {"auc": self.auc(), "accuracy": self.accuracy(), "logloss": self.logloss()}
        return {name: value for name, value in values.items() if value is not None}

    def _window(self) -> tuple[np.ndarray, np.ndarray]:
        # Order inside the window does not matter to any score, so no unrolling is needed.
        return self._scores[: self._filled], self._labels[: self._filled]


def _as_pairs(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"got {len(s)} scores but {len(y)} labels; they must pair up")
    if y.dtype != np.bool_ and y.size and not ((y == 0) | (y == 1)).all():
        raise ValueError("labels must be 0/1 (or booleans)")
    return s, y.astype(np.int8)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Each run of equal values gets the mean of the first and last rank it spans.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_ranks = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks
