"""The prediction store's contract on a real Redis: layout, TTL, newest wins, clear refusals."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
import redis

from connectors.redis_checkpoints import RedisCheckpointStore
from connectors.redis_store import (
    PredictionColumns,
    PredictionStore,
    connect,
)
from streamlearn.checkpoint import Checkpoint, CheckpointRefused
from streamlearn.errors import OutputBackpressure, OutputRejected


def columns(
    entities: list[str],
    ts: list[int],
    scores: list[float],
    version: int = 1,
    reasons: list[str] | None = None,
):
    return PredictionColumns(
        entity_ids=entities,
        event_ids=[f"e-{i}-{t}" for i, t in enumerate(ts)],
        timestamps_ms=np.array(ts, dtype=np.int64),
        scores=np.array(scores),
        labels=np.array(scores) > 0.5,
        model_version=version,
        scored_at_ms=99,
        reasons=reasons,
    )


@pytest.fixture
def store(redis_url: str) -> PredictionStore:
    return PredictionStore(connect(redis_url), f"t{uuid.uuid4().hex[:6]}", "fraud", ttl_s=60)


def test_layout_and_ttl(store: PredictionStore) -> None:
    assert store.write(columns(["card-1"], [1000], [0.75], version=7)) == 1
    assert store.read("card-1") == {
        "score": "0.75",
        "label": "1",
        "model_version": "7",
        "ts": "1000",
        "event_id": "e-0-1000",
        "scored_at": "99",
    }
    ttl = store.client.pttl(f"{store.prefix}:fraud:pred:card-1")
    assert 0 < ttl <= 60_000


def test_newest_event_wins_within_and_across_batches(store: PredictionStore) -> None:
    # Within a batch: the event with the latest time, not the last to arrive.
    store.write(columns(["a", "a", "a"], [500, 900, 700], [0.1, 0.9, 0.3]))
    assert store.read("a")["ts"] == "900"  # type: ignore[index]
    # A replay of an older event does not overwrite; a newer one does.
    assert store.write(columns(["a"], [800], [0.2])) == 0
    assert store.read("a")["score"] == "0.9"  # type: ignore[index]
    assert store.write(columns(["a"], [1000], [0.4])) == 1
    assert store.read("a")["score"] == "0.4"  # type: ignore[index]


def test_reasons_round_trip_with_the_newest_prediction(store: PredictionStore) -> None:
    why = ['[["amount",1.2345],["channel=web",0.5]]', "[]", '[["hour",0.1]]']
    assert store.write(columns(["a", "b", "a"], [5, 6, 9], [0.9, 0.1, 0.8], reasons=why)) == 2
    assert store.read("a")["reasons"] == why[2]  # type: ignore[index]
    assert store.read("b")["reasons"] == "[]"  # type: ignore[index]
    # An older event's reasons never land beside a newer score.
    assert store.write(columns(["a"], [7], [0.2], reasons=['[["velocity",3.0]]'])) == 0
    assert store.read("a") == {
        "score": "0.8",
        "label": "1",
        "model_version": "1",
        "ts": "9",
        "event_id": "e-2-9",
        "scored_at": "99",
        "reasons": '[["hour",0.1]]',
    }


def test_no_reasons_field_without_reasons(store: PredictionStore) -> None:
    store.write(columns(["a", "b"], [5, 5], [0.9, 0.1]))
    assert "reasons" not in store.read("a")  # type: ignore[operator]
    # A newer prediction without reasons (say, the model no longer gives them) drops the old ones.
    store.write(columns(["b"], [6], [0.7], reasons=['[["amount",0.5]]']))
    store.write(columns(["b"], [7], [0.6]))
    assert store.read("b") == {
        "score": "0.6",
        "label": "1",
        "model_version": "1",
        "ts": "7",
        "event_id": "e-0-7",
        "scored_at": "99",
    }


def test_reasons_in_large_batches_follow_their_entities(store: PredictionStore) -> None:
    n = 2500
    why = [f'[["amount",{i}.0]]' for i in range(n)]
    assert store.write(columns([f"c{i}" for i in range(n)], list(range(n)), [0.5] * n, reasons=why))
    assert [store.read(f"c{i}")["reasons"] for i in (0, 999, 1000, 2499)] == [  # type: ignore[index]
        why[0],
        why[999],
        why[1000],
        why[2499],
    ]


def test_large_batches_are_written_in_chunks(store: PredictionStore) -> None:
    entities = [f"c{i}" for i in range(2500)]
    assert store.write(columns(entities, list(range(2500)), [0.5] * 2500)) == 2500
    assert store.read("c2499")["ts"] == "2499"  # type: ignore[index]


def test_a_key_of_the_wrong_type_is_refused_for_good(store: PredictionStore) -> None:
    store.client.set(f"{store.prefix}:fraud:pred:card-9", "someone else's string")
    with pytest.raises(OutputRejected, match="WRONGTYPE"):
        store.write(columns(["card-9"], [1], [0.5]))


def test_a_server_that_went_away_is_worth_retrying(redis_url: str) -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = PredictionStore(dead, "x", "fraud", ttl_s=0)
    with pytest.raises(OutputBackpressure):
        store.write(columns(["a"], [1], [0.5]))


def test_checkpoint_versions_round_trip_and_old_ones_are_dropped(redis_url: str) -> None:
    checkpoints = RedisCheckpointStore(connect(redis_url), f"t{uuid.uuid4().hex[:6]}", "fraud")
    assert checkpoints.versions() == []
    saved = [
        Checkpoint(v, 12.5, v * 10, v, {("transactions", 1): 42 + v}, b"\x00model", "abc")
        for v in range(1, 5)
    ]
    for checkpoint in saved:
        checkpoints.save(checkpoint, keep=2)
    assert checkpoints.versions() == [4, 3]
    assert Checkpoint.from_fields(checkpoints.load(4)) == saved[3]
    with pytest.raises(CheckpointRefused, match="missing"):
        checkpoints.load(1)  # dropped with its index entry


def test_a_full_redis_is_worth_retrying(redis_url: str) -> None:
    # A server of its own: maxmemory would disturb the other tests' shared one.
    from connectors.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        client = connect(server.url)
        client.config_set("maxmemory-policy", "noeviction")
        client.set("filler", b"x" * 3_000_000)
        client.config_set("maxmemory", "1mb")
        store = PredictionStore(client, "sl", "fraud", ttl_s=60)
        with pytest.raises(OutputBackpressure, match="maxmemory"):
            store.write(columns(["a"], [1], [0.5]))


def test_each_prediction_keeps_the_version_that_made_it(store: PredictionStore) -> None:
    # Batches of one learned in one pass: each row was scored by a later version.
    cols = columns(["a", "b", "a"], [1, 2, 3], [0.1, 0.2, 0.3], version=4)
    per_row = dataclasses.replace(cols, model_versions=np.array([4, 5, 6]))
    assert store.write(per_row) == 2
    assert store.read("a")["model_version"] == "6"  # type: ignore[index]
    assert store.read("b")["model_version"] == "5"  # type: ignore[index]


def test_a_sent_write_lands_while_the_caller_works_and_its_connection_goes_back(
    store: PredictionStore,
) -> None:
    # 2 500 entities: three script calls in one send, the server's replies read afterwards.
    entities = [f"c{i}" for i in range(2500)]
    replies = store.send(columns(entities, list(range(2500)), [0.25] * 2500))
    pool = store.client.connection_pool
    assert len(pool._in_use_connections) == 1  # held until the replies are read
    assert store.client.get("unrelated") is None  # the client works meanwhile (another one)
    assert replies() == 2500
    assert len(pool._in_use_connections) == 0
    assert store.read("c2499") == {
        "score": "0.25",
        "label": "0",
        "model_version": "1",
        "ts": "2499",
        "event_id": "e-2499-2499",
        "scored_at": "99",
    }


def test_a_sent_write_loads_the_script_where_redis_lost_it(store: PredictionStore) -> None:
    store.write(columns(["a"], [1], [0.1]))
    store.client.script_flush()  # as after a Redis restart
    replies = store.send(columns(["a", "b"], [2, 2], [0.9, 0.8]))
    assert replies() == 2
    assert store.read("a")["ts"] == "2" and store.read("b")["score"] == "0.8"  # type: ignore[index]


def test_a_refused_sent_write_reads_every_reply_before_raising(store: PredictionStore) -> None:
    # The first chunk's first key holds a string: that script call fails; the others land,
    # and the connection is left clean (its next command gets its own reply).
    entities = [f"d{i}" for i in range(1500)]
    store.client.set(f"{store.prefix}:fraud:pred:d0", "not a hash")
    replies = store.send(columns(entities, list(range(1500)), [0.5] * 1500))
    with pytest.raises(OutputRejected, match="WRONGTYPE"):
        replies()
    assert store.read("d1499") is not None
    assert store.client.ping() is True
    assert store.write(columns(["d1"], [10_000], [0.7])) == 1


def test_a_server_gone_before_the_replies_is_worth_retrying(redis_url: str) -> None:
    from connectors.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        store = PredictionStore(connect(server.url), "x", "fraud", ttl_s=0)
        store.write(columns(["a"], [1], [0.5]))  # the script is loaded
        store.client.client_pause(5_000)  # the server holds the call it is about to get
        replies = store.send(columns(["a"], [2], [0.5]))
        server.stop()
        with pytest.raises(OutputBackpressure):
            replies()
        assert len(store.client.connection_pool._in_use_connections) == 0


def test_a_lost_script_beside_another_refusal_is_loaded_and_written_again(
    store: PredictionStore,
) -> None:
    # Two chunks: one reply says NOSCRIPT, the other READONLY (a failover under way). The
    # batch is written again through the script object, which loads the script.
    class Replies:
        errors = [
            redis.exceptions.NoScriptError("NOSCRIPT No matching script."),
            redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."),
        ]

        def pack_commands(self, commands: object) -> bytes:
            return b""

        def send_packed_command(self, packed: object) -> None:
            pass

        def read_response(self) -> object:
            raise self.errors.pop(0)

        def disconnect(self) -> None:
            pass

    pool = store.client.connection_pool
    get, release = pool.get_connection, pool.release
    pool.get_connection = lambda *args: Replies()  # type: ignore[method-assign]
    pool.release = lambda connection: None  # type: ignore[method-assign]
    try:
        replies = store.send(columns([f"f{i}" for i in range(1500)], [7] * 1500, [0.5] * 1500))
    finally:
        pool.get_connection, pool.release = get, release  # type: ignore[method-assign]
    assert replies() == 1500
    assert store.read("f1499") is not None
