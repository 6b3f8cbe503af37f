"""``kafka.client: confluent``: ConfluentSource in a group, and the App on it end to end.

The source contract itself (poll, commit, pause/resume, seek, resume from commits) runs
against both clients in ``test_kafka_connector.py``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import yaml

from connectors import kafka_confluent
from connectors.embedded import free_port
from connectors.kafka import committed_offsets, end_offsets, ensure_topics, read_all
from connectors.kafka_confluent import ConfluentSource
from connectors.redis_checkpoints import RedisCheckpointStore
from streamlearn.app import App
from streamlearn.batch import RawBatch
from streamlearn.checkpoint import Checkpoint
from streamlearn.config import load_config, parse_config
from streamlearn.errors import ConfigError, ServiceUnavailable
from streamlearn.generators.fraud import FraudGenerator
from tests.integration.test_fraud_end_to_end import EVENTS, MALFORMED, fraud_config, produce

Moves = list[list[tuple[str, int]]]


def member(broker: str, topic: str, group: str, assigned: Moves, revoked: Moves) -> ConfluentSource:
    return ConfluentSource(
        broker,
        [topic],
        group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        on_assign=assigned.append,
        on_revoke=revoked.append,
    )


def poll_until(
    sources: list[ConfluentSource], done: Callable[[], object], seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        for source in sources:
            source.poll(100, 0.1, RawBatch())


def test_group_rebalance_calls_back_on_the_polling_thread(broker: str, topic: str) -> None:
    ensure_topics(broker, [topic], partitions=2)
    group = f"group-{uuid.uuid4().hex[:8]}"
    both = [(topic, 0), (topic, 1)]
    a_assigned: Moves = []
    a_revoked: Moves = []
    b_assigned: Moves = []
    b_revoked: Moves = []
    threads: set[str] = set()
    a = member(broker, topic, group, a_assigned, a_revoked)
    b = None
    try:

        def on_assign(partitions: list[tuple[str, int]]) -> None:
            threads.add(threading.current_thread().name)
            a_assigned.append(partitions)

        a.on_assign = on_assign
        poll_until([a], lambda: a_assigned)
        assert a_assigned == [both] and a.assignment_ready()
        assert threads == {threading.current_thread().name}

        b = member(broker, topic, group, b_assigned, b_revoked)
        poll_until([a, b], lambda: b_assigned and len(a_assigned) > 1)
        # Eager rebalancing: everything is revoked, then each member gets one partition.
        assert a_revoked == [both]
        assert sorted(a_assigned[-1] + b_assigned[-1]) == both
        assert len(a_assigned[-1]) == len(b_assigned[-1]) == 1

        b.close()
        b = None
        poll_until([a], lambda: a_assigned[-1] == both)
        assert a_assigned[-1] == both
    finally:
        if b is not None:
            b.close()
        a.close()
    assert b_revoked == []  # close leaves the group without calling on_revoke


def test_an_unreachable_broker_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_confluent, "_PROBE_TIMEOUT_S", 1.0)
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable) as info:
        ConfluentSource(address, ["t"], "g")
    assert address in str(info.value)
    assert "STREAMLEARN_KAFKA_BOOTSTRAP" in str(info.value)


def test_a_wrong_client_names_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.client: expected 'kafka-python' or 'confluent'"):
        parse_config({"kafka": {"client": "librdkafka"}, "pipelines": []}, env={})


def _newest(redis_url: str, prefix: str) -> Checkpoint:
    store = RedisCheckpointStore(redis.Redis.from_url(redis_url), prefix, "fraud")
    return Checkpoint.from_fields(store.load(store.versions()[0]))


def test_fraud_example_on_confluent_predicts_every_event_and_learns_each_once(
    tmp_path: Path, broker: str, redis_url: str, topic: str
) -> None:
    events = list(FraudGenerator(seed=3).events(EVENTS))
    produce(broker, topic, events)
    prefix = f"t{uuid.uuid4().hex[:6]}"
    path = fraud_config(tmp_path, topic, broker, redis_url, prefix)
    raw = yaml.safe_load(path.read_text())
    raw["kafka"]["client"] = "confluent"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path, env={})
    assert config.kafka.client == "confluent"
    total = EVENTS + len(MALFORMED)
    half = total // 2
    # Two runs: the second resumes from the first's checkpoint and commits (a restart).
    learned = predicted = 0
    for max_events in (half, total - half):
        with App(config) as app:
            guard = threading.Timer(120, app.stop.set)
            guard.start()
            try:
                stats = app.run(max_events=max_events)["fraud"]
            finally:
                guard.cancel()
            assert isinstance(app.runners[0].source, ConfluentSource)
        learned += stats.learned
        predicted += stats.predicted
    assert predicted == learned == EVENTS

    checkpoint = _newest(redis_url, prefix)
    assert checkpoint.learned == EVENTS
    ends = end_offsets(broker, topic)
    assert sum(ends.values()) == total
    assert checkpoint.offsets == {(topic, p): end for p, end in ends.items()}
    committed = committed_offsets(broker, f"group-{topic}")
    assert {p: committed[(topic, p)] for p in ends} == ends

    # Every entity's hash holds the prediction for its latest event.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    latest = {event["entity_id"]: event["event_id"] for event in events}
    stored = {e: client.hget(f"{prefix}:fraud:pred:{e}", "event_id") for e in latest}
    assert stored == latest
    assert len(read_all(broker, f"{topic}.dlq")) == len(MALFORMED)
