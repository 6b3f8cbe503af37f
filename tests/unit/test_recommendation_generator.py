"""The recommendation generator: schema, slicing, time, long tail, tastes, ratings, drift."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

import numpy as np
import orjson
import pytest

from streamlearn.errors import ConfigError
from streamlearn.generators.recommendation import (
    DAY_MS,
    EVENT_TYPES,
    EVENT_WEIGHTS,
    RecommendationGenerator,
    recommendation_events,
)
from streamlearn.workloads import TASK_OPTIONS, TASK_TOPICS, _topics, task_events, task_messages

MONDAY = 1_704_067_200_000  # 2024-01-01T00:00Z
EVENTS, DRIFT_AT, PER_DAY = 60_000, 30_000, 10_000  # six days of event time
EVENT_FIELDS = ["event_id", "user_id", "item_id", "event_type", "value", "ts"]

Message = tuple[str, str, dict[str, Any], int]


SETTINGS: dict[str, Any] = {
    "seed": 3,
    "users": 3_000,
    "items": 10_000,
    "events_per_day": PER_DAY,
    "start_ms": MONDAY,
}


def generator(**options: Any) -> RecommendationGenerator:
    return RecommendationGenerator(**{**SETTINGS, **options})


class Stream:
    """One generated stream as columns, with the generator's ground truth beside it."""

    def __init__(self, drift_at: int | None = None) -> None:
        gen = generator(drift_at=drift_at)
        self.messages: list[Message] = list(gen.messages(EVENTS))
        self.events = [value for _, _, value, _ in self.messages]
        category = gen.item_categories
        cluster = gen.user_clusters
        self.user = np.array([int(e["user_id"][5:]) for e in self.events])
        self.cluster = np.array([cluster[e["user_id"]] for e in self.events])
        self.item = np.array([e["item_id"] for e in self.events])
        self.category = np.array([category[e["item_id"]] for e in self.events])
        self.kind = np.array([e["event_type"] for e in self.events])
        self.value = np.array([e["value"] for e in self.events])
        self.ts = np.array([e["ts"] for e in self.events], dtype=np.int64)
        self.tastes = {drifted: gen.cluster_tastes(drifted) for drifted in (False, True)}

    def in_favourites(self, drifted: bool = False) -> np.ndarray:
        """Whether each event's category is among its user's cluster's three favourites."""
        top = np.argsort(-self.tastes[drifted], axis=1)[:, :3]
        return (top[self.cluster] == self.category[:, None]).any(axis=1)


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream()


@pytest.fixture(scope="module")
def drifted() -> Stream:
    return Stream(drift_at=DRIFT_AT)


def test_same_seed_same_stream_however_it_is_sliced() -> None:
    whole = list(generator().messages(25_000))
    pieces = generator()
    sliced = [*pieces.messages(1), *pieces.messages(9_999), *pieces.messages(15_000)]
    assert sliced == whole
    assert list(recommendation_events(500, **SETTINGS)) == [m[2] for m in whole[:500]]
    other = list(generator(seed=4).messages(100))
    assert [m[2]["item_id"] for m in other] != [m[2]["item_id"] for m in whole[:100]]


def test_every_message_follows_the_schema(stream: Stream) -> None:
    field_types = [str, str, str, str, float, int]
    for kind, key, value, timestamp in stream.messages:
        assert kind == "events" and list(value) == EVENT_FIELDS
        assert [type(value[name]) for name in EVENT_FIELDS] == field_types
        assert key == value["user_id"] and timestamp == value["ts"]
    assert set(stream.kind) == set(EVENT_TYPES)
    assert [e["event_id"] for e in stream.events[:2]] == ["ia-3-000000000", "ia-3-000000001"]
    assert len({e["event_id"] for e in stream.events}) == EVENTS
    for name, weight in EVENT_WEIGHTS.items():
        assert (stream.value[stream.kind == name] == weight).all()
    assert orjson.loads(orjson.dumps(stream.events[:1000])) == stream.events[:1000]


def test_ratings_are_whole_stars_from_1_to_5(stream: Stream) -> None:
    stars = stream.value[stream.kind == "rating"]
    assert set(stars) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_views_lead_to_fewer_carts_and_fewer_purchases(stream: Stream) -> None:
    count = Counter(stream.kind)
    assert count["view"] > 0.7 * EVENTS
    assert count["view"] > 5 * count["cart"] > 5 * count["purchase"] > 0
    assert count["purchase"] > count["rating"] > 0


def test_events_come_in_time_order_and_a_users_events_in_bursts(stream: Stream) -> None:
    assert (np.diff(stream.ts) >= 0).all() and stream.ts[0] >= MONDAY
    assert 5.0 < (stream.ts[-1] - MONDAY) / DAY_MS < 7.0  # EVENTS / PER_DAY days, about
    order = np.lexsort((stream.ts, stream.user))
    same_user = np.diff(stream.user[order]) == 0
    gaps_s = np.diff(stream.ts[order])[same_user] / 1000
    assert np.median(gaps_s) < 120  # within a session: seconds to minutes apart
    assert (gaps_s < 3_600).mean() > 0.8  # mostly one visit at a time
    assert (gaps_s > 6 * 3_600).mean() > 0.02  # and now and then a new visit, hours later


def test_evenings_are_busier_than_nights(stream: Stream) -> None:
    hour = (stream.ts // 3_600_000) % 24
    assert (hour >= 18).sum() > 4 * ((hour >= 1) & (hour < 7)).sum()
    flat = generator(seasonality=False).events(20_000)
    flat_hour = np.array([e["ts"] // 3_600_000 % 24 for e in flat])
    assert (flat_hour >= 18).sum() < 1.5 * ((flat_hour >= 1) & (flat_hour < 7)).sum()


def test_a_few_items_draw_most_of_the_traffic(stream: Stream) -> None:
    counts = np.array(sorted(Counter(stream.item).values(), reverse=True))
    assert counts[:100].sum() > 0.3 * EVENTS  # the top 1 % of 10,000 items
    assert len(counts) > 3_000  # and a long tail still gets seen


def test_users_keep_to_their_clusters_favourite_categories(stream: Stream) -> None:
    # Three favourites of 50 categories would get 6 % of the events at random.
    assert stream.in_favourites().mean() > 0.5
    buys = stream.kind == "purchase"
    assert stream.in_favourites()[buys].mean() > stream.in_favourites().mean()


def test_ratings_are_higher_where_tastes_match(stream: Stream) -> None:
    rated = stream.kind == "rating"
    liked = stream.value[rated & stream.in_favourites()].mean()
    other = stream.value[rated & ~stream.in_favourites()].mean()
    assert liked > other + 0.7


def test_a_users_history_predicts_the_next_item_far_better_than_popularity(
    stream: Stream,
) -> None:
    """Hit-rate@10 on the next view: global top items vs top items of the user's categories."""
    n_categories = int(stream.category.max()) + 1
    category_of = dict(zip(stream.item.tolist(), stream.category.tolist()))
    counts: Counter[str] = Counter()
    history: dict[int, deque[int]] = {}
    top: list[str] = []
    top_in: dict[int, list[str]] = {}
    hits = np.zeros(2)
    trials = 0
    for i in range(EVENTS):
        if i % 2_000 == 0:
            ranked = [item for item, _ in counts.most_common()]
            top = ranked[:10]
            top_in = {c: [] for c in range(n_categories)}
            for item in ranked:
                if len(top_in[category_of[item]]) < 10:
                    top_in[category_of[item]].append(item)
        user, item = int(stream.user[i]), str(stream.item[i])
        seen = history.setdefault(user, deque(maxlen=20))
        if i >= 10_000 and stream.kind[i] == "view" and seen:
            favourite = Counter(seen).most_common(1)[0][0]
            hits += [item in top, item in top_in[favourite]]
            trials += 1
        seen.append(int(stream.category[i]))
        counts[item] += 1
    popularity, by_taste = hits / trials
    assert by_taste > 1.3 * popularity + 0.05, (popularity, by_taste)


def test_the_drift_moves_every_cluster_to_other_categories(stream: Stream, drifted: Stream) -> None:
    before = slice(0, DRIFT_AT - 5_000)  # the drift takes effect within a block of drift_at
    after = slice(DRIFT_AT + 15_000, EVENTS)
    assert drifted.events[before] == stream.events[before]
    assert drifted.in_favourites()[before].mean() > 0.5
    assert drifted.in_favourites()[after].mean() < 0.2
    assert drifted.in_favourites(drifted=True)[after].mean() > 0.5
    assert stream.in_favourites()[after].mean() > 0.5


@pytest.mark.parametrize(
    "options",
    [
        {"users": 0},
        {"items": 0},
        {"categories": 0},
        {"clusters": 0},
        {"events_per_day": 0.0},
        {"items": 10, "categories": 20},
    ],
)
def test_impossible_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RecommendationGenerator(**options)


def test_without_a_start_time_the_stream_starts_today() -> None:
    first = next(RecommendationGenerator(users=100, items=500).events(1))
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    assert today <= first["ts"] < today + DAY_MS


def test_the_workload_factories_know_the_recommendation_task() -> None:
    options = {"users": 200, "items": 1_000}
    factory = task_messages("recommendation", seed=2, drift_at=None, options=options)
    messages = [*factory(300), *factory(200)]
    assert len(messages) == 500
    for kind, key, value, timestamp in messages:
        assert kind == "events" and list(value) == EVENT_FIELDS
        assert key == value["user_id"] and timestamp == value["ts"]
    assert len({value["event_id"] for _, _, value, _ in messages}) == 500
    events = list(task_events("recommendation", seed=2, drift_at=None, options=options)(500))
    assert without_time(events) == without_time([value for _, _, value, _ in messages])
    assert {e["user_id"] for e in events} <= {f"user-{i:06d}" for i in range(200)}
    assert TASK_TOPICS["recommendation"] == "interactions"
    assert TASK_OPTIONS["recommendation"] == ("users", "items")
    assert _topics("recommendation", None, None) == {"events": "interactions"}


def without_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Without a start time the stream starts at today's UTC midnight, which may move meanwhile.
    return [{k: v for k, v in e.items() if k != "ts"} for e in events]


def test_options_of_another_task_are_refused() -> None:
    with pytest.raises(ConfigError, match="customers"):
        task_events("recommendation", seed=0, drift_at=None, options={"customers": 10})
    with pytest.raises(ConfigError, match="users"):
        task_events("retention", seed=0, drift_at=None, options={"users": 10})
    with pytest.raises(ConfigError, match="recommendation generator"):
        task_messages("recommendation", seed=0, drift_at=None, options={"items": 0})
    with pytest.raises(ConfigError, match="labels topic"):
        _topics("recommendation", None, "labels")
