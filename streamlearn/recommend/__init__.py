"""Live recommendations: serve each event's top-k list as it stood just before it, then learn.

Pure core, no I/O: :class:`Recommender` owns the bounded memory (per-user recent history, item
catalogue) and the models (recency-weighted popularity, item co-occurrence, incremental BPR
factors, and their blend); :class:`RankingEvaluator` judges the served lists prequentially.

Memory is bounded by the caps in :class:`RecommenderSettings`: past ``max_users`` users or
``max_items`` items the least recently active is forgotten, and arrays never grow past the caps.
With the defaults (history 50, 100 excluded items, 50 neighbours, 32 factors) a remembered user
costs about 1.4 kB pickled (history ring 0.6 kB, exclusion ring 0.8 kB, the id) and an item
about 0.7 kB (co-occurrence row 0.4 kB, factors 0.26 kB, popularity, generation, the id); in
memory add roughly 0.15 kB each for the id's string and table entry. So the full default caps
(100 000 users, 50 000 items) hold about 200 MB; ``tests/unit/test_recommend_memory.py``
measures the per-user and per-item figures.

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
