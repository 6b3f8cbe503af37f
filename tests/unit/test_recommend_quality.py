"""The default recommender learns tastes: it beats recency-weighted popularity clearly."""

from __future__ import annotations

from dataclasses import replace

from streamlearn.generators.recommendation import recommendation_events
from streamlearn.recommend import (
    InteractionBatch,
    RankingEvaluator,
    Recommender,
    RecommenderSettings,
)


def hit_rate(settings: RecommenderSettings, events: list[dict], batch: int = 256) -> float:
    rec, evaluator = Recommender(settings), RankingEvaluator(k=10)
    for start in range(0, len(events), batch):
        chunk = InteractionBatch.from_events(events[start : start + batch])
        evaluator.update(rec.serve(chunk), chunk)
        rec.learn(chunk)
    return evaluator.scores()["hit_rate_at_10"]


def test_default_model_beats_popularity_on_taste_clusters():
    events = list(recommendation_events(15_000, seed=11, users=2_000, items=1_500, start_ms=0))
    default = RecommenderSettings()
    ours = hit_rate(default, events)
    baseline = hit_rate(replace(default, model="popularity"), events)
    assert ours > 1.5 * baseline, (ours, baseline)
