"""Properties of recommendations on random streams (hypothesis): the metric against a brute-force
reference, and the exclusion rule against a replay of each user's history."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlearn.recommend import (
    InteractionBatch,
    RankingEvaluator,
    Recommender,
    RecommenderSettings,
    Served,
)

ITEMS = [f"i{n}" for n in range(12)]
USERS = ["ann", "bob", "cy"]
KINDS = ["view", "cart", "purchase", "rating"]

lists = st.lists(st.lists(st.sampled_from(ITEMS), max_size=8, unique=True), min_size=1, max_size=30)


def brute_force(served: list[list[str]], truth: list[str], k: int) -> tuple[float, float]:
    """Hit rate and NDCG at k, written the slow obvious way."""
    hits, gains = 0, 0.0
    for listed, item in zip(served, truth):
        top = listed[:k]
        if item in top:
            hits += 1
            gains += 1.0 / math.log2(top.index(item) + 2)
    return hits / len(truth), gains / len(truth)


@settings(max_examples=60, deadline=None)
@given(served=lists, data=st.data(), k=st.integers(1, 10))
def test_hit_rate_and_ndcg_equal_the_brute_force_reference(served, data, k) -> None:
    truth = data.draw(st.lists(st.sampled_from(ITEMS), min_size=len(served), max_size=len(served)))
    n = len(truth)
    batch = InteractionBatch(["u"] * n, truth, ["view"] * n, np.ones(n), np.arange(n))
    evaluator = RankingEvaluator(k=k, window=1_000)
    evaluator.update(Served(served, [[1.0] * len(s) for s in served]), batch)
    hit_rate, ndcg = brute_force(served, truth, k)
    scores = evaluator.scores()
    assert math.isclose(scores[f"hit_rate_at_{k}"], hit_rate)
    assert math.isclose(scores[f"ndcg_at_{k}"], ndcg, abs_tol=1e-12)


events = st.lists(
    st.tuples(st.sampled_from(USERS), st.sampled_from(ITEMS), st.sampled_from(KINDS)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=40, deadline=None)
@given(stream=events, size=st.integers(1, 25), model=st.sampled_from(["cooccurrence", "mf"]))
def test_no_list_ever_holds_an_item_its_user_bought_or_rated(stream, size, model) -> None:
    rec = Recommender(RecommenderSettings(model=model, k=5))
    never_again: dict[str, set[str]] = {}
    for start in range(0, len(stream), size):
        part = stream[start : start + size]
        n = len(part)
        batch = InteractionBatch(
            [u for u, _, _ in part],
            [i for _, i, _ in part],
            [k for _, _, k in part],
            np.full(n, 4.0),
            np.arange(start, start + n) * 1000,
        )
        served = rec.serve(batch)
        for (user, item, kind), listed in zip(part, served.items):
            assert not never_again.get(user, set()) & set(listed)
            if kind in ("purchase", "rating"):
                never_again.setdefault(user, set()).add(item)
        for user, ranked in served.final.items():
            assert not never_again.get(user, set()) & {item for item, _ in ranked}
            assert len(ranked) <= 5
        rec.learn(batch)
