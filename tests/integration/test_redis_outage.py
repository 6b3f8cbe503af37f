"""Redis goes away mid-stream: the processor pauses, holds its memory, and resumes by itself."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from connectors.embedded import free_port, redis_server_binary
from connectors.kafka import KafkaSink, committed_offsets, end_offsets, ensure_topics
from streamlearn.app import App
from streamlearn.config import MetricsConfig
from streamlearn.generators.fraud import FraudGenerator
from streamlearn.hooks import PipelineHooks
from tests.integration.settings import fraud_settings


class RedisProcess:
    """A redis-server on a fixed port that the test can kill and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def flaky_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


def produce(broker: str, topic: str, events: list[dict]) -> None:
    with KafkaSink(broker) as sink:
        for event in events:
            sink.send(topic, orjson.dumps(event), key=event["entity_id"].encode())
        sink.flush()


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class ReadinessLog(PipelineHooks):
    """Each pipeline readiness change, in order."""

    def __init__(self) -> None:
        self.changes: list[bool] = []

    def on_pipeline_ready(self, pipeline: str, ready: bool) -> None:
        if not self.changes or self.changes[-1] != ready:
            self.changes.append(ready)


def test_outputs_down_pauses_consumption_then_recovers(
    broker: str, topic: str, flaky_redis: RedisProcess
) -> None:
    ensure_topics(broker, [topic])
    events = list(FraudGenerator(seed=11).events(20_000))
    first, second = events[:5_000], events[5_000:]
    prefix = f"t{uuid.uuid4().hex[:6]}"
    settings = fraud_settings(
        broker,
        flaky_redis.url,
        topic,
        prefix,
        source={"topic": topic, "group": f"g-{topic}", "poll_max_records": 500},
        batching={"min_size": 256, "max_size": 256},
    )
    port = free_port()
    settings = settings.model_copy(update={"metrics": MetricsConfig(host="127.0.0.1", port=port)})
    produce(broker, topic, first)
    readiness = ReadinessLog()
    app = App(settings, observers=(readiness,))
    worker = threading.Thread(target=app.run, kwargs={"max_events": len(events)})
    worker.start()
    client = redis.Redis.from_url(flaky_redis.url)
    try:
        deadline = time.monotonic() + 30
        while not client.keys(f"{prefix}:fraud:pred:*"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        flaky_redis.stop()
        produce(broker, topic, second)
        time.sleep(3)
        runner = app.runners[0]
        held = runner.stats.consumed
        time.sleep(2)
        # While Redis is down the source is paused: nothing more is taken in.
        assert runner.source.paused  # type: ignore[attr-defined]
        assert runner.stats.consumed == held < len(events)
        # ... and says so: not ready (outputs failing), but live (an outage is not a hang).
        status, reason = http_get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        assert reason.startswith("fraud: outputs failing")
        assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        flaky_redis.start()
        worker.join(timeout=120)
        assert not worker.is_alive()
    finally:
        app.stop.set()
        worker.join(timeout=30)
        app.close()

    stats = runner.stats
    assert (stats.consumed, stats.predicted) == (len(events), len(events))
    assert not runner.source.paused  # type: ignore[attr-defined]
    assert readiness.changes == [True, False, True]
    ends = end_offsets(broker, topic)
    committed = committed_offsets(broker, f"g-{topic}")
    assert {p: committed[(topic, p)] for p in ends} == ends
    # The restarted Redis is empty; everything scored after it came back is there.
    for event in second[-100:]:
        assert client.hget(f"{prefix}:fraud:pred:{event['entity_id']}", "score") is not None
