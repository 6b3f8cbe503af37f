"""A synthetic stream of user-item interactions whose next item follows the user's hidden tastes.

Events come out in event-time order. Generation is vectorised one block of visits at a time, so
the stream for a seed is the same however the caller slices it.

Items belong to categories, and within a category a few items draw most of the traffic (a
Zipf-like long tail). Users belong to taste clusters: each cluster favours a few categories, and
each user has a favourite category of their own. A user comes back now and then (heavy users
often) for a visit of one or more sessions minutes apart; a session browses mostly one category
the user likes, and some views lead to a cart, fewer to a purchase, and a few to a rating that is
higher the better the item's category suits the user. So a user's history and the items seen
together predict the next item far better than global popularity does.

At ``drift_at`` every taste moves: each cluster's and each user's favourite categories rotate to
others, so a model of who likes what has to relearn. Sessions start more often in the evening and
at weekends (``seasonality``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

EVENT_TYPES = ("view", "cart", "purchase", "rating")
VIEW, CART, PURCHASE, RATING = range(len(EVENT_TYPES))
EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "cart": 2.0, "purchase": 4.0}
"""The ``value`` of an implicit interaction; a rating's ``value`` is its stars, 1.0 to 5.0."""

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

Message = tuple[str, str, dict[str, Any], int]
"""``(topic_kind, key, value, timestamp_ms)``: topic_kind is always ``"events"``."""

_EVENT_FIELDS = ("event_id", "user_id", "item_id", "event_type", "value", "ts")
_TYPE_NAMES = np.array(EVENT_TYPES, dtype=object)
_WEIGHTS = np.array([*EVENT_WEIGHTS.values(), 0.0])  # by event type; ratings carry their stars

_VISITS_PER_BLOCK = 1024
_PILOT_VISITS = 4096
_ZIPF = 1.1  # popularity exponent of an item's rank within its category
_FAVOURITES = 3  # categories each cluster favours
_CLUSTER_FOCUS = 0.85  # share of a cluster's taste on its favourites; the rest is spread thin
_OWN, _CLUSTER = 0.35, 0.50  # a session's category: the user's own favourite, the cluster's ...
# ... taste, or else (0.15) whatever is popular across all clusters.
_SESSION_FOCUS = 0.75  # share of a session's views in the session's category
_REVISIT = 0.1  # chance a view goes back to the item viewed just before
_MORE_SESSIONS = 0.4  # chance a visit goes on with another session
_EXTRA_VIEWS = 4.0  # mean views per session beyond the first
_CART, _BUY = 0.15, 0.4  # carts per view at a perfect taste match; purchases per cart
_RATE_BOUGHT, _RATE_VIEWED = 0.4, 0.01  # chance of a rating after a purchase, after a view
_SESSION_GAP_MS = 25 * 60_000  # median pause between the sessions of a visit
_VIEW_GAP_MS, _ACTION_GAP_MS = 40_000, 12_000  # median time before a view, a cart/purchase/rating

_WEEKDAY = np.array([0.9, 0.9, 0.95, 0.95, 1.0, 1.2, 1.15])  # Monday .. Sunday
# Sessions by hour of the day (UTC): quiet nights, a lunch bump and an evening peak.
_HOUR = np.array(
    [8, 5, 3, 2, 2, 3, 6, 12, 20, 25, 28, 32, 38, 35, 32, 32, 35, 40, 50, 62, 70, 65, 45, 20],
    dtype=np.float64,
)
_WEEK_ORIGIN_MS = 4 * DAY_MS  # Monday 1970-01-05, 00:00 UTC
_WEEK_H = 168.0


class RecommendationGenerator:
    """An endless, deterministic stream of users viewing, carting, buying and rating items.

    Parameters
    ----------
    seed
        Fixes the catalogue, the users, their tastes and every event.
    users
        How many users there are; activity varies widely between them (log-normal).
    items
        How many items the catalogue holds, spread over ``categories`` of varied size.
    categories
        How many item categories there are; at most ``items``.
    clusters
        How many taste clusters the users fall into.
    events_per_day
        About how many events a day of event time holds, on average over a week.
    drift_at
        Tastes rotate from the first block of visits generated once this many events have been
        generated (blocks hold about ten thousand events); None for no drift.
    seasonality
        Whether sessions follow a daily and weekly rhythm (evenings and weekends busier).
    start_ms
        Event time the stream starts from (epoch ms); None means today's UTC midnight.

    Examples
    --------
    >>> gen = RecommendationGenerator(seed=1, users=500, items=2_000, start_ms=0)
    >>> kind, key, event, ts = next(gen.messages(1))
    >>> kind, key == event["user_id"], ts == event["ts"], event["event_type"] in EVENT_TYPES
    ('events', True, True, True)
    >>> list(event)
    ['event_id', 'user_id', 'item_id', 'event_type', 'value', 'ts']
    >>> later = list(gen.events(5_000))
    >>> later[0]["event_id"], sorted({e["event_type"] for e in later}) == sorted(EVENT_TYPES)
    ('ia-1-000000001', True)
    >>> {e["value"] for e in later if e["event_type"] == "rating"} <= {1.0, 2.0, 3.0, 4.0, 5.0}
    True
    """

    def __init__(
        self,
        seed: int = 0,
        users: int = 100_000,
        items: int = 20_000,
        categories: int = 50,
        clusters: int = 20,
        events_per_day: float = 100_000.0,
        drift_at: int | None = None,
        seasonality: bool = True,
        start_ms: int | None = None,
    ) -> None:
        if min(users, items, categories, clusters) < 1 or events_per_day <= 0:
            raise ValueError(
                "users, items, categories, clusters and events_per_day must be positive"
            )
        if categories > items:
            raise ValueError(f"categories ({categories}) cannot outnumber items ({items})")
        self.seed = seed
        self.drift_at = drift_at
        if start_ms is None:
            start_ms = int(time.time() * 1000) // DAY_MS * DAY_MS
        self.start_ms = start_ms
        world = np.random.default_rng([seed, 1])
        self._catalogue = _Catalogue(world, items, categories)
        self._tastes = _Tastes(world, clusters, categories)
        self._users = _Users(world, users, self._tastes)
        pilot = _draw_visits(np.random.default_rng([seed, 2]), _PILOT_VISITS, self, drifted=False)
        self._visit_gap_h = 24.0 * len(pilot.kind) / _PILOT_VISITS / events_per_day
        self._clock = _Clock(seasonality)
        self._hours = self._clock.hours(start_ms)  # operational time of the last visit
        self._rng = np.random.default_rng([seed, 0])
        self._generated = 0  # events drawn so far, those still pending included
        self._emitted = 0
        self._pending = _Events.empty()
        self._buffer: list[Message] = []
        self._cursor = 0

    @property
    def item_categories(self) -> dict[str, int]:
        """Each item's category (0 .. categories - 1): ground truth the events do not carry."""
        c = self._catalogue
        return dict(zip(c.ids.tolist(), c.category.tolist()))

    @property
    def user_clusters(self) -> dict[str, int]:
        """Each user's taste cluster (0 .. clusters - 1)."""
        return dict(zip(self._users.ids.tolist(), self._users.cluster.tolist()))

    def cluster_tastes(self, drifted: bool = False) -> np.ndarray:
        """Each cluster's taste, shape (clusters, categories): rows are category probabilities."""
        return self._tastes.of(drifted)

    def messages(self, n: int) -> Iterator[Message]:
        """Yield the next ``n`` events as ``("events", user_id, event, ts)``."""
        for _ in range(n):
            if self._cursor == len(self._buffer):
                self._buffer, self._cursor = self._next_block(), 0
            message = self._buffer[self._cursor]
            self._cursor += 1
            yield message

    def events(self, n: int) -> Iterator[dict[str, Any]]:
        """Yield the next ``n`` events as JSON-ready dicts of str, int and float values."""
        for message in self.messages(n):
            yield message[2]

    def _next_block(self) -> list[Message]:
        """Draw a block of visits and release, in time order, the events no later visit precedes."""
        drifted = self.drift_at is not None and self._generated >= self.drift_at
        rng = self._rng
        block = _draw_visits(rng, _VISITS_PER_BLOCK, self, drifted)
        hours = self._hours + np.cumsum(rng.exponential(self._visit_gap_h, _VISITS_PER_BLOCK))
        self._hours = float(hours[-1])
        visit_ms = self._clock.epoch_ms(hours)
        block.ts = np.floor(visit_ms[block.visit] + block.offset_ms).astype(np.int64)
        self._generated += len(block.ts)
        events = _Events.concat(self._pending, block)
        order = np.argsort(events.ts, kind="stable")  # ties: earlier drawn first
        # Every later visit starts after this block's last one, and so do all its events.
        ready = int(np.searchsorted(events.ts[order], np.floor(visit_ms[-1])))
        self._pending = events.take(order[ready:])
        return self._messages(events.take(order[:ready]))

    def _messages(self, events: _Events) -> list[Message]:
        start = self._emitted
        self._emitted += len(events.ts)
        users = self._users.ids[events.user].tolist()
        timestamps = events.ts.tolist()
        columns = (
            [f"ia-{self.seed}-{i:09d}" for i in range(start, self._emitted)],
            users,
            self._catalogue.ids[events.item].tolist(),
            _TYPE_NAMES[events.kind].tolist(),
            events.value.tolist(),
            timestamps,
        )
        values = [dict(zip(_EVENT_FIELDS, row)) for row in zip(*columns)]
        return [("events", *message) for message in zip(users, values, timestamps)]


def recommendation_events(
    n: int, *, seed: int = 0, drift_at: int | None = None, **options: Any
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` interaction events; ``options`` go to :class:`RecommendationGenerator`.

    Examples
    --------
    >>> stream = list(recommendation_events(2_000, seed=3, users=300, items=1_000, start_ms=0))
    >>> times = [e["ts"] for e in stream]
    >>> len(stream), times == sorted(times), stream[0]["ts"] >= 0
    (2000, True, True)
    """
    return RecommendationGenerator(seed=seed, drift_at=drift_at, **options).events(n)


class _Catalogue:
    """The items, stored by category, with a long tail of popularity within each category."""

    def __init__(self, rng: np.random.Generator, items: int, categories: int) -> None:
        share = rng.lognormal(0.0, 0.6, categories)
        size = 1 + rng.multinomial(items - categories, share / share.sum())
        self.first = np.cumsum(size) - size  # each category's first item
        self.last = self.first + size - 1
        self.category = np.repeat(np.arange(categories), size)
        rank = np.arange(items) - self.first[self.category] + 1
        self.cumulative = np.cumsum(rank**-_ZIPF)
        self.before = self.cumulative[self.first] - 1.0  # weight of the earlier categories' items
        width = max(5, len(str(items - 1)))
        # Shuffled ids, so an id says nothing about the category or the popularity.
        self.ids = np.array([f"item-{i:0{width}d}" for i in rng.permutation(items)], dtype=object)

    def draw(self, category: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """An item of each ``category``, by popularity within it."""
        low, high = self.before[category], self.cumulative[self.last[category]]
        item = np.searchsorted(self.cumulative, low + uniform * (high - low), side="right")
        return np.clip(item, self.first[category], self.last[category])


class _Tastes:
    """Each cluster's taste over categories, before and after the drift rotates them."""

    def __init__(self, rng: np.random.Generator, clusters: int, categories: int) -> None:
        self.size, self.categories = clusters, categories
        favourites = np.argsort(rng.random((clusters, categories)), axis=1)[:, :_FAVOURITES]
        focus = np.zeros((clusters, categories))
        weights = rng.dirichlet(np.full(favourites.shape[1], 2.0), clusters)
        np.put_along_axis(focus, favourites, weights, axis=1)
        spread = rng.dirichlet(np.ones(categories), clusters)
        self.before = _CLUSTER_FOCUS * focus + (1.0 - _CLUSTER_FOCUS) * spread
        self.share = rng.dirichlet(np.full(clusters, 3.0))  # how many users each cluster has
        self.shift = categories // 2 + 1 if categories > 1 else 0

    def of(self, drifted: bool) -> np.ndarray:
        return np.roll(self.before, self.shift, axis=1) if drifted else self.before

    def rotate(self, category: np.ndarray, drifted: bool) -> np.ndarray:
        """Where a favourite category moves with the drift."""
        return (category + self.shift) % self.categories if drifted else category

    def sampler(self, drifted: bool) -> _TasteSampler:
        return _TasteSampler(self.of(drifted), self.share)


class _TasteSampler:
    """Draws categories from the clusters' tastes, and from the mix of them all."""

    def __init__(self, taste: np.ndarray, share: np.ndarray) -> None:
        self.taste = taste
        # Row k's cumulative taste shifted by k: one searchsorted serves every cluster.
        self.rows = (np.cumsum(taste, axis=1) + np.arange(len(taste))[:, None]).ravel()
        self.popular = share @ taste
        self.cumulative_popular = np.cumsum(self.popular)

    def draw(self, cluster: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        categories = self.taste.shape[1]
        flat = np.searchsorted(self.rows, cluster + uniform, side="right")
        return np.clip(flat - cluster * categories, 0, categories - 1)

    def draw_popular(self, uniform: np.ndarray) -> np.ndarray:
        category = np.searchsorted(self.cumulative_popular, uniform * self.cumulative_popular[-1])
        return np.minimum(category, len(self.popular) - 1)


class _Users:
    """The users: their cluster, their own favourite category, and how active they are."""

    def __init__(self, rng: np.random.Generator, n: int, tastes: _Tastes) -> None:
        width = max(6, len(str(n - 1)))
        self.ids = np.array([f"user-{i:0{width}d}" for i in range(n)], dtype=object)
        self.cluster = rng.choice(tastes.size, n, p=tastes.share)
        self.favourite = tastes.sampler(drifted=False).draw(self.cluster, rng.random(n))
        self.cumulative_activity = np.cumsum(rng.lognormal(0.0, 1.0, n))

    def draw(self, uniform: np.ndarray) -> np.ndarray:
        total = self.cumulative_activity[-1]
        user = np.searchsorted(self.cumulative_activity, uniform * total, side="right")
        return np.minimum(user, len(self.ids) - 1)


@dataclass
class _Events:
    """Events as columns; ``offset_ms`` is the time after the start of the event's visit."""

    user: np.ndarray
    item: np.ndarray
    kind: np.ndarray
    value: np.ndarray
    ts: np.ndarray
    visit: np.ndarray
    offset_ms: np.ndarray

    @classmethod
    def empty(cls) -> _Events:
        ints, floats = np.empty(0, dtype=np.int64), np.empty(0)
        return cls(ints, ints, ints, floats, ints, ints, floats)

    @classmethod
    def concat(cls, first: _Events, second: _Events) -> _Events:
        return cls(**{k: np.concatenate([v, getattr(second, k)]) for k, v in vars(first).items()})

    def take(self, rows: np.ndarray) -> _Events:
        return _Events(**{k: v[rows] for k, v in vars(self).items()})


def _draw_visits(
    rng: np.random.Generator, visits: int, world: RecommendationGenerator, drifted: bool
) -> _Events:
    """Draw the events of ``visits`` visits, timed from each visit's start (``ts`` left 0)."""
    users, tastes, catalogue = world._users, world._tastes, world._catalogue
    sampler = tastes.sampler(drifted)
    who = users.draw(rng.random(visits))
    sessions = rng.geometric(1.0 - _MORE_SESSIONS, visits)
    session_visit = np.repeat(np.arange(visits), sessions)
    session_user = who[session_visit]
    pause = rng.lognormal(np.log(_SESSION_GAP_MS), 0.8, len(session_visit))
    session_offset = _running_sum(pause, sessions)

    cluster = users.cluster[session_user]
    own = tastes.rotate(users.favourite[session_user], drifted)
    choice, uniform = rng.random((2, len(session_user)))
    topic = np.where(
        choice < _OWN,
        own,
        np.where(
            choice < _OWN + _CLUSTER, sampler.draw(cluster, uniform), sampler.draw_popular(uniform)
        ),
    )

    views = 1 + rng.poisson(_EXTRA_VIEWS, len(session_user))
    view_session = np.repeat(np.arange(len(views)), views)
    n_views = len(view_session)
    view_user = session_user[view_session]
    focused, uniform, revisit = rng.random((3, n_views))
    category = np.where(
        focused < _SESSION_FOCUS,
        topic[view_session],
        sampler.draw(users.cluster[view_user], uniform),
    )
    item = catalogue.draw(category, rng.random(n_views))
    back = revisit < _REVISIT
    back[np.cumsum(views) - views] = False  # a session's first view has nothing to go back to
    previous = np.maximum(np.arange(n_views) - 1, 0)
    item = np.where(back, item[previous], item)
    category = np.where(back, category[previous], category)

    match = _match(sampler, users.cluster[view_user], own[view_session], category)
    carted, bought, rated = rng.random((3, n_views))
    cart = carted < _CART * match
    buy = cart & (bought < _BUY)
    rate = rated < np.where(buy, _RATE_BOUGHT, _RATE_VIEWED)
    stars = np.clip(np.rint(1.5 + 3.5 * match + rng.normal(0.0, 0.8, n_views)), 1.0, 5.0)

    # Each view is followed by its cart, purchase and rating, in that order.
    actions = 1 + cart + buy + rate
    view = np.repeat(np.arange(n_views), actions)
    step = np.arange(len(view)) - (np.cumsum(actions) - actions)[view]
    kind = np.where(
        step == 0,
        VIEW,
        np.where(
            step <= cart[view].astype(int) + buy[view], np.where(step == 1, CART, PURCHASE), RATING
        ),
    )
    session = view_session[view]
    gap = np.where(
        step == 0,
        rng.lognormal(np.log(_VIEW_GAP_MS), 0.9, len(view)),
        rng.lognormal(np.log(_ACTION_GAP_MS), 0.6, len(view)),
    )
    per_session = np.bincount(session, minlength=len(views))
    return _Events(
        user=view_user[view],
        item=item[view],
        kind=kind,
        value=np.where(kind == RATING, stars[view], _WEIGHTS[kind]),
        ts=np.zeros(len(view), dtype=np.int64),
        visit=session_visit[session],
        offset_ms=session_offset[session] + _running_sum(gap, per_session),
    )


def _match(
    sampler: _TasteSampler, cluster: np.ndarray, own: np.ndarray, category: np.ndarray
) -> np.ndarray:
    """How well each category suits the user, from 0 to 1: their chance of browsing it, scaled."""
    chance = (
        _OWN * (category == own)
        + _CLUSTER * sampler.taste[cluster, category]
        + (1.0 - _OWN - _CLUSTER) * sampler.popular[category]
    )
    return chance / (chance + 1.0 / sampler.taste.shape[1])


def _running_sum(gaps: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``gaps`` within consecutive groups of ``sizes``, each from 0."""
    starts = np.cumsum(sizes) - sizes
    gaps = gaps.copy()
    gaps[starts[sizes > 0]] = 0.0
    total = np.cumsum(gaps)
    return total - np.repeat(total[starts[sizes > 0]], sizes[sizes > 0])


class _Clock:
    """Maps operational hours (visits arrive evenly in them) to event time, with the seasons."""

    def __init__(self, seasonal: bool) -> None:
        rate = np.outer(_WEEKDAY, _HOUR).ravel() if seasonal else np.ones(int(_WEEK_H))
        self.rate = rate / rate.mean()
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.rate)])  # ends at _WEEK_H

    def hours(self, epoch_ms: int) -> float:
        """Operational hours at an event time."""
        weeks, within = divmod((epoch_ms - _WEEK_ORIGIN_MS) / HOUR_MS, _WEEK_H)
        hour = int(within)
        return weeks * _WEEK_H + float(self.cumulative[hour] + (within - hour) * self.rate[hour])

    def epoch_ms(self, hours: np.ndarray) -> np.ndarray:
        """Event times (float epoch ms) at operational ``hours``."""
        weeks, within = np.divmod(hours, _WEEK_H)
        hour = np.clip(np.searchsorted(self.cumulative, within, side="right") - 1, 0, 167)
        real = weeks * _WEEK_H + hour + (within - self.cumulative[hour]) / self.rate[hour]
        return _WEEK_ORIGIN_MS + real * HOUR_MS
