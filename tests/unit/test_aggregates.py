"""Per-entity aggregates: the batch API against a brute-force reference that keeps every event,
and the configuration, state format and memory bounds around it."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamlearn.aggregate_windows import BUCKETS_PER_WINDOW, bucket_width_ms
from streamlearn.aggregates import APPLIED, REPLAYED, TOO_LATE, Aggregator, EntityState
from streamlearn.config_aggregates import AggregateSpec, check_aggregate_fields, parse_duration

# ---------------------------------------------------------------- the reference: every event kept


@dataclass
class Event:
    entity: str
    ts: int
    partition: int
    offset: int
    numbers: dict[str, float]
    categories: dict[str, str | None]


@dataclass
class RefEntity:
    applied: list[Event] = field(default_factory=list)  # in arrival order
    positions: dict[int, int] = field(default_factory=dict)
    newest: int | None = None


class Reference:
    """The documented semantics, computed from every applied event of each entity."""

    def __init__(self, specs: dict[str, AggregateSpec], lateness_s: float, cap: int, recent: int):
        self.specs, self.cap, self.recent = specs, cap, recent
        self.lateness_ms = round(lateness_s * 1000)
        self.entities: dict[str, RefEntity] = {}

    def deliver(self, ev: Event) -> tuple[int, dict[str, float]]:
        st_ = self.entities.setdefault(ev.entity, RefEntity())
        seen = st_.positions.get(ev.partition)
        replay = seen is not None and ev.offset <= seen
        late = not replay and st_.newest is not None and st_.newest - ev.ts > self.lateness_ms
        features = {
            name: self.feature(spec, st_, ev.ts, replay) for name, spec in self.specs.items()
        }
        if replay:
            return REPLAYED, features
        st_.positions[ev.partition] = ev.offset
        if late:
            return TOO_LATE, features
        st_.applied.append(ev)
        st_.newest = ev.ts if st_.newest is None else max(st_.newest, ev.ts)
        return APPLIED, features

    def feature(self, spec: AggregateSpec, st_: RefEntity, t: int, replay: bool) -> float:
        if spec.window_s is None:
            return self.recency(spec, st_, t, replay)
        b = bucket_width_ms(spec.window_s)
        k = t // b
        lo = k - BUCKETS_PER_WINDOW + 1
        if st_.newest is not None:
            horizon = BUCKETS_PER_WINDOW + math.ceil(self.lateness_ms / b)
            lo = max(lo, st_.newest // b - horizon + 1)
        head = [e for e in st_.applied if e.ts // b == k]
        head_ok = not replay and all(e.ts <= t for e in head)
        buckets = [
            j
            for j in sorted({e.ts // b for e in st_.applied})
            if lo <= j < k or (j == k and head_ok and k >= lo)
        ]
        events = [e for e in st_.applied if e.ts // b in buckets]
        fn, f = spec.fn.value, spec.field
        if fn == "count":
            if f is None:
                return float(len(events))
            return float(sum(1 for e in events if _present(e, f)))
        if fn == "distinct":
            seen: set[str] = set()
            for j in buckets:
                seen |= self.first_distinct([e for e in st_.applied if e.ts // b == j], f)
            return float(len(seen))
        values = [e.numbers[f] for e in events if _present(e, f)]  # type: ignore[index]
        if fn == "sum":
            return float(sum(values))
        if not values:
            return spec.fill_value
        return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}[fn]

    def first_distinct(self, events: list[Event], f: Any) -> set[str]:
        out: set[str] = set()
        for e in events:
            v = e.categories[f]
            if v is not None and len(out) < self.cap:
                out.add(v)
        return out

    def recency(self, spec: AggregateSpec, st_: RefEntity, t: int, replay: bool) -> float:
        order = sorted(range(len(st_.applied)), key=lambda i: (st_.applied[i].ts, i))
        kept = [st_.applied[i] for i in order[-self.recent :]]
        before = [e for e in kept if e.ts < t or (e.ts == t and not replay)]
        if not before:
            return spec.fill_value
        prev = before[-1]
        if spec.fn.value == "since_last":
            return (t - prev.ts) / 1000.0
        value = prev.numbers[spec.field]  # type: ignore[index]
        return spec.fill_value if math.isnan(value) else value


def _present(e: Event, f: str) -> bool:
    if f in e.numbers:
        return not math.isnan(e.numbers[f])
    return e.categories[f] is not None


def spec(**kw: Any) -> AggregateSpec:
    return AggregateSpec.model_validate(kw)


SPECS = {
    "n_1s": spec(fn="count", window="1s"),
    "n_amount_5s": spec(fn="count", field="amount", window="5s"),
    "n_channel_5s": spec(fn="count", field="channel", window="5s"),
    "sum_1s": spec(fn="sum", field="amount", window="1s"),
    "mean_5s": spec(fn="mean", field="amount", window="5s", fill=-7),
    "min_30s": spec(fn="min", field="amount", window="30s"),
    "max_1s": spec(fn="max", field="amount", window="1s"),
    "distinct_5s": spec(fn="distinct", field="channel", window="5s"),
    "distinct_30s": spec(fn="distinct", field="channel", window="30s"),
    "last": spec(fn="last", field="amount"),
    "gap": spec(fn="since_last"),
}


def run_batches(
    agg: Aggregator, deliveries: list[Event], cuts: list[int], round_trip: bool
) -> tuple[list[int], dict[str, list[float]]]:
    states: dict[str, EntityState] = {}
    outcomes: list[int] = []
    features: dict[str, list[float]] = {name: [] for name in agg.names}
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(deliveries)), len(deliveries)]
    for start, stop in itertools.pairwise(bounds):
        batch = deliveries[start:stop]
        if round_trip:
            states = {e: EntityState.from_bytes(s.to_bytes()) for e, s in states.items()}
        result = agg.apply(
            states,
            [e.entity for e in batch],
            np.array([e.ts for e in batch], dtype=np.int64),
            {"amount": np.array([e.numbers["amount"] for e in batch])},
            {"channel": [e.categories["channel"] for e in batch]},
            [e.partition for e in batch],
            [e.offset for e in batch],
        )
        outcomes += result.outcome.tolist()
        for name, column in result.features.items():
            assert np.isfinite(column).all()
            features[name] += column.tolist()
    return outcomes, features


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Events of a few entities, out of order within and beyond lateness, with replays."""
    n = draw(st.integers(1, 60))
    clock = 1_000_000
    offsets = [0, 0]
    original: list[Event] = []
    deliveries: list[Event] = []
    for _ in range(n):
        entity = draw(st.sampled_from(["a", "b", "c"]))
        partition = 0 if entity == "a" else 1
        clock += draw(st.sampled_from([0, 0, 7, 100, 900, 2500, 40_000]))
        ts = clock - draw(st.sampled_from([0, 0, 0, 5, 60, 1500, 4000]))
        amount = draw(st.sampled_from([1.0, 0.1, 2.5, -3.0, 1e6, math.nan]))
        channel = draw(st.sampled_from(["web", "pos", "app", "atm", "moto", None]))
        ev = Event(
            entity, ts, partition, offsets[partition], {"amount": amount}, {"channel": channel}
        )
        offsets[partition] += 1
        original.append(ev)
        deliveries.append(ev)
        if draw(st.integers(0, 9)) == 0:  # a crash: part of the stream is delivered again
            start = draw(st.integers(0, len(original) - 1))
            deliveries += original[start:]
    return deliveries


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deliveries=streams(),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    lateness_s=st.sampled_from([0.0, 0.5, 2.0, 60.0]),
    cap=st.sampled_from([1, 2, 3]),
    recent=st.sampled_from([1, 2, 8]),
    round_trip=st.booleans(),
)
def test_batch_api_matches_brute_force_reference(
    deliveries: list[Event],
    cuts: list[int],
    lateness_s: float,
    cap: int,
    recent: int,
    round_trip: bool,
) -> None:
    agg = Aggregator(
        SPECS, lateness_s, category_fields={"channel"}, distinct_cap=cap, recent=recent
    )
    ref = Reference(SPECS, lateness_s, cap, recent)
    expected = [ref.deliver(ev) for ev in deliveries]
    outcomes, features = run_batches(agg, deliveries, cuts, round_trip)
    assert outcomes == [o for o, _ in expected]
    for row, (_, want) in enumerate(expected):
        for name, value in want.items():
            got = features[name][row]
            # Window sums slide (add and subtract): exact up to float rounding.
            assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-6), (row, name, got, value)


# ---------------------------------------------------------------- behaviour worth naming


def apply_one(
    agg: Aggregator,
    states: dict[str, EntityState],
    entity: str,
    ts: int,
    offset: int,
    amount: float = 1.0,
    channel: str | None = "web",
    partition: int = 0,
):
    return agg.apply(
        states,
        [entity],
        np.array([ts]),
        {"amount": np.array([amount])},
        {"channel": [channel]},
        [partition],
        [offset],
    )


def test_an_event_never_sees_itself_or_later_events() -> None:
    agg = Aggregator(
        {"n": spec(fn="count", window="1h"), "s": spec(fn="sum", field="amount", window="1h")}
    )
    states: dict[str, EntityState] = {}
    r = agg.apply(
        states,
        ["a"] * 4,
        np.array([1000, 5000, 3000, 5000]),
        {"amount": np.array([1.0, 2.0, 4.0, 8.0])},
        {},
        [0] * 4,
        [0, 1, 2, 3],
    )
    # The out-of-order event at 3000 shares a bucket with the one at 5000: it leaves the bucket
    # out rather than count the future. The tie at 5000 counts the earlier arrival.
    assert r.features["n"].tolist() == [0.0, 1.0, 0.0, 3.0]
    assert r.features["s"].tolist() == [0.0, 1.0, 0.0, 7.0]
    assert r.outcome.tolist() == [APPLIED] * 4


def test_too_late_events_get_features_but_are_not_counted() -> None:
    agg = Aggregator({"n": spec(fn="count", window="1d")}, allowed_lateness_s=60)
    states: dict[str, EntityState] = {}
    apply_one(agg, states, "a", 10 * 60_000, 0)
    late = apply_one(agg, states, "a", 60_000, 1)  # 9 minutes behind
    assert (late.too_late, late.replayed, late.features["n"].tolist()) == (1, 0, [0.0])
    after = apply_one(agg, states, "a", 11 * 60_000, 2)
    assert after.features["n"].tolist() == [1.0]
    assert late.changed == {"a"}  # its offset is recorded: a replay of it is a replay


def test_replays_are_not_applied_twice_across_a_save() -> None:
    agg = Aggregator({"n": spec(fn="count", window="1h"), "gap": spec(fn="since_last")})
    states: dict[str, EntityState] = {}
    first = agg.apply(
        states, ["a", "a", "a"], np.array([0, 60_000, 120_000]), {}, {}, [0, 0, 0], [10, 11, 12]
    )
    restored = {e: EntityState.from_bytes(s.to_bytes()) for e, s in states.items()}
    again = agg.apply(
        restored,
        ["a", "a", "a"],
        np.array([60_000, 120_000, 180_000]),
        {},
        {},
        [0, 0, 0],
        [11, 12, 13],
    )
    assert first.features["n"].tolist() == [0.0, 1.0, 2.0]
    assert again.outcome.tolist() == [REPLAYED, REPLAYED, APPLIED]
    assert (again.replayed, again.too_late) == (2, 0)
    assert again.features["n"].tolist()[2] == 3.0  # the replays were not counted again
    assert again.features["gap"].tolist() == [60.0, 60.0, 60.0]


def test_other_partitions_have_their_own_offsets() -> None:
    agg = Aggregator({"n": spec(fn="count", window="1h")})
    states: dict[str, EntityState] = {}
    apply_one(agg, states, "a", 1000, 50, partition=0)
    moved = apply_one(agg, states, "a", 2000, 3, partition=1)  # e.g. after repartitioning
    assert moved.outcome.tolist() == [APPLIED]
    assert states["a"].positions == {0: 50, 1: 3}


def test_fill_values_and_defaults_for_an_entity_with_no_history() -> None:
    specs = {
        "n": spec(fn="count", window="1h"),
        "s": spec(fn="sum", field="amount", window="1h"),
        "mean": spec(fn="mean", field="amount", window="1h"),
        "min": spec(fn="min", field="amount", window="1h", fill=-1),
        "d": spec(fn="distinct", field="channel", window="1h"),
        "last": spec(fn="last", field="amount"),
        "gap": spec(fn="since_last"),
    }
    r = apply_one(Aggregator(specs), {}, "new", 5000, 0)
    assert {k: v.tolist() for k, v in r.features.items()} == {
        "n": [0.0],
        "s": [0.0],
        "mean": [0.0],
        "min": [-1.0],
        "d": [0.0],
        "last": [0.0],
        "gap": [-1.0],
    }


def test_memory_is_bounded_for_a_long_busy_stream() -> None:
    specs = {
        "n": spec(fn="count", window="1h"),
        "d": spec(fn="distinct", field="channel", window="1h"),
    }
    agg = Aggregator(specs, allowed_lateness_s=600, distinct_cap=4)
    states: dict[str, EntityState] = {}
    n = 20_000
    ts = np.arange(n, dtype=np.int64) * 1_000  # one event a second for 5.5 hours
    channels = [f"c{i % 50}" for i in range(n)]
    r = agg.apply(states, ["a"] * n, ts, {}, {"channel": channels}, [0] * n, list(range(n)))
    w = next(iter(states["a"].windows.values()))
    b = bucket_width_ms(3600)
    assert len(w) <= BUCKETS_PER_WINDOW + math.ceil(600_000 / b) + 1
    assert max(len(row[-1]) for row in w.rows) <= 4  # distinct values per bucket: capped
    assert r.features["d"][-1] <= 4 * BUCKETS_PER_WINDOW
    assert len(states["a"].to_bytes()) < 20_000


def test_state_written_under_other_aggregates_is_re_slotted() -> None:
    old = Aggregator({"s": spec(fn="sum", field="amount", window="1h")})
    states: dict[str, EntityState] = {}
    apply_one(old, states, "a", 1000, 0, amount=5.0)
    saved = states["a"].to_bytes()
    new = Aggregator(
        {
            "s": spec(fn="sum", field="amount", window="1h"),
            "d": spec(fn="distinct", field="channel", window="1h"),
            "n": spec(fn="count", window="1d"),
            "last": spec(fn="last", field="amount"),
        }
    )
    r = apply_one(new, {"a": EntityState.from_bytes(saved)}, "a", 2000, 1)
    got = {k: v.tolist() for k, v in r.features.items()}
    assert got == {"s": [5.0], "d": [0.0], "n": [0.0], "last": [0.0]}


def test_state_bytes_round_trip_and_refusals() -> None:
    agg = Aggregator(
        {
            "d": spec(fn="distinct", field="channel", window="1h"),
            "m": spec(fn="min", field="amount", window="7d"),
            "last": spec(fn="last", field="amount"),
        }
    )
    states: dict[str, EntityState] = {}
    apply_one(agg, states, "a", 1000, 0, amount=math.nan, channel="web")
    apply_one(agg, states, "a", 2000, 1, amount=3.0, channel=None)
    data = states["a"].to_bytes()
    back = EntityState.from_bytes(data)
    assert back.to_bytes() == data
    assert back.positions == {0: 1} and back.newest_ts == 2000
    for bad in (b"", b"{}", b"[1]", b'{"v": 99}', data.replace(b'"v":1', b'"v":2'), b"\xff"):
        with pytest.raises(ValueError, match="not an aggregate state"):
            EntityState.from_bytes(bad)


def test_empty_batches_and_no_aggregates() -> None:
    agg = Aggregator({"n": spec(fn="count", window="1h")})
    r = agg.apply({}, [], np.array([], dtype=np.int64), {}, {}, [], [])
    assert r.features["n"].shape == (0,) and r.changed == set()
    none = Aggregator({})
    assert none.apply({}, ["a"], np.array([1]), {}, {}, [0], [0]).features == {}


def test_inputs_and_ttl_the_caller_needs() -> None:
    agg = Aggregator(
        {
            "n": spec(fn="count", field="channel", window="1h"),
            "s": spec(fn="sum", field="amount", window="7d"),
            "gap": spec(fn="since_last"),
            "last": spec(fn="last", field="risk"),
        },
        allowed_lateness_s=100,
        category_fields={"channel"},
    )
    assert agg.numeric_fields == ("amount", "risk")
    assert agg.category_fields == ("channel",)
    assert agg.state_ttl_s == 7 * 86400 + 100
    windows_only = Aggregator({"n": spec(fn="count", window="2h")}, allowed_lateness_s=30)
    assert windows_only.state_ttl_s == 7200 + 30


# ---------------------------------------------------------------- configuration


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90s", "15m", "1h", "7d", "30d", "250ms", 45, 1.5)] == [
        90.0,
        900.0,
        3600.0,
        604800.0,
        2592000.0,
        0.25,
        45.0,
        1.5,
    ]
    for bad in ("1 hour", "h", "-1h", True, None, [], "nan"):
        with pytest.raises(ValueError, match="expected a duration like 90s"):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fn": "sum", "field": "amount"}, "sum needs a 'window'"),
        ({"fn": "count", "window": "1 hour"}, "expected a duration like 90s, 15m, 1h, 7d"),
        ({"fn": "count", "window": "10ms"}, "expected a window of at least 1s, got '10ms'"),
        ({"fn": "last", "field": "amount", "window": "1h"}, "last takes no 'window'"),
        ({"fn": "mean", "window": "1h"}, "mean needs a 'field'"),
        ({"fn": "since_last", "field": "amount"}, "since_last takes no 'field'"),
        ({"fn": "count", "window": "1h", "fill": 3}, "count takes no 'fill'"),
        ({"fn": "max", "field": "a", "window": "1h", "fill": "inf"}, "expected a finite number"),
        ({"fn": "median", "field": "a", "window": "1h"}, "'count', 'sum', 'mean'"),
        ({"fn": "count", "window": "1h", "size": 3}, "Extra inputs are not permitted"),
    ],
)
def test_spec_errors_say_what_was_expected(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AggregateSpec.model_validate(data)


def test_fields_must_be_features_of_the_right_type() -> None:
    features = {"amount": "float", "channel": "category"}
    ok = {
        "n": spec(fn="count", field="channel", window="1h"),
        "d": spec(fn="distinct", field="channel", window="1h"),
        "s": spec(fn="sum", field="amount", window="1h"),
    }
    check_aggregate_fields(ok, features)
    cases = [
        (
            {"x": spec(fn="sum", field="amnt", window="1h")},
            "aggregates.x.field: 'amnt' is not a feature field of the schema (features: amount, "
            "channel)",
        ),
        (
            {"x": spec(fn="distinct", field="amount", window="1h")},
            "aggregates.x.field: distinct needs a category feature field, 'amount' is float",
        ),
        (
            {"x": spec(fn="last", field="channel")},
            "aggregates.x.field: last needs a numeric feature field, 'channel' is a category",
        ),
        ({"amount": spec(fn="since_last")}, "aggregates.amount: 'amount' is already a feature"),
        ({"9 lives": spec(fn="since_last")}, "aggregates.9 lives: expected a name of letters"),
    ]
    for specs, message in cases:
        with pytest.raises(
            ValueError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")
        ):
            check_aggregate_fields(specs, features)


def test_feature_specs_of_the_schema_are_understood() -> None:
    from streamlearn.config import FeatureSpec

    features = {"amount": FeatureSpec(type="float"), "channel": FeatureSpec(type="category")}
    check_aggregate_fields({"d": spec(fn="distinct", field="channel", window="1h")}, features)
    with pytest.raises(ValueError, match="'amount' is float"):
        check_aggregate_fields({"d": spec(fn="distinct", field="amount", window="1h")}, features)
