"""The ``recommendation`` task: interactions in, each touched user's top-K items out.

A batch of interaction events (``event_id``, ``user_id``, ``item_id``, ``event_type``,
``value``, ``ts``) is decoded and validated like any other, then *served*: for every event, the
list the model would have shown that user just then (the model's parameters as they were before
the batch, the user's history up to that event), and for every user the batch touched, the list
to show next. Those lists are the task's output (written to Redis by its writer). After they
are durable the served lists are judged against the items actually interacted with (hit rate
and NDCG at K, the prequential score, and a drift detector on the misses), and the model
learns the batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlearn.batch import RawBatch
from streamlearn.config import RecommendationPipelineConfig, SchemaConfig
from streamlearn.config_recommendation import RecommendationConfig
from streamlearn.decoding import DecodedBatch, EventDecoder
from streamlearn.drift import DriftMonitor
from streamlearn.errors import ConfigError
from streamlearn.recommend.evaluation import RankingEvaluator
from streamlearn.recommend.events import EVENT_TYPES, InteractionBatch
from streamlearn.recommend.recommender import Recommender, Served
from streamlearn.recommend.settings import RecommenderSettings
from streamlearn.rejections import Rejection, describe
from streamlearn.tasks.base import LearnOutcome

INTERACTION_SCHEMA = SchemaConfig.model_validate(
    {
        "id": "event_id",
        "entity": "user_id",
        "timestamp": "ts",
        "features": {"item_id": "category", "event_type": "category", "value": "float"},
        "max_event_bytes": 16 * 1024,
    }
)
"""The interaction event's fields, as the decoder checks them."""


@dataclass(slots=True)
class ServedBatch:
    """A batch after serving: its interactions and the lists served for them."""

    raw: RawBatch
    decoded: DecodedBatch
    interactions: InteractionBatch
    served: Served
    model_version: int
    scored_at_ms: int
    written: set[str] = field(default_factory=set)
    too_late: int = 0  # no per-entity aggregates: never any

    @property
    def rows(self) -> np.ndarray:
        """Positions in :attr:`raw` of the events that got a served list."""
        return self.decoded.index

    @property
    def rejected(self) -> list[Rejection]:
        """Messages dead-lettered, with their reasons."""
        return self.decoded.rejected


def recommender_settings(
    config: RecommendationConfig, config_name: str = "?"
) -> RecommenderSettings:
    """The model's settings from a pipeline's ``recommendation`` block.

    A setting the model does not know, or a value it refuses, raises :class:`ConfigError`.

    >>> s = recommender_settings(RecommendationConfig(k=5, params={"factors": 16}))
    >>> s.k, s.factors, s.exclude
    (5, 16, ('purchase', 'rating'))
    """
    settings: dict[str, Any] = {
        "k": config.k,
        "model": config.model,
        "exclude": tuple(config.exclude),
        "max_users": config.max_users,
        "max_items": config.max_items,
        "history_len": config.history_len,
        **config.params,
    }
    if config.event_weights:
        defaults = RecommenderSettings().event_weights
        settings["event_weights"] = {**defaults, **config.event_weights}
    known = {f.name for f in dataclasses.fields(RecommenderSettings)}
    unknown = sorted(set(config.params) - known)
    if unknown:
        raise ConfigError(
            f"pipeline {config_name}: recommendation.params: unknown setting(s) {unknown}; "
            f"known: {', '.join(sorted(known))}"
        )
    try:
        return RecommenderSettings(**settings)
    except (TypeError, ValueError) as exc:  # an unknown key, or a value out of range
        raise ConfigError(f"pipeline {config_name}: recommendation.params: {exc}") from None


class RecommendationTask:
    """Serves ranked lists per user, then learns from the interactions (test-then-train).

    Examples
    --------
    >>> import orjson
    >>> config = RecommendationPipelineConfig.model_validate({
    ...     "name": "shop", "task": "recommendation", "source": {"topic": "interactions"},
    ...     "recommendation": {"k": 3, "model": "popularity"}})
    >>> task, raw = RecommendationTask(config), RawBatch()
    >>> for i, (user, item) in enumerate([("u1", "a"), ("u2", "a"), ("u3", "b")]):
    ...     event = {"event_id": f"e{i}", "user_id": user, "item_id": item,
    ...              "event_type": "view", "value": 1, "ts": 1000 + i}
    ...     raw.append("interactions", 0, i, user.encode(), orjson.dumps(event), 0, 0.0)
    >>> raw.append("interactions", 0, 3, None, b'{"event_id": "x"}', 0, 0.0)
    >>> scored = task.score(raw)
    >>> [r.reason for r in scored.rejected]
    ['missing_field']
    >>> task.learn(scored).learned, task.model_version
    (3, 1)
    >>> [item for item, _ in task.recommender.recommend("new-user")]
    ['a', 'b']
    """

    def __init__(
        self,
        config: RecommendationPipelineConfig,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock_ms = clock_ms
        self.decoder = EventDecoder(INTERACTION_SCHEMA)
        settings = recommender_settings(config.recommendation, config.name)
        self.recommender = Recommender(settings)
        self.evaluator = RankingEvaluator(settings.k)
        drift = config.drift
        self.drift = (
            DriftMonitor(drift.detector, dict(drift.params)) if drift.detector != "none" else None
        )
        self.judged = 0  # events judged since the start (the drift detector's grace counts them)
        self._version = 0

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """Nothing depends on which partitions are read here."""

    def describe(self) -> str:
        """One line on what this pipeline does, for ``streamlearn check``."""
        r = self.config.recommendation
        return (
            f"recommendation, top {r.k} per user, model {r.model}, "
            f"at most {r.max_users:,} users and {r.max_items:,} items"
        )

    def score(self, raw: RawBatch) -> ServedBatch:
        """Decode and validate the interactions, and serve a list for each."""
        decoded = _valid_interactions(self.decoder.decode(raw.values))
        interactions = InteractionBatch(
            users=decoded.entity_ids,
            items=decoded.categorical["item_id"],
            kinds=decoded.categorical["event_type"],
            values=decoded.numeric["value"],
            ts_ms=decoded.timestamps_ms,
        )
        return ServedBatch(
            raw=raw,
            decoded=decoded,
            interactions=interactions,
            served=self.recommender.serve(interactions),
            model_version=self._version,
            scored_at_ms=self.clock_ms(),
        )

    def learn(self, scored: ServedBatch, keep: np.ndarray | None = None) -> LearnOutcome:
        """Judge the served lists against what each user did, then learn the interactions."""
        batch = scored.interactions
        if not len(batch):
            return LearnOutcome(learned=0)
        kept = np.ones(len(batch), dtype=bool) if keep is None else keep[scored.decoded.index]
        if not kept.any():
            return LearnOutcome(learned=0)
        self.evaluator.update(scored.served, batch, kept)
        drifted = self._watch(self.evaluator.last_hits)
        self.recommender.learn(batch, kept)
        self._version += 1
        return LearnOutcome(
            learned=int(kept.sum()), drift=drifted, metrics=self.evaluator.rolling()
        )

    def _watch(self, hits: np.ndarray) -> bool:
        # The detector watches misses; the first grace_events only warm it up.
        if self.drift is None or not len(hits):
            return False
        self.judged += len(hits)
        drifted = self.drift.update(1.0 - hits.astype(float))
        return drifted and self.judged > self.config.drift.grace_events

    @property
    def model_version(self) -> int:
        """Batches learned: stamped on every served list."""
        return self._version

    def scores(self) -> dict[str, float]:
        """Hit rate and NDCG at K of the lists served lately, e.g. ``hit_rate_at_10``."""
        return self.evaluator.rolling()

    def snapshot(self) -> dict[str, Any]:
        """Everything learned, for a checkpoint."""
        return {
            "recommender": self.recommender,
            "evaluator": self.evaluator,
            "drift": self.drift,
            "judged": self.judged,
            "version": self._version,
        }

    def load_snapshot(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` returned."""
        self.recommender = state["recommender"]
        self.evaluator = state["evaluator"]
        self.drift = state["drift"]
        self.judged = state["judged"]
        self._version = state["version"]


def _valid_interactions(decoded: DecodedBatch) -> DecodedBatch:
    """Reject events with an unknown ``event_type`` or an empty ``item_id``."""
    kinds, items = decoded.categorical["event_type"], decoded.categorical["item_id"]
    bad: list[Rejection] = []
    rows: list[int] = []
    for row, (kind, item) in enumerate(zip(kinds, items)):
        if kind not in EVENT_TYPES:
            detail = f"event_type: expected one of {', '.join(EVENT_TYPES)}, got {describe(kind)}"
            bad.append(Rejection(int(decoded.index[row]), "unknown_event_type", detail))
        elif not item:
            bad.append(Rejection(int(decoded.index[row]), "empty_item", "item_id is empty"))
        else:
            continue
        rows.append(row)
    return decoded.without(bad, rows) if bad else decoded
