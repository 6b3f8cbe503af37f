"""The aggregate state store on a real Redis: layout, TTL, replays across a restart, refusals."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis

from connectors import redis_aggregates
from connectors.redis_aggregates import AggregateStore
from connectors.redis_store import connect
from streamlearn.aggregates import REPLAYED, Aggregator
from streamlearn.config_aggregates import AggregateSpec
from streamlearn.errors import OutputBackpressure, OutputRejected

SPECS = {
    "n_1h": AggregateSpec.model_validate({"fn": "count", "window": "1h"}),
    "spend_1h": AggregateSpec.model_validate({"fn": "sum", "field": "amount", "window": "1h"}),
    "merchants_1d": AggregateSpec.model_validate(
        {"fn": "distinct", "field": "mcc", "window": "1d"}
    ),
    "gap_s": AggregateSpec.model_validate({"fn": "since_last"}),
}


@pytest.fixture
def aggregator() -> Aggregator:
    return Aggregator(SPECS, allowed_lateness_s=600)


@pytest.fixture
def store(redis_url: str, aggregator: Aggregator) -> AggregateStore:
    return AggregateStore(
        connect(redis_url), f"t{uuid.uuid4().hex[:6]}", "fraud", ttl_s=aggregator.state_ttl_s
    )


def batch(agg: Aggregator, store: AggregateStore, rows: list[tuple[str, int, float, str, int]]):
    """One batch as the pipeline runs it: load the entities' states, apply, save the changed."""
    entities = [r[0] for r in rows]
    states = store.load(entities)
    result = agg.apply(
        states,
        entities,
        np.array([r[1] for r in rows], dtype=np.int64),
        {"amount": np.array([r[2] for r in rows])},
        {"mcc": [r[3] for r in rows]},
        [0] * len(rows),
        [r[4] for r in rows],
    )
    store.save({e: states[e] for e in result.changed})
    return result


def test_states_round_trip_with_a_ttl(store: AggregateStore, aggregator: Aggregator) -> None:
    minute = 60_000
    batch(aggregator, store, [("card-1", 0, 10.0, "5411", 0), ("card-2", 0, 3.0, "5812", 1)])
    second = batch(
        aggregator,
        store,
        [("card-1", minute, 5.0, "5812", 2), ("card-1", 2 * minute, 1.0, "5411", 3)],
    )
    assert second.features["n_1h"].tolist() == [1.0, 2.0]
    assert second.features["spend_1h"].tolist() == [10.0, 15.0]
    assert second.features["merchants_1d"].tolist() == [1.0, 2.0]
    assert second.features["gap_s"].tolist() == [60.0, 60.0]
    key = f"{store.prefix}:fraud:agg:card-1"
    assert store.client.type(key) == b"string"
    ttl_ms = store.client.pttl(key)
    assert 0 < ttl_ms <= (7 * 86400 + 600) * 1000  # since_last keeps a week, plus lateness
    assert store.load(["card-1"])["card-1"].positions == {0: 3}


def test_a_replay_after_a_restart_is_not_counted_twice(
    redis_url: str, store: AggregateStore, aggregator: Aggregator
) -> None:
    rows = [("card-1", 1000 * i, 1.0, "5411", i) for i in range(5)]
    first = batch(aggregator, store, rows)
    # A new process (new aggregator, new client) is handed the same messages again.
    restarted = AggregateStore(
        connect(redis_url), store.prefix, "fraud", ttl_s=store.ttl_ms // 1000
    )
    again = batch(
        Aggregator(SPECS, allowed_lateness_s=600),
        restarted,
        [*rows, ("card-1", 5000, 1.0, "5411", 5)],
    )
    assert first.features["n_1h"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert again.outcome.tolist() == [REPLAYED] * 5 + [0]
    assert (again.replayed, again.too_late) == (5, 0)
    assert again.features["n_1h"].tolist()[-1] == 5.0
    assert again.changed == {"card-1"}


def test_missing_and_unreadable_states_start_afresh(store: AggregateStore) -> None:
    store.client.set(store.key("broken"), b"not json")
    states = store.load(["new", "broken", "new"])
    assert sorted(states) == ["broken", "new"]
    assert states["broken"].positions == {} and states["broken"].newest_ts is None
    assert store.discarded == 1


def test_large_batches_go_in_chunks(
    store: AggregateStore, aggregator: Aggregator, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [(f"c{i}", i, 1.0, "5411", i) for i in range(2500)]  # more entities than a chunk
    batch(aggregator, store, rows)
    monkeypatch.setattr(redis_aggregates, "_CHUNK_BYTES", 300)  # and more bytes than a chunk
    batch(aggregator, store, [(f"c{i}", 10_000 + i, 1.0, "5812", 2500 + i) for i in range(5)])
    states = store.load([f"c{i}" for i in range(2500)])
    assert all(states[f"c{i}"].newest_ts == i for i in range(5, 2500))
    assert all(states[f"c{i}"].newest_ts == 10_000 + i for i in range(5))


def test_a_server_that_went_away_is_worth_retrying() -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = AggregateStore(dead, "x", "fraud", ttl_s=60)
    with pytest.raises(OutputBackpressure, match="reading aggregate state"):
        store.load(["a"])
    with pytest.raises(OutputBackpressure, match="writing aggregate state"):
        store.save({"a": Aggregator(SPECS).new_state()})


def test_a_refusal_is_permanent(redis_url: str) -> None:
    admin = connect(redis_url)
    user = f"agg-{uuid.uuid4().hex[:6]}"
    admin.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["other:*"], commands=["+@all"])
    try:
        client = redis.Redis.from_url(redis_url, username=user, password="pw")
        store = AggregateStore(client, "sl", "fraud", ttl_s=60)
        with pytest.raises(OutputRejected, match=r"was refused by Redis.*no permissions"):
            store.save({"a": Aggregator(SPECS).new_state()})
    finally:
        admin.acl_deluser(user)
