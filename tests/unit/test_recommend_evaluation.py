"""RankingEvaluator: hit-rate and NDCG as served, windows, keep masks, pickling."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from streamlearn.recommend import InteractionBatch, RankingEvaluator, Served


def batch(items: list[str]) -> InteractionBatch:
    n = len(items)
    return InteractionBatch(["u"] * n, items, ["view"] * n, np.ones(n), np.arange(n))


def test_hit_rate_and_ndcg_count_the_rank_of_the_item_interacted_with():
    ev = RankingEvaluator(k=3, window=100)
    served = Served([["a", "b", "c"], ["b", "c", "a"], ["x", "y", "z"], ["q", "r", "s", "d"]])
    ev.update(served, batch(["a", "a", "a", "d"]))
    assert ev.last_hits.tolist() == [1, 1, 0, 0]  # d is 4th: outside k = 3
    scores = ev.scores()
    assert scores["hit_rate_at_3"] == 0.5
    assert scores["ndcg_at_3"] == pytest.approx((1 + 1 / math.log2(4)) / 4)


def test_rolling_window_forgets_and_keep_skips_events():
    ev = RankingEvaluator(k=10, window=2)
    ev.update(Served([["a"], ["b"], ["c"]]), batch(["a", "b", "x"]), keep=np.array([1, 1, 0]) > 0)
    assert ev.count == 2 and ev.scores()["hit_rate_at_10"] == 1.0
    ev.update(Served([["a"]]), batch(["x"]))
    assert ev.rolling()["hit_rate_at_10"] == 0.5  # the last two: one hit, one miss
    assert ev.scores()["hit_rate_at_10"] == pytest.approx(2 / 3)
    copy = pickle.loads(pickle.dumps(ev))
    assert copy.scores() == ev.scores() and copy.rolling() == ev.rolling()


def test_mismatched_lists_are_refused():
    with pytest.raises(ValueError, match="must pair up"):
        RankingEvaluator().update(Served([["a"]]), batch(["a", "b"]))
    assert RankingEvaluator().scores() == {}
