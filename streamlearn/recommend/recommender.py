"""The live recommender: serves each event's list as it stood just before it, then learns.

One picklable object owns the bounded memory (item catalogue, users' recent histories) and the
models; serving is pure, learning is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamlearn.recommend.context import BatchEvents, Contexts, batch_contexts
from streamlearn.recommend.cooccurrence import Cooccurrence
from streamlearn.recommend.events import InteractionBatch
from streamlearn.recommend.factors import Factors
from streamlearn.recommend.memory import ItemCatalogue, UserHistories
from streamlearn.recommend.popularity import Popularity
from streamlearn.recommend.settings import RecommenderSettings

# Dense score blocks hold about this many (query, item) cells, to bound serving memory.
BLOCK_CELLS = 2_000_000
# Popularity's share in a personal model's score: it only orders items the model cannot tell
# apart (a user's first lists, items with no co-occurrence).
TIE_BREAK = 1e-3


@dataclass(slots=True)
class Served:
    """What was served to each event's user just before the event, and each user's list after.

    ``items[i]`` (best first, at most k) and ``scores[i]`` are event i's list; ``final`` maps
    each user in the batch to the (item, score) list after all of the batch's events.
    """

    items: list[list[str]] = field(default_factory=list)
    scores: list[list[float]] = field(default_factory=list)
    final: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


class Recommender:
    """Top-k item lists per user from a stream of interactions, learned test-then-train.

    Parameters
    ----------
    settings
        Model, list length, memory caps and learning settings; the defaults when None.

    Examples
    --------
    >>> from streamlearn.recommend.events import InteractionBatch
    >>> rec = Recommender(RecommenderSettings(k=3))
    >>> batch = InteractionBatch(["ann", "bob", "ann", "bob"], ["tea", "tea", "cake", "cake"],
    ...                          ["view", "view", "purchase", "view"], [1, 1, 1, 1], [1, 2, 3, 4])
    >>> served = rec.serve(batch)  # nothing learned yet: empty lists
    >>> served.items, served.final
    ([[], [], [], []], {'ann': [], 'bob': []})
    >>> rec.learn(batch)
    >>> [item for item, _ in rec.recommend("ann")]  # cake was bought: never shown again
    ['tea']
    >>> [item for item, _ in rec.recommend("carol")]  # unknown: what is popular now
    ['cake', 'tea']
    """

    def __init__(self, settings: RecommenderSettings | None = None) -> None:
        s = settings or RecommenderSettings()
        self.settings = s
        self.catalogue = ItemCatalogue(s.max_items)
        self.histories = UserHistories(s.max_users, s.history_len, s.excluded_len)
        self.popularity = Popularity(s.half_life_ms)
        self.cooccurrence = (
            Cooccurrence(s.neighbours, s.pair_window, s.pair_half_life_ms)
            if s.model in ("cooccurrence", "blend")
            else None
        )
        self.factors = (
            Factors(s.factors, s.learning_rate, s.regularisation, s.negatives, s.epochs, s.seed)
            if s.model in ("mf", "blend")
            else None
        )
        self.learned = 0  # events learned from so far

    def serve(self, batch: InteractionBatch) -> Served:
        """Each event's list as served just before it, and each user's list after the batch.

        Changes nothing: the models score as they were before the batch, while each user's
        history and exclusions include the batch's earlier events.
        """
        events = self._events(batch, self.catalogue.lookup(batch.items))
        contexts, users = batch_contexts(
            events,
            self.histories,
            self.catalogue.generation,
            self.settings.context_decay,
            finals=True,
        )
        items, scores = self._rank(contexts, self.settings.k)
        n = len(batch)
        final = {u: list(zip(items[n + j], scores[n + j])) for j, u in enumerate(users)}
        return Served(items[:n], scores[:n], final)

    def recommend(self, user: str, k: int | None = None) -> list[tuple[str, float]]:
        """The user's list now, best first; an unknown user gets what is popular now."""
        events = self._events(InteractionBatch([], [], []), np.zeros(0, dtype=np.int64))
        contexts, _ = batch_contexts(
            events,
            self.histories,
            self.catalogue.generation,
            self.settings.context_decay,
            finals=True,
            extra_users=[user],
        )
        items, scores = self._rank(contexts, self.settings.k if k is None else k)
        return list(zip(items[0], scores[0]))

    def learn(self, batch: InteractionBatch, keep: np.ndarray | None = None) -> None:
        """Learn from the events where ``keep`` is true (all when None), in stream order."""
        if keep is not None:
            batch = batch.select(keep)
        if len(batch) == 0:
            return
        catalogue = self.catalogue
        slots = catalogue.admit(batch.items)
        evicted = np.array(catalogue.evicted, dtype=np.int64)
        for model in self._models():
            model.resize(len(catalogue.generation))
            if len(evicted):
                model.forget(evicted)
        events = self._events(batch, slots)
        contexts, _ = batch_contexts(
            events, self.histories, catalogue.generation, self.settings.context_decay, False
        )
        self.popularity.learn(slots, events.weights, batch.ts_ms)
        if self.cooccurrence is not None:
            self.cooccurrence.learn(contexts, slots, events.weights, batch.ts_ms)
        if self.factors is not None:
            self.factors.learn(contexts, slots, events.weights, catalogue.size)
        self.histories.append(
            batch.users, slots, events.weights, events.excludes, catalogue.generation
        )
        self.learned += len(batch)

    def _models(self) -> list[Popularity | Cooccurrence | Factors]:
        return [m for m in (self.popularity, self.cooccurrence, self.factors) if m is not None]

    def _events(self, batch: InteractionBatch, slots: np.ndarray) -> BatchEvents:
        excluding = set(self.settings.exclude)
        return BatchEvents(
            users=batch.users,
            slots=slots,
            weights=self.settings.weights(batch.kinds, batch.values),
            excludes=np.array([kind in excluding for kind in batch.kinds], dtype=bool),
        )

    def _rank(self, contexts: Contexts, k: int) -> tuple[list[list[str]], list[list[float]]]:
        size = self.catalogue.size
        n = len(contexts)
        if size == 0 or k == 0:
            return [[] for _ in range(n)], [[] for _ in range(n)]
        popular = self.popularity.scores()[:size]
        block = max(1, BLOCK_CELLS // size)
        ids = self.catalogue.ids
        items: list[list[str]] = []
        scores: list[list[float]] = []
        for start in range(0, n, block):
            part = contexts.part(start, min(n, start + block))
            dense = self._scores(part, popular, size)
            dense[part.excluded_rows(), part.excluded] = -np.inf
            top, values = _top_k(dense, k)
            for row_slots, row_values in zip(top.tolist(), values.tolist()):
                shown = [i for i, v in enumerate(row_values) if v > -np.inf]
                items.append([ids[row_slots[i]] for i in shown])
                scores.append([row_values[i] for i in shown])
        return items, scores

    def _scores(self, contexts: Contexts, popular: np.ndarray, size: int) -> np.ndarray:
        """Dense (query, slot) scores of the chosen model; a query with no context gets popularity."""
        top = popular.max() if len(popular) else 0.0
        popular = popular / top if top > 0 else popular
        dense = np.repeat(popular[None, :], len(contexts), axis=0)
        model = self.settings.model
        if model == "popularity":
            return dense
        cold = contexts.sizes() == 0
        weights = self.settings.blend_weights
        personal = TIE_BREAK * dense
        if self.cooccurrence is not None:
            co = self.cooccurrence.scores(contexts, size).toarray()
            co = _scaled(co, low=np.zeros(len(co)))
            personal += co if model == "cooccurrence" else weights[0] * co
        if self.factors is not None:
            mf = self.factors.scores(contexts, size).astype(np.float64)
            mf = _scaled(mf, low=mf.min(axis=1))
            personal += mf if model == "mf" else weights[1] * mf
        if model == "blend":
            personal += weights[2] * dense
        return np.where(cold[:, None], dense, personal)


def _scaled(scores: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Rows mapped so ``low`` goes to 0 and the row's maximum to 1 (flat rows to 0)."""
    span = scores.max(axis=1) - low
    span = np.where(span > 0, span, np.inf)
    return np.asarray((scores - low[:, None]) / span[:, None])


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best columns and values, best first (ties: the lower column first)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -values), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
