"""After drift, a fresh model learns beside the serving one and replaces it if it scores better.

Both score every labelled event before learning it (test-then-train), so the comparison is on
the same events the same way. The serving model keeps serving until the challenger has won.
"""

from __future__ import annotations

import numpy as np

from streamlearn.models import BatchModel

_EPS = 1e-15


class Challenger:
    """A candidate model and its running log loss against the serving model's.

    Parameters
    ----------
    model
        The fresh candidate.
    events
        Labelled events to compare over before deciding.

    Examples
    --------
    >>> c = Challenger(model=None, events=4)  # the model itself is not used here
    >>> c.observe(np.array([0.5, 0.5]), np.array([0.9, 0.1]), np.array([True, False]))
    >>> c.decided
    False
    >>> c.observe(np.array([0.5, 0.5]), np.array([0.8, 0.2]), np.array([True, False]))
    >>> c.decided, c.wins
    (True, True)
    """

    def __init__(self, model: BatchModel, events: int) -> None:
        self.model = model
        self.events = events
        self.seen = 0
        self.serving_loss = 0.0
        self.challenger_loss = 0.0

    def observe(self, serving: np.ndarray, challenger: np.ndarray, truth: np.ndarray) -> None:
        """Add one batch: both models' scores for the same labelled events, and the labels."""
        self.serving_loss += _log_loss_sum(serving, truth)
        self.challenger_loss += _log_loss_sum(challenger, truth)
        self.seen += len(truth)

    @property
    def decided(self) -> bool:
        """Whether enough events were compared."""
        return self.seen >= self.events

    @property
    def wins(self) -> bool:
        """Whether the challenger's log loss is lower over the compared events."""
        return self.challenger_loss < self.serving_loss


def _log_loss_sum(scores: np.ndarray, truth: np.ndarray) -> float:
    p = np.clip(scores, _EPS, 1 - _EPS)
    return float(-np.sum(np.where(truth, np.log(p), np.log(1 - p))))
