"""Live recommendations: serve each event's top-k list as it stood just before it, then learn.

Pure core, no I/O: :class:`Recommender` owns the bounded memory (per-user recent history, item
catalogue) and the models (recency-weighted popularity, item co-occurrence, incremental BPR
factors, and their blend); :class:`RankingEvaluator` judges the served lists prequentially.

Memory is bounded by the caps in :class:`RecommenderSettings`: past ``max_users`` users or
``max_items`` items the least recently active is forgotten. With the defaults (history 50,
100 excluded items, 50 neighbours, 32 factors) a remembered user costs about 0.7 kB
(history and exclusion rings, 0.65 kB, plus the id's table entry) and an item about 0.9 kB
(co-occurrence row 0.4 kB, factors and bias 0.26 kB, popularity, generation and id), so the
full caps (100 000 users, 50 000 items) hold about 115 MB; ``tests/test_recommend_memory.py``
measures it.

Examples
--------
>>> rec = Recommender(RecommenderSettings(k=2))
>>> batch = InteractionBatch(["u1", "u1", "u2"], ["a", "b", "a"], ["view", "purchase", "view"],
...                          [1.0, 1.0, 1.0], [1_000, 2_000, 3_000])
>>> rec.learn(batch)
>>> [item for item, _ in rec.recommend("u2")]  # b went with a; a was only viewed: may come back
['b', 'a']
"""

from streamlearn.recommend.evaluation import RankingEvaluator
from streamlearn.recommend.events import EVENT_TYPES, InteractionBatch
from streamlearn.recommend.recommender import Recommender, Served
from streamlearn.recommend.settings import MODELS, RecommenderSettings

__all__ = [
    "EVENT_TYPES",
    "MODELS",
    "InteractionBatch",
    "RankingEvaluator",
    "Recommender",
    "RecommenderSettings",
    "Served",
]
