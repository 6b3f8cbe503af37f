"""The recommender's settings: which model, how much memory, how events count as signal.

Frozen and validated on construction, so a bad value fails with a message before any event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from streamlearn.recommend.events import EVENT_TYPES

ModelName = Literal["popularity", "cooccurrence", "mf", "blend"]
MODELS: tuple[ModelName, ...] = ("popularity", "cooccurrence", "mf", "blend")

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"view": 1.0, "cart": 3.0, "purchase": 5.0, "rating": 2.0}
)


@dataclass(frozen=True, slots=True)
class RecommenderSettings:
    """How a :class:`~streamlearn.recommend.Recommender` ranks, learns and bounds its memory.

    Signal: an event of kind ``view``, ``cart`` or ``purchase`` weighs
    ``event_weights[kind] * value`` (the value is a weight, often 1). A rating weighs
    ``event_weights["rating"] * max(0, 1 + rating_slope * (value - 3))``: a 3 counts as the
    rating weight, a 5 as 1.5 times it, a 1 as half (with the default slope 0.25); having
    watched or bought something still says something about taste, even when disliked. A slope
    of 0.5 or more makes a 1 count for nothing.

    Parameters
    ----------
    k
        How many items a list holds.
    model
        ``"popularity"`` (recency-weighted counts), ``"cooccurrence"`` (items seen together in
        users' recent histories), ``"mf"`` (incremental implicit factorisation) or ``"blend"``
        (the three scores, each scaled to [0, 1] per list, summed with ``blend_weights``).
        The default, co-occurrence, was best or near it in ``benchmarks/recommendation_models.py``
        (on MovieLens 100k best by far; on the generator within a few % of the blend at a third
        of its cost); see ``benchmarks/results/recommendation_models.md``.
    event_weights, rating_slope
        How much an event of each kind counts (see above).
    exclude
        Event kinds whose item is never shown to that user again (a viewed item may be).
    max_users, max_items
        Caps on remembered users and items; beyond them, the least recently active goes.
    history_len
        Recent events kept per user: the context co-occurrence and factors score from.
    excluded_len
        Excluded items remembered per user; the oldest is forgotten past this many.
    half_life_ms
        Popularity half-life in event time.
    pair_half_life_ms
        Half-life of co-occurrence counts in event time.
    pair_window
        How many of a user's most recent events pair with a new one.
    repeat_weight
        In co-occurrence, how similar an item counts to itself (a cosine is at most 1): what
        the user just viewed comes back, as carts and purchases follow views. 0 turns it off.
    neighbours
        Co-occurring items kept per item (the strongest).
    context_decay
        Weight of a history event per step back in time, in the context a list is scored from.
    factors, learning_rate, regularisation, negatives, epochs
        The factor model: size, SGD step, L2 penalty, sampled negatives per event and passes
        over each batch.
    blend_weights
        Weights of co-occurrence, factors and popularity in the blend.
    seed
        Seeds the factor initialisation and negative sampling.

    Examples
    --------
    >>> s = RecommenderSettings(k=5)
    >>> s.k, s.model, s.exclude
    (5, 'cooccurrence', ('purchase', 'rating'))
    >>> s.weights(["view", "purchase", "rating", "rating"], np.array([1, 2, 5, 1.0])).tolist()
    [1.0, 10.0, 3.0, 1.0]
    >>> RecommenderSettings(model="knn")
    Traceback (most recent call last):
    ...
    ValueError: model must be one of ['popularity', 'cooccurrence', 'mf', 'blend'], got 'knn'
    """

    k: int = 10
    model: ModelName = "cooccurrence"
    event_weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_EVENT_WEIGHTS)
    rating_slope: float = 0.25
    exclude: tuple[str, ...] = ("purchase", "rating")
    max_users: int = 100_000
    max_items: int = 50_000
    history_len: int = 50
    excluded_len: int = 100
    half_life_ms: int = DAY_MS
    pair_half_life_ms: int = 30 * DAY_MS
    pair_window: int = 10
    repeat_weight: float = 1.0
    neighbours: int = 50
    context_decay: float = 0.9
    factors: int = 32
    learning_rate: float = 0.05
    regularisation: float = 0.01
    negatives: int = 4
    epochs: int = 3
    blend_weights: tuple[float, float, float] = (1.0, 0.2, 0.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        unknown = set(self.exclude).union(self.event_weights).difference(EVENT_TYPES)
        if unknown:
            raise ValueError(
                f"unknown event type(s) {sorted(unknown)} in exclude or event_weights; "
                f"expected some of {list(EVENT_TYPES)}"
            )
        weights = dict(DEFAULT_EVENT_WEIGHTS)
        weights.update(self.event_weights)
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"event_weights must not be negative, got {weights}")
        # Missing kinds take their default weight. A plain dict: checkpoints pickle the settings.
        object.__setattr__(self, "event_weights", weights)
        object.__setattr__(self, "exclude", tuple(self.exclude))
        at_least_one = {
            "k": self.k,
            "max_users": self.max_users,
            "max_items": self.max_items,
            "history_len": self.history_len,
            "excluded_len": self.excluded_len,
            "half_life_ms": self.half_life_ms,
            "pair_half_life_ms": self.pair_half_life_ms,
            "pair_window": self.pair_window,
            "neighbours": self.neighbours,
            "factors": self.factors,
        }
        for name, value in at_least_one.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.negatives < 1 or self.epochs < 0:
            raise ValueError(
                f"negatives must be at least 1 and epochs at least 0, got {self.negatives} and "
                f"{self.epochs}"
            )
        if not 0 < self.context_decay <= 1:
            raise ValueError(f"context_decay must be in (0, 1], got {self.context_decay}")
        rates = (self.learning_rate, self.regularisation, self.rating_slope, self.repeat_weight)
        if min(rates) < 0:
            raise ValueError(
                "learning_rate, regularisation, rating_slope and repeat_weight must not be "
                f"negative, got {rates}"
            )
        if len(self.blend_weights) != 3 or min(self.blend_weights) < 0:
            raise ValueError(
                "blend_weights must be three non-negative weights (co-occurrence, factors, "
                f"popularity), got {self.blend_weights}"
            )

    def weights(self, kinds: list[str], values: np.ndarray) -> np.ndarray:
        """The signal weight of each event (see the class docstring), as float64."""
        values = np.asarray(values, dtype=np.float64)
        base = np.array([self.event_weights[kind] for kind in kinds], dtype=np.float64)
        is_rating = np.array([kind == "rating" for kind in kinds], dtype=bool)
        rated = np.maximum(0.0, 1.0 + self.rating_slope * (values - 3.0))
        return base * np.where(is_rating, rated, values)
