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
            Cooccurrence(s.neighbours, s.pair_window, s.pair_half_life_ms, s.repeat_weight)
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
        items: list[list[str]] = [[] for _ in range(n)]
        scores: list[list[float]] = [[] for _ in range(n)]
        if size == 0 or k == 0:
            return items, scores
        raw = self.popularity.scores()[:size]
        top = raw.max()
        popular = (raw / top if top > 0 else raw).astype(np.float32)
        ids = self.catalogue.ids
        # Lists from popularity alone are the same for everyone but for exclusions: rank once.
        cold = contexts.sizes() == 0 if self.settings.model != "popularity" else np.ones(n, bool)
        if cold.any():
            self._rank_popular(contexts, np.flatnonzero(cold), popular, k, items, scores)
        warm = np.flatnonzero(~cold)
        block = max(1, BLOCK_CELLS // size)
        for start in range(0, len(warm), block):
            rows = warm[start : start + block]
            part = contexts.take(rows)
            dense = self._scores(part, popular, size)
            dense[part.excluded_rows(), part.excluded] = -np.inf
            top_slots, top_values = _top_k(dense, k)
            for q, row_slots, row_values in zip(
                rows.tolist(), top_slots.tolist(), top_values.tolist()
            ):
                shown = [i for i, v in enumerate(row_values) if v > -np.inf]
                items[q] = [ids[row_slots[i]] for i in shown]
                scores[q] = [row_values[i] for i in shown]
        return items, scores

    def _rank_popular(
        self,
        contexts: Contexts,
        rows: np.ndarray,
        popular: np.ndarray,
        k: int,
        items: list[list[str]],
        scores: list[list[float]],
    ) -> None:
        """Fill the given queries' lists from popularity alone: one ranking, less exclusions."""
        spare = int(np.diff(contexts.ex_ptr)[rows].max())
        order, values = _top_k(popular[None, :], k + spare)
        order, values = order[0], values[0]
        place = np.full(len(popular), -1, dtype=np.int64)
        place[order] = np.arange(len(order))
        part = contexts.take(rows)
        at = place[part.excluded]
        banned = np.zeros((len(rows), len(order)), dtype=bool)
        banned[part.excluded_rows()[at >= 0], at[at >= 0]] = True
        # Per row, the first k places not banned (a stable sort keeps them in rank order).
        first = np.argsort(banned, axis=1, kind="stable")[:, :k]
        shown = ~np.take_along_axis(banned, first, axis=1)
        ids = self.catalogue.ids
        slots, tops = order[first].tolist(), values[first].tolist()
        for q, row_slots, row_values, row_shown in zip(rows.tolist(), slots, tops, shown.tolist()):
            items[q] = [ids[s] for s, ok in zip(row_slots, row_shown) if ok]
            scores[q] = [v for v, ok in zip(row_values, row_shown) if ok]

    def _scores(self, contexts: Contexts, popular: np.ndarray, size: int) -> np.ndarray:
        """Dense (query, slot) scores of the chosen model, for queries with a context."""
        model = self.settings.model
        w_co, w_mf, w_pop = self.settings.blend_weights if model == "blend" else (1.0, 1.0, 0.0)
        if self.factors is not None:
            # Factor scores min-max scaled per row, times their weight, computed in place.
            dense = self.factors.scores(contexts, size)
            low, high = dense.min(axis=1), dense.max(axis=1)
            factor = np.where(high > low, w_mf / np.maximum(high - low, 1e-30), 0.0)
            dense *= factor[:, None].astype(np.float32)
            dense -= (low * factor)[:, None].astype(np.float32)
            dense += np.float32(w_pop + TIE_BREAK) * popular
        else:
            dense = np.repeat(np.float32(w_pop + TIE_BREAK) * popular[None, :], len(contexts), 0)
        if self.cooccurrence is not None:
            co = self.cooccurrence.scores(contexts, size).tocoo()
            row_max = np.zeros(len(contexts))
            np.maximum.at(row_max, co.row, co.data)
            scale = w_co / np.where(row_max > 0, row_max, 1.0)
            dense[co.row, co.col] += (co.data * scale[co.row]).astype(np.float32)
        return dense


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best columns and values, best first (equal values by column)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -values), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
