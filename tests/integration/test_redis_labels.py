"""The label store contract on a real Redis, plus its TTLs."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis

from connectors.redis_labels import RedisLabelStore
from tests.label_store_contract import CHECKS, HORIZON_S, NONE_L, events


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
