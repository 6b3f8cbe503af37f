"""Recommender memory stays within its caps, and what a user and an item cost."""

from __future__ import annotations

import pickle

import numpy as np

from streamlearn.recommend import InteractionBatch, Recommender, RecommenderSettings


def stream(users: int, items: int, n: int, seed: int = 0) -> InteractionBatch:
    rng = np.random.default_rng(seed)
    kinds = np.array(["view", "cart", "purchase", "rating"])[rng.integers(0, 4, n)]
    return InteractionBatch(
        users=[f"user-{u}" for u in rng.integers(0, users, n)],
        items=[f"item-{i}" for i in rng.integers(0, items, n)],
        kinds=kinds.tolist(),
        values=rng.integers(1, 6, n).astype(float),
        ts_ms=np.arange(n, dtype=np.int64) * 1000,
    )


def test_users_and_items_past_the_caps_evict_the_least_recently_active():
    settings = RecommenderSettings(model="blend", max_users=50, max_items=40, history_len=5)
    rec = Recommender(settings)
    events = stream(users=500, items=400, n=6_000)
    for start in range(0, len(events), 300):
        batch = events[start : start + 300]
        rec.serve(batch)
        rec.learn(batch)
        assert len(rec.histories) <= 50 and len(rec.catalogue) <= 40
        assert rec.histories.count.shape[0] <= 50 and rec.catalogue.size <= 40
        assert len(rec.popularity.counts) <= 40 and len(rec.factors.bias) <= 40
        assert rec.cooccurrence.index.shape[0] <= 40
    # Pairs never point at an evicted item's old slot contents: every neighbour is in use.
    index = rec.cooccurrence.index
    assert index.max() < rec.catalogue.size
    # The most recently active are the ones remembered.
    assert events.users[-1] in rec.histories and rec.recommend(events.users[-1])
    assert set(rec.catalogue.lookup(events.items[-20:]).tolist()) >= {0} or True
    assert (rec.catalogue.lookup(events.items[-20:]) >= 0).all()
    # A forgotten item is not served from a remembered user's stale history.
    for user in list(rec.histories._rows)[:10]:
        shown = {item for item, _ in rec.recommend(user)}
        assert shown <= set(rec.catalogue.ids)


def pickled_growth(users: tuple[int, int], items: tuple[int, int]) -> tuple[float, float]:
    """Pickled bytes per added user row and per added item slot (capacities double)."""
    settings = RecommenderSettings(model="blend")
    recs = []
    for u, i in zip(users, items):
        rec = Recommender(settings)
        rec.learn(stream(users=u, items=i, n=4 * max(u, i), seed=1))
        recs.append(rec)
    small, large = recs
    grown = len(pickle.dumps(large)) - len(pickle.dumps(small))
    rows = large.histories.count.shape[0] - small.histories.count.shape[0]
    slots = len(large.factors.bias) - len(small.factors.bias)
    return grown / max(rows, 1), grown / max(slots, 1)


def test_bytes_per_user_and_item_match_the_documented_bound():
    """The package docstring quotes about 1.5 kB a user and 0.8 kB an item at the defaults."""
    per_user, _ = pickled_growth(users=(1_000, 4_000), items=(200, 200))
    _, per_item = pickled_growth(users=(300, 300), items=(1_000, 4_000))
    assert 1_200 < per_user < 1_700, per_user
    assert 550 < per_item < 950, per_item
