"""After drift, a fresh model learns beside the serving one and replaces it if it ranks better.

Both score every labelled event before learning it (test-then-train), so the comparison is on
the same events the same way. The challenger first learns alone for a warm-up (an untrained model
scores everything alike), then both are compared by AUC over the next events; the serving model
keeps serving until the challenger has won.
"""

from __future__ import annotations

import numpy as np

from streamlearn.evaluation import PrequentialEvaluator
from streamlearn.models import BatchModel


class Challenger:
    """A candidate model and the record of its race against the serving model.

    Parameters
    ----------
    model
        The fresh candidate.
    events
        Labelled events over which both are compared.
    warmup
        Labelled events the candidate learns from before the comparison starts.

    Examples
    --------
    >>> race = Challenger(model=None, events=4, warmup=2)  # the model is not used here
    >>> truth = np.array([True, False])
    >>> race.observe(np.array([0.9, 0.1]), np.array([0.5, 0.5]), truth)  # warm-up: not counted
    >>> race.observe(np.array([0.4, 0.6]), np.array([0.8, 0.2]), truth)
    >>> race.observe(np.array([0.3, 0.7]), np.array([0.7, 0.1]), truth)
    >>> race.decided, race.wins
    (True, True)
    """

    def __init__(self, model: BatchModel, events: int, warmup: int = 0) -> None:
        self.model = model
        self.events = events
        self.warmup = warmup
        self.seen = 0
        self.serving = PrequentialEvaluator(window=events)
        self.candidate = PrequentialEvaluator(window=events)

    def observe(self, serving: np.ndarray, challenger: np.ndarray, truth: np.ndarray) -> None:
        """Add one batch: both models' scores for the same labelled events, and the labels."""
        skip = max(0, min(len(truth), self.warmup - self.seen))
        self.seen += len(truth)
        if skip < len(truth):
            self.serving.update(serving[skip:], truth[skip:])
            self.candidate.update(challenger[skip:], truth[skip:])

    @property
    def decided(self) -> bool:
        """Whether enough events were compared."""
        return self.serving.count >= self.events

    @property
    def wins(self) -> bool:
        """Whether the challenger ranked the compared events better.

        By AUC; by log loss when AUC is undefined (only one class was seen).
        """
        ours, theirs = self.candidate.auc(), self.serving.auc()
        if ours is not None and theirs is not None:
            return ours > theirs
        return (self.candidate.logloss() or np.inf) < (self.serving.logloss() or np.inf)
