"""Incremental implicit matrix factorisation, learned by BPR with sampled negatives per batch.

A user is the weighted mean of their recent items' context factors (no per-user parameters), so
a new user is personalised from their first event and a burst counts at once; items have
output factors and a bias. Each batch takes one vectorised SGD step per pass.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from streamlearn.recommend.context import Contexts
from streamlearn.recommend.memory import grown

INIT_SCALE = 0.1  # standard deviation of a new item's factors


class Factors:
    """Item factors learned so that the next item outranks sampled ones (BPR).

    Examples
    --------
    >>> from streamlearn.recommend.context import Contexts
    >>> mf = Factors(factors=4, learning_rate=0.1, regularisation=0.0, negatives=2, epochs=1,
    ...              seed=0)
    >>> mf.resize(3)
    >>> ctx = Contexts(np.array([0, 1]), np.array([0]), np.array([1.0]),
    ...                np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int64))
    >>> before = mf.scores(ctx, 3)[0, 1]
    >>> for _ in range(20):
    ...     mf.learn(ctx, np.array([1]), np.array([1.0]), 3)
    >>> bool(mf.scores(ctx, 3)[0, 1] > before)
    True
    """

    def __init__(
        self,
        factors: int,
        learning_rate: float,
        regularisation: float,
        negatives: int,
        epochs: int,
        seed: int,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularisation = regularisation
        self.negatives = negatives
        self.epochs = epochs
        self.rng = np.random.default_rng(seed)
        self.context = np.zeros((0, factors), dtype=np.float32)  # an item as part of a history
        self.output = np.zeros((0, factors), dtype=np.float32)  # an item as the next one
        self.bias = np.zeros(0, dtype=np.float32)

    def resize(self, size: int) -> None:
        """Make room for slots up to ``size``; new slots start with small random factors."""
        old = len(self.bias)
        if size <= old:
            return
        self.context = grown(self.context, size)
        self.output = grown(self.output, size)
        self.bias = grown(self.bias, size)
        self._init(np.arange(old, size))

    def forget(self, slots: np.ndarray) -> None:
        """Start evicted slots afresh."""
        self._init(np.asarray(slots))

    def user_vectors(self, contexts: Contexts) -> np.ndarray:
        """Each query's user vector: its context's factors, weighted and averaged."""
        return np.asarray(self._mean_matrix(contexts, len(self.bias)) @ self.context)

    def scores(self, contexts: Contexts, size: int) -> np.ndarray:
        """Per query, every slot's score up to ``size`` (dense)."""
        users = self.user_vectors(contexts).astype(np.float32)
        scores = users @ self.output[:size].T
        scores += self.bias[:size]
        return scores

    def learn(self, contexts: Contexts, slots: np.ndarray, weights: np.ndarray, size: int) -> None:
        """SGD steps on each event against ``negatives`` items drawn uniformly from ``size``."""
        lr, reg = self.learning_rate, self.regularisation
        n = len(slots)
        if n == 0 or size < 2:
            return
        used, col = np.unique(contexts.slots, return_inverse=True)
        compact = Contexts(
            contexts.ptr, col.ravel(), contexts.weights, contexts.ex_ptr, contexts.excluded
        )
        mean = self._mean_matrix(compact, len(used))
        # Strong signals (a purchase) step further, but no event more than 3 times a plain one.
        importance = np.minimum(weights / max(float(np.median(weights)), 1e-9), 3.0)
        for _ in range(self.epochs):
            users = np.asarray(mean @ self.context[used], dtype=np.float64)
            pos = slots
            neg = self.rng.integers(0, size, (n, self.negatives))
            p_pos = self.output[pos].astype(np.float64)
            p_neg = self.output[neg].astype(np.float64)
            x_pos = (users * p_pos).sum(axis=1) + self.bias[pos]
            x_neg = np.einsum("qf,qmf->qm", users, p_neg) + self.bias[neg]
            # d/dx of log sigmoid(x_pos - x_neg), per event and negative.
            g = importance[:, None] / (1.0 + np.exp(np.clip(x_pos[:, None] - x_neg, -30, 30)))
            g /= self.negatives
            g_sum = g.sum(axis=1)
            grad_pos = g_sum[:, None] * users - reg * p_pos
            grad_neg = -g[:, :, None] * users[:, None, :] - reg * p_neg
            grad_users = g_sum[:, None] * p_pos - np.einsum("qm,qmf->qf", g, p_neg)
            grad_context = np.asarray(mean.T @ grad_users) - reg * self.context[used]
            np.add.at(self.output, pos, (lr * grad_pos).astype(np.float32))
            np.add.at(self.output, neg.ravel(), (lr * grad_neg).reshape(-1, self.factors))
            np.add.at(self.bias, pos, (lr * (g_sum - reg * self.bias[pos])).astype(np.float32))
            np.add.at(self.bias, neg.ravel(), (lr * (-g - reg * self.bias[neg])).ravel())
            self.context[used] += (lr * grad_context).astype(np.float32)

    def _mean_matrix(self, contexts: Contexts, columns: int) -> sp.csr_matrix:
        totals = np.bincount(contexts.rows(), contexts.weights, minlength=len(contexts))
        scale = np.repeat(1.0 / np.maximum(totals, 1e-12), contexts.sizes())
        return sp.csr_matrix(
            (contexts.weights * scale, contexts.slots, contexts.ptr),
            shape=(len(contexts), columns),
        )

    def _init(self, slots: np.ndarray) -> None:
        shape = (len(slots), self.factors)
        self.context[slots] = self.rng.normal(0.0, INIT_SCALE, shape).astype(np.float32)
        self.output[slots] = self.rng.normal(0.0, INIT_SCALE, shape).astype(np.float32)
        self.bias[slots] = 0.0
