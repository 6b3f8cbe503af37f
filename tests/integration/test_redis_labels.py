"""The label store contract on a real Redis, plus its TTLs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import redis

from connectors.redis_labels import RedisLabelStore
from tests.label_store_contract import CHECKS, HORIZON_S, NONE_E, NONE_L, events, labels


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_redis_store(check: Callable[..., None], redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    check(lambda: RedisLabelStore(client, f"t{uuid.uuid4().hex[:8]}", "churn", HORIZON_S))


def test_pending_entries_expire_after_the_horizon(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RedisLabelStore(client, prefix, "churn", HORIZON_S)
    store.exchange(events(("e1", "ev/0/1", 1_000)), NONE_L, 1_000)
    ttl_ms = client.pttl(f"{prefix}:churn:pending:e1")
    assert 0 < ttl_ms <= HORIZON_S * 1000  # type: ignore[operator]


def test_the_index_of_what_is_due_drops_entries_their_ttl_removed(redis_url: str) -> None:
    # Live, entries leave by TTL; where nothing is forgotten by event time (no bound yet),
    # the index must not keep their ids for ever.
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RedisLabelStore(client, prefix, "churn", horizon_s=0.2)
    store.exchange(events(("e1", "ev/0/1", 1_000), ("e2", "ev/0/2", 2_000)), NONE_L, 0)
    due = f"{prefix}:churn:pending-due"
    assert client.zcard(due) == 2
    assert store.forget(None) == 0 and client.zcard(due) == 2  # both still there
    time.sleep(0.4)
    assert store.forget(None) == 0
    assert client.zcard(due) == 0


def test_a_scorer_deletes_an_expired_label_as_it_finds_it(redis_url: str) -> None:
    # Scorers share the early-label index: kept until dead-lettered, each would send it.
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RedisLabelStore(client, prefix, "churn", HORIZON_S, owner=False)
    store.exchange(NONE_E, labels(("ghost", 1, "lb/0/5", 1_000)), 0)
    late = 1_000 + HORIZON_S * 1000
    assert [x.event_id for x in store.exchange(NONE_E, NONE_L, late).expired] == ["ghost"]
    assert store.exchange(NONE_E, NONE_L, late).expired == []
    assert not client.exists(f"{prefix}:churn:pending:ghost")
    assert not client.exists(f"{prefix}:churn:pending-due")  # events are not indexed


def test_the_early_label_index_of_an_older_version_is_taken_over(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    old = f"{prefix}:churn:pending:early"  # where it was, among the entries
    client.hset(f"{prefix}:churn:pending:ghost", mapping={"st": "l", "ls": "lb/0/5", "lv": "{}"})
    client.zadd(old, {"ghost": 1_000 + HORIZON_S * 1000})
    store = RedisLabelStore(client, prefix, "churn", HORIZON_S)
    out = store.exchange(NONE_E, NONE_L, 1_000 + HORIZON_S * 1000)
    assert [(x.event_id, x.source) for x in out.expired] == [("ghost", "lb/0/5")]
    assert not client.exists(old)
