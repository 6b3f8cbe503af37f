"""The ``recommendation:`` block of a pipeline whose ``task`` is ``recommendation``.

Interaction events have a fixed shape (``event_id``, ``user_id``, ``item_id``, ``event_type``,
``value``, ``ts``), so there is no ``schema``; this block says how they are weighed, what is
never shown again, how long a list is, and how much the model may hold.

>>> RecommendationConfig().k, RecommendationConfig().exclude
(10, ('purchase', 'rating'))
>>> from pydantic import ValidationError
>>> try:
...     RecommendationConfig(exclude=["seen"])
... except ValidationError as exc:
...     print(exc.errors()[0]["loc"], exc.errors()[0]["type"])
('exclude', 0) literal_error
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["view", "cart", "purchase", "rating"]
RecommenderName = Literal["popularity", "cooccurrence", "mf", "blend"]


class RecommendationConfig(BaseModel):
    """How interactions are learned from and what each user's list holds.

    ``event_weights`` weighs each event type as feedback (a rating's weight grows with its
    value; see :mod:`streamlearn.recommend`). ``exclude`` lists the event types after which an
    item is never shown to that user again (a rated film; a viewed item may be shown again).
    ``max_users`` and ``max_items`` bound the model's memory: beyond them the least recently
    active are forgotten. ``recs_ttl_s`` is the life of a user's list in Redis; ``params`` go to
    the model (see :class:`streamlearn.recommend.RecommenderSettings`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(default=10, ge=1, le=1000)
    model: RecommenderName = "cooccurrence"
    event_weights: dict[EventType, float] = Field(default_factory=dict)
    exclude: tuple[EventType, ...] = ("purchase", "rating")
    max_users: int = Field(default=100_000, ge=1)
    max_items: int = Field(default=50_000, ge=1)
    history_len: int = Field(default=50, ge=1)
    recs_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
