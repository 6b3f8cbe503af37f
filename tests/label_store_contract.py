"""The label store's rules, as one suite run on every implementation (memory and Redis)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from streamlearn.labels import ArrivedLabels, LabelStore, PendingEvents

HORIZON_S = 60
Make = Callable[[], LabelStore]


def events(*specs: tuple[str, str, int]) -> PendingEvents:
    out = PendingEvents()
    for event_id, source, ts in specs:
        out.event_ids.append(event_id)
        out.sources.append(source)
        out.ts_ms.append(ts)
        out.payloads.append(f"payload-{event_id}".encode())
    return out


def labels(*specs: tuple[str, int, str, int]) -> ArrivedLabels:
    out = ArrivedLabels()
    for row, (event_id, target, source, ts) in enumerate(specs):
        out.event_ids.append(event_id)
        out.targets.append(target)
        out.sources.append(source)
        out.ts_ms.append(ts)
        out.rows.append(row)
        out.values.append(f'{{"event_id": "{event_id}"}}'.encode())
    return out


NONE_E, NONE_L = PendingEvents(), ArrivedLabels()


def check_event_then_label_joins_once(make: Make) -> None:
    store = make()
    assert store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000).joins == []
    joins = store.exchange(NONE_E, labels(("e1", 1, "lb/0/5", 2_000)), 1_000).joins
    assert [(j.event_id, j.payload, j.target, j.joiner) for j in joins] == [
        ("e1", b"payload-e1", 1, "lb/0/5")
    ]


def check_label_then_event_joins_once(make: Make) -> None:
    store = make()
    assert store.exchange(NONE_E, labels(("e1", 0, "lb/0/5", 2_000)), 0).joins == []
    joins = store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000).joins
    assert [(j.event_id, j.target, j.joiner) for j in joins] == [("e1", 0, "ev/0/1")]


def check_same_batch_joins(make: Make) -> None:
    store = make()
    out = store.exchange(events(("e1", "ev/0/1", 1_000)), labels(("e1", 1, "lb/0/5", 1_500)), 0)
    assert [(j.event_id, j.joiner) for j in out.joins] == [("e1", "lb/0/5")]


def check_replays_learn_only_through_the_joiner(make: Make) -> None:
    store = make()
    store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000)
    store.exchange(NONE_E, labels(("e1", 1, "lb/0/5", 2_000)), 1_000)
    # A crash: both are read again. The event's replay joins nothing; the label's (the joiner)
    # gives the join again, for the model restored from before it.
    assert store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000).joins == []
    again = store.exchange(NONE_E, labels(("e1", 1, "lb/0/5", 2_000)), 1_000)
    assert [(j.event_id, j.joiner) for j in again.joins] == [("e1", "lb/0/5")]
    assert again.unmatched == []
    # The other order on replay: the label first, then the event; still exactly one join.
    store2 = make()
    store2.exchange(NONE_E, labels(("e2", 1, "lb/0/7", 2_000)), 0)
    store2.exchange(events(("e2", "ev/0/2", 1_000)), NONE_L, 1_000)
    replay = store2.exchange(events(("e2", "ev/0/2", 1_000)), labels(("e2", 1, "lb/0/7", 2_000)), 0)
    assert [(j.event_id, j.joiner) for j in replay.joins] == [("e2", "ev/0/2")]


def check_a_second_label_is_a_duplicate(make: Make) -> None:
    store = make()
    store.exchange(events(("e1", "ev/0/1", 1_000)), labels(("e1", 1, "lb/0/5", 1_500)), 0)
    out = store.exchange(NONE_E, labels(("e1", 0, "lb/0/9", 3_000)), 0)
    assert out.joins == []
    assert [r.reason for r in out.unmatched] == ["duplicate"]
    early = make()
    early.exchange(NONE_E, labels(("e3", 1, "lb/0/1", 1_000)), 0)
    out = early.exchange(NONE_E, labels(("e3", 1, "lb/0/2", 1_100)), 0)
    assert [r.reason for r in out.unmatched] == ["duplicate"]


def check_a_label_past_the_horizon_is_refused(make: Make) -> None:
    store = make()
    store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000)
    late = 1_000 + HORIZON_S * 1000 + 1
    out = store.exchange(NONE_E, labels(("e1", 1, "lb/0/5", late)), late)
    assert out.joins == []
    assert [r.reason for r in out.unmatched] == ["past_horizon"]


def check_a_label_read_first_but_past_the_horizon_is_refused_when_its_event_comes(
    make: Make,
) -> None:
    # The labels topic was read ahead of the events topic: the label is stored early, and
    # its event turns out to lie more than the horizon before it.
    store = make()
    late = 1_000 + HORIZON_S * 1000 + 1
    store.exchange(NONE_E, labels(("e1", 1, "lb/0/5", late)), 0)
    out = store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000)
    assert out.joins == []
    assert [(x.event_id, x.source, x.reason) for x in out.expired] == [
        ("e1", "lb/0/5", "past_horizon")
    ]
    assert out.expired[0].value == b'{"event_id": "e1"}'
    # The event waits as any other: a label within the horizon still joins it, once.
    joined = store.exchange(NONE_E, labels(("e1", 0, "lb/0/8", 2_000)), 1_000)
    assert [(j.event_id, j.target, j.joiner) for j in joined.joins] == [("e1", 0, "lb/0/8")]
    assert store.exchange(NONE_E, NONE_L, 10**12).expired == []  # dead-lettered once


def check_a_replayed_event_refuses_its_late_label_again(make: Make) -> None:
    # A crash after the refusal, before its dead letter was durable: the event is read again
    # and the refusal comes again (a dead letter twice rather than none).
    store = make()
    late = 1_000 + HORIZON_S * 1000 + 1
    store.exchange(NONE_E, labels(("e1", 1, "lb/0/5", late)), 0)
    store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000)
    again = store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000)
    assert again.joins == []
    assert [(x.event_id, x.source, x.reason) for x in again.expired] == [
        ("e1", "lb/0/5", "past_horizon")
    ]
    store.dead_lettered(again.expired)
    # Still an event waiting for a label within the horizon.
    joined = store.exchange(NONE_E, labels(("e1", 0, "lb/0/8", 2_000)), 1_000)
    assert [(j.event_id, j.joiner) for j in joined.joins] == [("e1", "lb/0/8")]


def check_a_label_whose_event_never_comes_expires(make: Make) -> None:
    store = make()
    store.exchange(NONE_E, labels(("ghost", 1, "lb/0/5", 1_000)), 0)
    assert store.exchange(NONE_E, NONE_L, 1_000 + HORIZON_S * 1000 - 1).expired == []
    out = store.exchange(NONE_E, NONE_L, 1_000 + HORIZON_S * 1000)
    assert [(x.event_id, x.source, x.reason) for x in out.expired] == [
        ("ghost", "lb/0/5", "unknown_event")
    ]
    assert out.expired[0].value == b'{"event_id": "ghost"}'
    store.dead_lettered(out.expired)
    assert store.exchange(NONE_E, NONE_L, 10**12).expired == []  # once


def check_an_expired_label_comes_back_until_its_dead_letter_is_durable(make: Make) -> None:
    store = make()
    store.exchange(NONE_E, labels(("ghost", 1, "lb/0/5", 1_000)), 0)
    deadline = 1_000 + HORIZON_S * 1000
    first = store.exchange(NONE_E, NONE_L, deadline)
    # The process died before the dead letter was flushed: the next batch gives it again.
    again = store.exchange(NONE_E, NONE_L, deadline + 5)
    assert [(x.event_id, x.source) for x in again.expired] == [("ghost", "lb/0/5")]
    # A stale confirmation (another label since stored under the id) deletes nothing.
    store.dead_lettered([replace(first.expired[0], source="lb/0/4")])
    assert len(store.exchange(NONE_E, NONE_L, deadline + 6).expired) == 1
    store.dead_lettered(again.expired)
    assert store.exchange(NONE_E, NONE_L, 10**12).expired == []


def check_forget_deletes_events_whose_deadline_is_past_the_bound(make: Make) -> None:
    store = make()
    store.exchange(
        events(
            ("waiting", "ev/0/1", 1_000), ("joined", "ev/0/2", 1_000), ("later", "ev/0/3", 9_000)
        ),
        labels(("joined", 1, "lb/0/1", 1_500), ("early", 1, "lb/0/2", 1_000)),
        1_000,
    )
    deadline = 1_000 + HORIZON_S * 1000
    assert store.forget(deadline) == 0  # the bound is exclusive
    assert store.forget(deadline + 1) == 2  # "waiting" and "joined"; not "later", not "early"
    # The event that came later still joins its label; the early label still waits for its own.
    joined = store.exchange(NONE_E, labels(("later", 0, "lb/0/3", 9_500)), 9_000)
    assert [(j.event_id, j.joiner) for j in joined.joins] == [("later", "lb/0/3")]
    came = store.exchange(events(("early", "ev/0/4", 1_200)), NONE_L, 9_000)
    assert [(j.event_id, j.joiner) for j in came.joins] == [("early", "ev/0/4")]
    # A label for a forgotten event waits as an early label and is given up as unknown_event.
    store.exchange(NONE_E, labels(("waiting", 1, "lb/0/9", 2_000)), 9_000)
    out = store.exchange(NONE_E, NONE_L, 2_000 + HORIZON_S * 1000)
    assert [(x.event_id, x.reason) for x in out.expired] == [("waiting", "unknown_event")]


CHECKS = [value for name, value in sorted(globals().items()) if name.startswith("check_")]


def check_what_a_batch_touches_is_due_no_sooner_than_a_horizon_after_its_floor(
    make: Make,
) -> None:
    # floor_ms: what was learned of both topics before the batch. A checkpoint past it by a
    # horizon came after the batch, so a replay of the batch can no longer need its entries.
    store = make()
    h = HORIZON_S * 1000
    store.exchange(events(("waiting", "ev/0/1", 1_000)), NONE_L, 1_000)
    floor = 5 * h
    store.exchange(
        events(("behind", "ev/0/2", 2_000)),  # an event far behind what was learned
        labels(("waiting", 1, "lb/0/1", 1_500)),  # a label joining an event stored earlier
        floor,
        floor_ms=floor,
    )
    assert store.forget(floor + h) == 0
    assert store.forget(floor + h + 1) == 2
