"""Model publication in a real Redis: only the lock holder publishes; a fenced learner is refused.

A learner paused past its lease (GC, SIGSTOP, a network partition) wakes up after a standby
took the pipeline lock over. Its next publication or confirmation must be refused by Redis
itself, atomically, so scorers never switch to a model from a learner that no longer owns
the pipeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from connectors.redis_models import RedisModelBoard
from streamlearn.errors import PipelineFenced

PIPELINE = "fraud"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def boards(client: redis.Redis) -> tuple[RedisModelBoard, RedisModelBoard, str]:
    """The old learner's and the standby's boards on one pipeline, and the lock key."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    old = RedisModelBoard(client, prefix, PIPELINE, fence=lambda: "token-old")
    new = RedisModelBoard(client, prefix, PIPELINE, fence=lambda: "token-new")
    return old, new, old.lock_key


def test_the_lock_holder_publishes_and_a_fenced_learner_changes_nothing(
    client: redis.Redis,
) -> None:
    old, new, lock = boards(client)
    client.set(lock, "token-old")
    old.publish(1, b"model-1", "sig-1", at=10.0, keep=5)
    first = old.latest()
    assert first is not None and first.version == 1

    client.set(lock, "token-new")  # the lease expired; the standby holds the pipeline now
    new.publish(2, b"model-2", "sig-2", at=20.0, keep=5)

    with pytest.raises(PipelineFenced, match="publishing the model refused"):
        old.publish(3, b"stale", "sig-3", at=30.0, keep=5)
    with pytest.raises(PipelineFenced, match="confirming the model refused"):
        old.confirm(2, at=31.0)

    latest = new.latest()
    assert latest is not None
    assert (latest.version, latest.published_at, latest.fresh_at) == (2, 20.0, 20.0)
    assert new.versions() == [1, 2]
    assert new.fetch(3) is None  # the refused version was never written
    assert new.fetch(2) == (b"model-2", "sig-2")


def test_confirm_refreshes_only_the_version_still_pointed_at(client: redis.Redis) -> None:
    board, _, lock = boards(client)
    client.set(lock, "token-old")
    board.publish(1, b"m1", "s1", at=1.0, keep=5)
    board.publish(2, b"m2", "s2", at=2.0, keep=5)
    board.confirm(1, at=5.0)  # v1 is no longer latest: nothing to refresh
    latest = board.latest()
    assert latest is not None and (latest.version, latest.fresh_at) == (2, 2.0)
    board.confirm(2, at=6.0)
    latest = board.latest()
    assert latest is not None and (latest.version, latest.fresh_at) == (2, 6.0)


def test_old_versions_beyond_keep_are_dropped_with_their_state(client: redis.Redis) -> None:
    board, _, lock = boards(client)
    client.set(lock, "token-old")
    for version in range(1, 6):
        board.publish(version, f"m{version}".encode(), "s", at=float(version), keep=2)
    assert board.versions() == [4, 5]
    assert [board.fetch(v) is None for v in range(1, 6)] == [True, True, True, False, False]
    assert not client.exists(board.key(1))
