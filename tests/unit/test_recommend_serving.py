"""Recommender serving: exclusions, within-batch history, purity, cold start, pickling."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest

from streamlearn.generators.recommendation import recommendation_events
from streamlearn.recommend import (
    MODELS,
    InteractionBatch,
    Recommender,
    RecommenderSettings,
    Served,
)


def batch_of(*rows: tuple[str, str, str] | tuple[str, str, str, float], t0: int = 0):
    """A batch from (user, item, kind[, value]) rows, one second apart from ``t0``."""
    return InteractionBatch(
        users=[r[0] for r in rows],
        items=[r[1] for r in rows],
        kinds=[r[2] for r in rows],
        values=np.array([r[3] if len(r) > 3 else (4.0 if r[2] == "rating" else 1.0) for r in rows]),
        ts_ms=t0 + 1000 * np.arange(len(rows), dtype=np.int64),
    )


def generated(n: int, seed: int = 5) -> InteractionBatch:
    events = recommendation_events(n, seed=seed, users=200, items=400, start_ms=0)
    return InteractionBatch.from_events(events)


def remember(rec: Recommender, batch: InteractionBatch) -> None:
    """Add the batch's known items to users' histories only: the models' parameters stay frozen."""
    slots = rec.catalogue.lookup(batch.items)
    known = slots >= 0
    rec.histories.append(
        [u for u, k in zip(batch.users, known) if k],
        slots[known],
        rec.settings.weights(batch.kinds, batch.values)[known],
        np.array([k in rec.settings.exclude for k in batch.kinds], dtype=bool)[known],
        rec.catalogue.generation,
    )


def state(rec: Recommender) -> dict[str, bytes]:
    """Each part of the recommender, pickled (the whole pickle also records shared objects)."""
    return {name: pickle.dumps(value) for name, value in vars(rec).items()}


def warmed(model: str = "blend", n: int = 3_000, **options) -> Recommender:
    rec = Recommender(RecommenderSettings(model=model, **options))
    stream = generated(n)
    for start in range(0, n, 500):
        rec.learn(stream[start : start + 500])
    return rec


def test_rated_or_bought_item_is_never_served_again_but_a_viewed_one_may_be():
    rec = Recommender(RecommenderSettings(model="cooccurrence", k=5))
    # Everyone else goes a -> b -> c, so for a user at a, b and c are the neighbours.
    for i in range(20):
        rec.learn(batch_of((f"o{i}", "a", "view"), (f"o{i}", "b", "view"), (f"o{i}", "c", "view")))
    rec.learn(batch_of(("u", "a", "view"), ("u", "b", "rating", 5.0), ("u", "c", "purchase")))
    shown = [item for item, _ in rec.recommend("u")]
    assert "b" not in shown and "c" not in shown
    assert "a" in shown  # only viewed: it may come back
    served = rec.serve(batch_of(("u", "a", "view"), ("u", "b", "view"), ("u", "c", "cart")))
    for items in [*served.items, [i for i, _ in served.final["u"]]]:
        assert "b" not in items and "c" not in items


def test_an_item_excluded_earlier_in_the_batch_is_not_served_to_later_events():
    rec = warmed("popularity")
    top = rec.recommend("newcomer", k=3)[0][0]
    served = rec.serve(batch_of(("newcomer", top, "purchase"), ("newcomer", "x", "view")))
    assert top in served.items[0]  # before the purchase
    assert top not in served.items[1]  # after it, within the same batch
    assert top not in [item for item, _ in served.final["newcomer"]]


@pytest.mark.parametrize("model", MODELS)
def test_one_batch_serves_as_many_batches_would_with_the_parameters_frozen(model):
    rec = warmed(model)
    # A burst: the same users act many times within one batch, buying and rating as they go.
    burst = generated(4_000)[3_000:3_300]
    whole = pickle.loads(pickle.dumps(rec)).serve(burst)
    split = pickle.loads(pickle.dumps(rec))
    items: list[list[str]] = []
    for start in range(0, len(burst), 7):
        part = burst[start : start + 7]
        items += split.serve(part).items
        remember(split, part)
    assert items == whole.items
    # And every event's list leaves out what its user bought or rated before, batch or not.
    bought: dict[str, set[str]] = {}
    for user, item, kind, shown in zip(burst.users, burst.items, burst.kinds, whole.items):
        assert not bought.get(user, set()) & set(shown)
        if kind in ("purchase", "rating"):
            bought.setdefault(user, set()).add(item)


def test_serving_a_prefix_of_a_batch_serves_its_events_the_same():
    rec = warmed()
    batch = generated(3_400)[3_000:3_400]
    whole = rec.serve(batch)
    assert rec.serve(batch[:150]).items == whole.items[:150]


@pytest.mark.parametrize("model", MODELS)
def test_serve_changes_nothing(model):
    rec = warmed(model)
    before = state(rec)
    served = rec.serve(generated(3_400)[3_000:3_400])
    assert state(rec) == before
    assert all(len(items) <= rec.settings.k for items in served.items)
    assert all(len(i) == len(s) for i, s in zip(served.items, served.scores))
    assert all(s == sorted(s, reverse=True) for s in served.scores)


def test_final_lists_are_what_recommend_gives_after_learning_history_only():
    rec = warmed("cooccurrence")
    batch = generated(3_200)[3_000:3_200]
    served = rec.serve(batch)
    assert set(served.final) == set(batch.users)
    user = batch.users[-1]
    assert len(served.final[user]) == rec.settings.k


def test_unknown_user_gets_what_is_popular_now():
    rec = Recommender(RecommenderSettings(k=2, half_life_ms=60_000))
    rec.learn(batch_of(*[(f"u{i}", "old", "view") for i in range(10)], t0=0))
    # Fewer events, but an hour later: with a one-minute half-life they are what is popular now.
    rec.learn(batch_of(*[(f"v{i}", "new", "view") for i in range(3)], t0=3_600_000))
    assert [item for item, _ in rec.recommend("stranger")] == ["new", "old"]
    served = rec.serve(batch_of(("stranger", "new", "view")))
    assert served.items[0] == ["new", "old"]


def test_a_new_item_is_recommended_once_it_has_signal():
    rec = warmed("cooccurrence", k=10)
    users = [f"fan{i}" for i in range(15)]
    rec.learn(batch_of(*[(u, "brand-new", "purchase") for u in users], t0=10**12))
    assert "brand-new" in [item for item, _ in rec.recommend("stranger")]
    # And to someone who viewed what its buyers viewed next to it.
    rec.learn(batch_of(*[(u, "item-x", "view") for u in users], t0=10**12 + 10**6))
    rec.learn(batch_of(("fresh", "item-x", "view"), t0=10**12 + 2 * 10**6))
    assert "brand-new" in [item for item, _ in rec.recommend("fresh")]


@pytest.mark.parametrize("model", MODELS)
def test_pickle_round_trip_gives_identical_rankings_and_learning(model):
    rec = warmed(model)
    copy = pickle.loads(pickle.dumps(rec))
    batch = generated(3_400)[3_000:3_400]
    assert copy.serve(batch) == rec.serve(batch)
    copy.learn(batch)
    rec.learn(batch)
    assert copy.recommend(batch.users[0]) == rec.recommend(batch.users[0])
    assert state(copy) == state(rec)


def test_learning_is_deterministic_for_a_seed_and_keep_filters_events():
    a, b = warmed("blend", seed=3), warmed("blend", seed=3)
    assert state(a) == state(b)
    c = warmed("blend", seed=4)
    assert not np.array_equal(a.factors.output, c.factors.output)
    batch = generated(3_100)[3_000:3_100]
    keep = np.arange(len(batch)) % 2 == 0
    a.learn(batch, keep)
    b.learn(batch.select(keep))
    assert state(a) == state(b)
    assert a.learned == 3_000 + keep.sum()


def test_k_and_an_empty_recommender():
    rec = Recommender()
    assert rec.recommend("anyone") == []
    served = rec.serve(batch_of(("u", "a", "view")))
    assert served.items == [[]] and served.final == {"u": []}
    rec.learn(batch_of(("u", "a", "view"), ("u", "b", "view")))
    assert len(rec.recommend("v", k=1)) == 1
    rec.learn(InteractionBatch([], [], []))
    assert rec.serve(InteractionBatch([], [], [])) == Served()
    assert replace(rec.settings, k=3).k == 3
