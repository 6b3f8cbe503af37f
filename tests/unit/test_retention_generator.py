"""The retention generator: schema, delayed labels that tell the truth, churn, seasons, drift."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from streamlearn.errors import ConfigError
from streamlearn.generators.retention import (
    AGGREGATES,
    DAY_MS,
    EVENT_TYPES,
    FIELD_TYPES,
    PLANS,
    SEGMENTS,
    RetentionGenerator,
    retention_messages,
)
from streamlearn.workloads import _topics, task_events, task_messages

MONDAY = 1_704_067_200_000  # 2024-01-01T00:00Z
DELAY_DAYS = 30
CUSTOMERS, EVENTS, DRIFT_AT = 3_000, 120_000, 60_000  # ~1,000 events a day over 120 days
EVENT_FIELDS = ["event_id", "customer_id", "ts", *FIELD_TYPES]

Message = tuple[str, str, dict[str, Any], int]


class Stream:
    """One generated stream, split into events and labels, with the generator's ground truth."""

    def __init__(self, drift_at: int | None = None, seed: int = 3) -> None:
        gen = RetentionGenerator(
            seed=seed,
            customers=CUSTOMERS,
            events=EVENTS,
            label_fraction=1.0,
            drift_at=drift_at,
            start_ms=MONDAY,
        )
        self.messages: list[Message] = list(gen.messages(EVENTS))
        self.events = [value for kind, _, value, _ in self.messages if kind == "events"]
        self.labels = {
            v["event_id"]: v["churned"] for kind, _, v, _ in self.messages if kind == "labels"
        }
        self.churn_times = gen.churn_times
        self.columns = _columns(self.events)
        self.y = np.array([self.labels.get(e["event_id"], -1) for e in self.events])
        self.day = (self.columns["ts"] - MONDAY) / DAY_MS


def _columns(events: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    customer_index: dict[str, int] = {}
    columns = {
        "customer": np.array(
            [customer_index.setdefault(e["customer_id"], len(customer_index)) for e in events]
        ),
        "ts": np.array([e["ts"] for e in events], dtype=np.int64),
    }
    for name in ("amount", "duration_s"):
        columns[name] = np.array([e[name] for e in events], dtype=np.float64)
    for name in ("event_type", "plan", "segment"):
        columns[name] = np.array([e[name] for e in events])
    return columns


# What an aggregate engine with a filter by event type could add: {name: (fn, window, type)}.
BY_TYPE = {
    "sessions_7d": ("count", "7d", "session"),
    "sessions_30d": ("count", "30d", "session"),
    "session_mean_30d": ("mean", "30d", "session"),
    "since_last_session_s": ("since_last", None, "session"),
    "tickets_30d": ("count", "30d", "support_ticket"),
    "payment_failures_30d": ("count", "30d", "payment_failure"),
}


class History:
    """Brute-force aggregates of each event from the same customer's earlier events.

    Like the aggregate engine: windows hold the events in [ts - window, ts) before the scored
    one, ``since_last`` is the seconds since the previous one (-1 if none).
    """

    def __init__(self, col: dict[str, np.ndarray]) -> None:
        n = len(col["ts"])
        self.order = np.lexsort((np.arange(n), col["ts"], col["customer"]))  # customer, time
        self.col = {name: column[self.order] for name, column in col.items()}
        self.key = self.col["customer"] * 10**14 + self.col["ts"]  # one customer: one run
        self.rows = np.arange(n)

    def aggregate(self, fn: str, window: str | None, field: str | None, where: Any) -> np.ndarray:
        back = np.empty_like(self.order)
        back[self.order] = self.rows
        return self._by_customer(fn, window, field, where)[back]

    def _by_customer(self, fn: str, window: Any, field: Any, where: Any) -> np.ndarray:
        c, rows = self.col, self.rows
        match = np.ones(len(rows), dtype=bool) if where is None else c["event_type"] == where
        if fn == "since_last":
            previous = np.r_[-1, np.maximum.accumulate(np.where(match, rows, -1))[:-1]]
            found = (previous >= 0) & (c["customer"][previous] == c["customer"])
            return np.where(found, (c["ts"] - c["ts"][previous]) / 1000.0, -1.0)
        if fn == "distinct":
            seen = [self._by_customer("count", window, None, t) > 0 for t in EVENT_TYPES]
            return np.sum(seen, axis=0).astype(np.float64)
        first = np.searchsorted(self.key, self.key - int(window[:-1]) * DAY_MS)
        if fn == "max":
            return np.array([c[field][a:b].max(initial=0.0) for a, b in zip(first, rows)])
        per_event = np.ones(len(rows)) if field is None else c[field]
        total = np.r_[0.0, np.cumsum(np.where(match, per_event, 0.0))]
        count = np.r_[0, np.cumsum(match)]
        total, count = total[rows] - total[first], count[rows] - count[first]
        return {"count": count, "sum": total, "mean": total / np.maximum(count, 1)}[fn]

    def features(self, specs: dict[str, tuple[str, str | None, str | None, Any]]) -> np.ndarray:
        values = [np.maximum(self.aggregate(*spec), 0.0) for spec in specs.values()]
        return np.column_stack([np.log1p(v) for v in values])


def _engine_specs() -> dict[str, tuple[str, str | None, str | None, Any]]:
    return {
        name: (spec["fn"], spec.get("window"), spec.get("field"), None)
        for name, spec in AGGREGATES.items()
    }


def _by_type_specs() -> dict[str, tuple[str, str | None, str | None, Any]]:
    field = {"mean": "duration_s"}
    return {name: (fn, w, field.get(fn), t) for name, (fn, w, t) in BY_TYPE.items()}


def _own_fields(col: dict[str, np.ndarray]) -> np.ndarray:
    parts = [np.log1p(col["amount"]), np.log1p(col["duration_s"])]
    for name, values in (("event_type", EVENT_TYPES), ("plan", PLANS), ("segment", SEGMENTS)):
        parts += [(col[name] == v).astype(np.float64) for v in values]
    return np.column_stack(parts)


@pytest.fixture(scope="module")
def stream() -> Stream:
    return Stream()


@pytest.fixture(scope="module")
def drifted() -> Stream:
    return Stream(drift_at=DRIFT_AT)


def test_same_seed_same_stream_however_it_is_sliced() -> None:
    def gen(seed: int) -> RetentionGenerator:
        return RetentionGenerator(seed=seed, customers=300, events=12_000, start_ms=MONDAY)

    whole = list(gen(5).messages(8_000))
    pieces = gen(5)
    sliced = [*pieces.messages(10), *pieces.messages(5_000), *pieces.messages(2_990)]
    assert sliced == whole
    assert {kind for kind, *_ in whole} == {"events", "labels"}
    other = list(gen(6).messages(100))
    assert [m[1] for m in other] != [m[1] for m in whole[:100]]


def test_every_message_follows_the_schema(stream: Stream) -> None:
    expected_types = {"float": float, "category": str}
    for kind, key, value, timestamp in stream.messages:
        if kind == "labels":
            assert list(value) == ["event_id", "churned"] and value["churned"] in (0, 1)
            assert type(value["event_id"]) is str and type(value["churned"]) is int
            continue
        assert kind == "events" and list(value) == EVENT_FIELDS
        assert key == value["customer_id"] and timestamp == value["ts"]
        assert type(value["ts"]) is int and type(value["event_id"]) is str
        for name, field_type in FIELD_TYPES.items():
            assert type(value[name]) is expected_types[field_type], name
    col = stream.columns
    assert set(col["event_type"]) == set(EVENT_TYPES)
    assert set(col["plan"]) == set(PLANS) and set(col["segment"]) == set(SEGMENTS)
    assert ((col["amount"] > 0) == (col["event_type"] == "purchase")).all()
    assert ((col["duration_s"] > 0) == (col["event_type"] == "session")).all()
    assert len({e["event_id"] for e in stream.events}) == len(stream.events) == EVENTS
    assert orjson.loads(orjson.dumps(stream.messages[:1000])) == [
        list(m) for m in stream.messages[:1000]
    ]


def test_the_stream_spans_about_120_days_in_time_order(stream: Stream) -> None:
    timestamps = [timestamp for *_, timestamp in stream.messages]
    assert timestamps == sorted(timestamps) and timestamps[0] >= MONDAY
    assert 110 < stream.day[-1] < 130
    assert len(set(stream.columns["customer"])) > 0.95 * CUSTOMERS


def test_each_label_comes_its_delay_after_its_event(stream: Stream) -> None:
    event_at = {
        value["event_id"]: (position, value["ts"])
        for position, (kind, _, value, _) in enumerate(stream.messages)
        if kind == "events"
    }
    for position, (kind, _, value, timestamp) in enumerate(stream.messages):
        if kind == "labels":
            event_position, ts = event_at[value["event_id"]]
            assert event_position < position and timestamp == ts + DELAY_DAYS * DAY_MS
    # With every event labelled, each event whose outcome is known by the end has its label.
    end = stream.messages[-1][3]
    known_at = stream.columns["ts"] + DELAY_DAYS * DAY_MS
    assert (stream.y[known_at < end] >= 0).all() and (stream.y[known_at > end] < 0).all()


def test_a_label_says_whether_the_customer_churned_within_the_horizon(stream: Stream) -> None:
    churned_at = stream.churn_times
    last_seen: dict[str, int] = {}
    for e in stream.events:
        last_seen[e["customer_id"]] = e["ts"]
        assert e["ts"] < churned_at.get(e["customer_id"], np.inf)  # a churned customer is silent
    horizon = DELAY_DAYS * DAY_MS
    for e in stream.events:
        label = stream.labels.get(e["event_id"])
        if label is None:
            continue
        truth = churned_at.get(e["customer_id"], np.inf) <= e["ts"] + horizon
        assert label == truth
        if last_seen[e["customer_id"]] > e["ts"] + horizon:
            assert label == 0  # seen again after the horizon: did not churn within it
    assert 0.005 < stream.y[stream.y >= 0].mean() < 0.03  # positives among labelled events


def test_churn_rate_is_plausible_and_highest_among_casual_users(stream: Stream) -> None:
    end = stream.messages[-1][3]
    churned = {c for c, at in stream.churn_times.items() if at <= end}
    assert 0.05 < len(churned) / CUSTOMERS < 0.2  # ~10 % over the 120 days
    segment_of = {e["customer_id"]: e["segment"] for e in stream.events}
    share = Counter(segment_of[c] for c in churned if c in segment_of)
    size = Counter(segment_of.values())
    assert share["casual"] / size["casual"] > 1.3 * share["power"] / size["power"]


def test_weekends_and_nights_are_quiet(stream: Stream) -> None:
    days = (stream.columns["ts"] - MONDAY) // DAY_MS
    per_day = np.bincount(days)[:119]
    weekend = per_day[np.arange(len(per_day)) % 7 >= 5]
    weekday = per_day[np.arange(len(per_day)) % 7 < 5]
    assert weekend.mean() < 0.75 * weekday.mean()
    hours = Counter(
        dt.datetime.fromtimestamp(ts / 1000, dt.UTC).hour
        for ts in stream.columns["ts"][:30_000].tolist()
    )
    assert hours[3] < 0.2 * hours[20]


def test_aggregates_predict_churn_far_better_than_one_event(stream: Stream) -> None:
    y, history = stream.y, History(stream.columns)
    train = (y >= 0) & (stream.day >= 30) & (stream.day < 60)
    test = (y >= 0) & (stream.day >= 60)
    assert y[train].sum() > 100 and y[test].sum() > 100

    def auc(features: np.ndarray) -> float:
        scaler = StandardScaler().fit(features[train])
        model = LogisticRegression(max_iter=1_000).fit(scaler.transform(features[train]), y[train])
        scores = model.predict_proba(scaler.transform(features[test]))[:, 1]
        return float(roc_auc_score(y[test], scores))

    own = _own_fields(stream.columns)
    without = auc(own)
    with_aggregates = auc(np.hstack([own, history.features(_engine_specs())]))
    with_typed = auc(np.hstack([own, history.features(_by_type_specs())]))
    assert 0.52 < without < 0.72  # one event says a little
    assert with_aggregates > without + 0.1 and with_aggregates > 0.75
    assert with_typed > without + 0.1


def test_the_aggregates_fit_the_aggregate_engine() -> None:
    engine = pytest.importorskip("streamlearn.config_aggregates")
    specs = {name: engine.AggregateSpec.model_validate(spec) for name, spec in AGGREGATES.items()}
    engine.check_aggregate_fields(specs, FIELD_TYPES)


def test_the_price_rise_changes_who_churns(stream: Stream, drifted: Stream) -> None:
    # The drift takes effect at the first midnight after event DRIFT_AT.
    changed_day = np.floor(drifted.day[DRIFT_AT]) + 1
    same = int(np.searchsorted(stream.day, changed_day))
    assert stream.events[:same] == drifted.events[:same]  # the same world until the price rise

    def churn_after_failures_on_basic(s: Stream) -> float:
        col = s.columns
        chosen = (col["event_type"] == "payment_failure") & (col["plan"] == "basic")
        return float(s.y[chosen & (s.y >= 0) & (s.day >= changed_day)].mean())

    calm, rising = churn_after_failures_on_basic(stream), churn_after_failures_on_basic(drifted)
    assert rising > 0.15 and rising > 3 * calm  # a failed payment on basic now often ends it

    def power_users_lost(s: Stream) -> int:
        segment = {e["customer_id"]: e["segment"] for e in s.events}
        changed_ms = MONDAY + changed_day * DAY_MS
        return sum(
            segment.get(c) == "power" and at >= changed_ms for c, at in s.churn_times.items()
        )

    assert power_users_lost(drifted) < power_users_lost(stream)


def test_about_the_label_fraction_of_events_get_a_label() -> None:
    stream = list(retention_messages(20_000, seed=1, customers=500, events=20_000, start_ms=MONDAY))
    labelled = sum(kind == "labels" for kind, *_ in stream)
    events_known = sum(
        kind == "events" and ts <= stream[-1][3] - DELAY_DAYS * DAY_MS for kind, _, _, ts in stream
    )
    assert 0.17 < labelled / events_known < 0.23


@pytest.mark.parametrize(
    "options",
    [
        {"customers": 0},
        {"events": 0},
        {"label_fraction": 0.0},
        {"label_fraction": 1.5},
        {"label_delay_days": 0},
    ],
)
def test_impossible_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetentionGenerator(**options)


def test_without_a_start_time_the_stream_starts_today() -> None:
    first = next(RetentionGenerator(customers=100, events=1_000).events(1))
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    assert today <= first["ts"] < today + 2 * DAY_MS


def test_the_workload_factories_know_the_retention_task() -> None:
    options = {"customers": 200, "label_fraction": 1.0, "label_delay_days": 1.0}
    events = list(
        task_events("retention", seed=2, drift_at=None, events=2_000, options=options)(300)
    )
    assert len(events) == 300 and all(list(e) == EVENT_FIELDS for e in events)
    messages = list(
        task_messages("retention", seed=2, drift_at=None, events=2_000, options=options)(300)
    )
    assert [m[2] for m in messages if m[0] == "events"] == events
    assert any(kind == "labels" for kind, *_ in messages)
    assert _topics("retention", None, None) == {
        "events": "customer-activity",
        "labels": "churn-labels",
    }
    assert _topics("retention", "a", "b") == {"events": "a", "labels": "b"}


def test_options_of_another_task_are_refused() -> None:
    with pytest.raises(ConfigError, match="customers"):
        task_events("fraud", seed=0, drift_at=None, options={"customers": 10})
    with pytest.raises(ConfigError, match="labels topic"):
        _topics("fraud", None, "labels")
    with pytest.raises(ConfigError, match="label_fraction"):
        task_events("retention", seed=0, drift_at=None, options={"label_fraction": 2.0})
