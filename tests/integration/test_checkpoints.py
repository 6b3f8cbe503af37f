"""Checkpoints on a real broker and Redis: exactly once across restarts, refusals, lifecycle."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from connectors.kafka import (
    KafkaSink,
    KafkaSource,
    committed_offsets,
    end_offsets,
    ensure_topics,
)
from connectors.redis_checkpoints import RedisCheckpointStore
from connectors.redis_lock import PipelineTaken, ReplicaLock
from streamlearn.app import App
from streamlearn.batch import RawBatch
from streamlearn.checkpoint import Checkpoint
from streamlearn.config import AppConfig
from streamlearn.generators.fraud import FraudGenerator
from tests.integration.settings import fraud_settings

EVENTS = 6_000


def settings(broker: str, redis_url: str, topic: str, prefix: str, interval_s: float) -> AppConfig:
    return fraud_settings(
        broker,
        redis_url,
        topic,
        prefix,
        batching={"min_size": 500, "max_size": 500},
        checkpoint={"interval_s": interval_s, "lock_ttl_s": 2},
    )


def produce(broker: str, topic: str, n: int = EVENTS, partitions: int = 2) -> None:
    ensure_topics(broker, [topic], partitions=partitions)
    with KafkaSink(broker) as sink:
        for event in FraudGenerator(seed=2).events(n):
            sink.send(topic, orjson.dumps(event), key=event["entity_id"].encode())
        sink.flush()


def store(redis_url: str, prefix: str) -> RedisCheckpointStore:
    return RedisCheckpointStore(redis.Redis.from_url(redis_url), prefix, "fraud")


def newest(redis_url: str, prefix: str) -> Checkpoint:
    s = store(redis_url, prefix)
    return Checkpoint.from_fields(s.load(s.versions()[0]))


def commit_to_end(broker: str, topic: str) -> None:
    """What an old engine's crash between commit and checkpoint left: commits ahead."""
    source = KafkaSource(
        broker, [topic], f"g-{topic}", session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    while not source.assignment_ready():
        source.poll(1, 0.2, RawBatch())
    source.commit({(topic, p): end for p, end in end_offsets(broker, topic).items()})
    source.close()


def run_until(app: App, max_events: int, guard_s: float = 60) -> int:
    guard = threading.Timer(guard_s, app.stop.set)  # never hang on a bug: stop, then assert
    guard.start()
    try:
        return app.run(max_events=max_events)["fraud"].learned
    finally:
        guard.cancel()


def test_restart_learns_each_event_exactly_once(broker: str, redis_url: str, topic: str) -> None:
    produce(broker, topic)
    prefix = f"t{uuid.uuid4().hex[:6]}"
    with App(settings(broker, redis_url, topic, prefix, interval_s=3600)) as first:
        first_learned = run_until(first, EVENTS // 2)
        first_version = first.runners[0].pipeline.model.version
    saved = newest(redis_url, prefix)
    assert saved.model_version == first_version > 0
    assert saved.learned == first_learned == EVENTS // 2
    assert sum(saved.offsets.values()) == EVENTS // 2
    # Commits follow the checkpoint, never run ahead of it.
    committed = committed_offsets(broker, f"g-{topic}")
    read = {tp: o for tp, o in saved.offsets.items() if o > 0}
    assert {tp: o for tp, o in committed.items() if tp[0] == topic} == read

    commit_to_end(broker, topic)  # even a group commit ahead of the model does not skip events

    with App(settings(broker, redis_url, topic, prefix, interval_s=3600)) as second:
        second_learned = run_until(second, EVENTS - EVENTS // 2)
    assert first_learned + second_learned == EVENTS
    final = newest(redis_url, prefix)
    assert final.learned == EVENTS
    ends = end_offsets(broker, topic)
    assert final.offsets == {(topic, p): end for p, end in ends.items()}


@pytest.mark.parametrize("damage", ["tampered", "unsigned", "garbage", "wrong_type", "no_fields"])
def test_a_bad_newest_checkpoint_is_refused_and_the_previous_one_used(
    broker: str,
    redis_url: str,
    topic: str,
    damage: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("STREAMLEARN_CHECKPOINT_KEY", "test-secret")
    produce(broker, topic, n=2_000, partitions=1)
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config = settings(broker, redis_url, topic, prefix, interval_s=3600)
    with App(config) as app:
        run_until(app, 1_000)
    good = newest(redis_url, prefix)
    with App(config) as app:
        run_until(app, 1_000)
    s = store(redis_url, prefix)
    bad_key = s.key(s.versions()[0])
    client = redis.Redis.from_url(redis_url)
    if damage == "tampered":
        client.hset(bad_key, "state", client.hget(bad_key, "state")[:-1] + b"\x00")  # type: ignore[index]
    elif damage == "unsigned":
        client.hset(bad_key, "signature", b"")
    elif damage == "garbage":
        client.hset(bad_key, mapping={"meta": b"\xff\xfe not json", "state": b"x"})
    elif damage == "wrong_type":
        client.delete(bad_key)
        client.set(bad_key, b"a string where a hash belongs")
    else:
        client.delete(bad_key)
        client.hset(bad_key, "unrelated", b"1")

    with App(config) as app:
        learned = run_until(app, 0, guard_s=15)
        pipeline = app.runners[0].pipeline
    # Restored the previous valid version: its offsets and model, not a fresh model.
    assert learned == 0
    assert app.runners[0].ledger.learned_count == good.learned == 1_000
    assert pipeline.model.version == good.model_version
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused, "the refusal is named in the log"
    assert "test-secret" not in caplog.text


def test_a_second_replica_of_a_pipeline_is_refused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:6]}"
    first = ReplicaLock(client, prefix, "fraud", ttl_s=2).acquire(wait_s=0)
    try:
        with pytest.raises(PipelineTaken, match="already runs in another process"):
            ReplicaLock(client, prefix, "fraud", ttl_s=2).acquire(wait_s=3)  # renewed: live
        # A process that lost its lease cannot write a checkpoint (fencing token).
        fenced = RedisCheckpointStore(client, prefix, "fraud", fence=lambda: "0:gone:1")
        from streamlearn.errors import PipelineFenced

        cp = Checkpoint(1, 0.0, 0, 0, {}, b"s")
        with pytest.raises(PipelineFenced):
            fenced.save(cp, keep=5)
        # A lease that expired while Redis stalled (or restarted empty) is taken back by its
        # holder's next write, as long as nobody else took it.
        client.delete(first.key)
        ours = RedisCheckpointStore(client, prefix, "fraud", fence=lambda: first.value)
        ours.save(cp, keep=5)
        assert client.get(first.key) == first.value.encode()
    finally:
        first.release()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlearn", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_model_list_rollback_export_import(
    broker: str, redis_url: str, topic: str, tmp_path: Path
) -> None:
    produce(broker, topic, n=3_000, partitions=1)
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config = settings(broker, redis_url, topic, prefix, interval_s=3600)
    for _ in range(3):
        with App(config) as app:
            run_until(app, 1_000)
    base = ["--redis-url", redis_url, "--prefix", prefix]
    listed = orjson.loads(cli("model", "list", "fraud", "--json", *base).stdout)
    assert [e["version"] for e in listed] == [3, 2, 1]
    assert [e["learned"] for e in listed] == [3_000, 2_000, 1_000]
    assert listed[0]["offsets"] == [{"topic": topic, "partition": 0, "offset": 3_000}]
    assert set(listed[0]["score"]) >= {"auc"}

    exported = tmp_path / "v1.json"
    assert cli("model", "export", "fraud", "1", str(exported), *base).returncode == 0
    done = cli("model", "rollback", "fraud", "2", *base)
    assert done.returncode == 0, done.stderr
    assert cli("model", "rollback", "fraud", "99", *base).returncode == 2

    # The next start adopts the rollback: back to v2's model, re-reading from its offsets.
    with App(config) as app:
        learned = run_until(app, 1_000)
    history = orjson.loads(cli("model", "list", "fraud", "--json", *base).stdout)
    adopted = [e for e in history if e["rolled_back_from"] == 2]
    assert [e["learned"] for e in adopted] == [2_000]
    assert learned == 1_000 and app.runners[0].ledger.learned_count == 3_000

    assert cli("model", "import", "fraud", str(exported), *base).returncode == 0
    with App(config) as app:
        learned = run_until(app, 500)
    history = orjson.loads(cli("model", "list", "fraud", "--json", *base).stdout)
    adopted = [e for e in history if e["rolled_back_from"] == 1]
    assert [e["learned"] for e in adopted] == [1_000]
    assert history[0]["learned"] == 1_500 and learned == 500
