"""Services fail mid-stream: /readyz and /healthz tell the truth, nothing crashes, all is scored.

Redis frozen (SIGSTOP: no error, just silence) and the broker restarted (it comes back empty).
Redis killed and restarted is ``test_redis_outage.py``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from connectors.embedded import EmbeddedBroker, free_port
from connectors.kafka import ensure_topics
from streamlearn.app import App
from streamlearn.config import AppConfig, HealthConfig, MetricsConfig
from streamlearn.generators.fraud import FraudGenerator
from streamlearn.hooks import PipelineHooks
from tests.integration.settings import fraud_settings
from tests.integration.test_redis_outage import RedisProcess, http_get, produce

STALL_S = 2.0
FREEZE_S = 10.0


class FreezableRedis(RedisProcess):
    """A redis-server the test can freeze: connections stay open, nothing answers."""

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


class RestartableBroker(EmbeddedBroker):
    """The embedded broker on one fixed port, so that it can come back where clients look."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed_port = free_port()

    def _command(self, port: int, workdir: Path) -> list[str]:
        self.port = self.fixed_port  # chosen once, not per start
        return super()._command(self.fixed_port, workdir)


@dataclass
class Running:
    """An App running on a thread, with its metrics server on a real port."""

    app: App
    url: str
    thread: threading.Thread | None = None
    errors: list[BaseException] = field(default_factory=list)

    def get(self, path: str) -> tuple[int, str]:
        return http_get(f"{self.url}{path}")

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll until ``condition`` holds; return when (monotonic seconds). Fail on a crash."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert not self.errors, f"the App crashed while waiting for {what}: {self.errors[0]!r}"
            assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
            time.sleep(0.05)
        return time.monotonic()

    @property
    def predicted(self) -> int:
        return self.app.runners[0].stats.predicted if self.app.runners else 0


class BatchStarts(PipelineHooks):
    """When each batch, or each spell of I/O between batches, started (monotonic seconds).

    Either can be what a frozen Redis stalls: a batch's writes, or the reads and
    commits the loop makes between batches (``on_busy``).
    """

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_batch_started(self, pipeline: str) -> None:
        self.times.append(time.monotonic())

    def on_busy(self, pipeline: str, activity: str | None) -> None:
        if activity is not None:
            self.times.append(time.monotonic())


@contextmanager
def running(settings: AppConfig, *observers: PipelineHooks) -> Iterator[Running]:
    """Run the App until the block ends, then stop it and check it ended without an error."""
    port = free_port()
    settings = settings.model_copy(
        update={
            "metrics": MetricsConfig(host="127.0.0.1", port=port),
            "health": HealthConfig(stall_s=STALL_S, liveness_timeout_s=60.0),
        }
    )
    run = Running(App(settings, observers=observers), f"http://127.0.0.1:{port}")

    def work() -> None:
        try:
            run.app.run()
        except BaseException as exc:
            run.errors.append(exc)

    run.thread = threading.Thread(target=work, name="app-under-test")
    run.thread.start()
    try:
        yield run
    finally:
        run.app.stop.set()
        run.thread.join(timeout=60)
        run.app.close()
    assert not run.thread.is_alive()
    assert run.errors == [], f"the App crashed: {run.errors[0]!r}"


def rss_mb() -> float:
    """Resident memory of this process (the App runs in it), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def unscored(client: redis.Redis, prefix: str, events: list[dict]) -> int:
    """How many entities' stored prediction is not for their latest event in ``events``."""
    latest = {e["entity_id"]: e["event_id"] for e in events}
    pipe = client.pipeline(transaction=False)
    for entity in latest:
        pipe.hget(f"{prefix}:fraud:pred:{entity}", "event_id")
    stored = pipe.execute()
    return sum(
        got is None or got.decode() != want
        for got, want in zip(stored, latest.values(), strict=True)
    )


@pytest.fixture
def frozen_redis(tmp_path: Path) -> Iterator[FreezableRedis]:
    server = FreezableRedis(tmp_path)
    server.start()
    yield server
    server.thaw()
    server.stop()


def test_redis_frozen_turns_readyz_503_then_back_and_everything_is_scored(
    broker: str, topic: str, frozen_redis: FreezableRedis
) -> None:
    ensure_topics(broker, [topic])
    events = list(FraudGenerator(seed=21).events(25_000))
    first, second = events[:5_000], events[5_000:]
    prefix = f"t{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(frozen_redis.url)
    produce(broker, topic, first)
    starts = BatchStarts()
    with running(fraud_settings(broker, frozen_redis.url, topic, prefix), starts) as run:
        run.wait_for(lambda: run.predicted >= len(first), 30, "the first events' predictions")
        run.wait_for(lambda: run.get("/readyz")[0] == 200, 10, "/readyz to answer 200")
        rss_before = peak = rss_mb()

        frozen_at = time.monotonic()
        frozen_redis.freeze()
        # 20 000 events wait on a Redis that does not answer; produced while /readyz is watched.
        producer = threading.Thread(target=produce, args=(broker, topic, second))
        producer.start()
        flipped_at, reason = None, ""
        while time.monotonic() - frozen_at < FREEZE_S:
            status, body = run.get("/readyz")
            if status == 503 and flipped_at is None:
                flipped_at, reason = time.monotonic(), body
            assert run.get("/healthz") == (200, "ok\n")  # stalled is not dead
            peak = max(peak, rss_mb())
            time.sleep(0.1)
        producer.join()
        frozen_redis.thaw()
        thawed_at = time.monotonic()
        back_at = run.wait_for(lambda: run.get("/readyz")[0] == 200, 30, "/readyz back to 200")
        run.wait_for(lambda: run.predicted >= len(events), 30, "every event's prediction")
        rss_after = rss_mb()
        assert run.get("/readyz") == (200, "ready\n")
        assert run.get("/healthz") == (200, "ok\n")

    assert flipped_at is not None, "/readyz stayed 200 through a 10 s Redis stall"
    # The stall is whatever the loop started last before readiness flipped: a batch's
    # writes, or the model-request read or commit it does between batches.
    stuck_since = max(t for t in starts.times if t <= flipped_at)
    took = flipped_at - stuck_since
    print(
        f"stuck work began {stuck_since - frozen_at:.1f} s after the freeze; readiness flipped "
        f"{took:.1f} s after it started; back {back_at - thawed_at:.1f} s after the thaw; "
        f"RSS {rss_before:.0f} MB before, peak {peak:.0f}, after {rss_after:.0f}"
    )
    assert STALL_S - 0.1 <= took <= STALL_S + 2
    assert reason.startswith("fraud: ")
    assert "batch" in reason or "Redis" in reason, reason
    assert max(peak, rss_after) - rss_before < 200
    assert unscored(client, prefix, events) == 0


@pytest.fixture
def restartable_broker() -> Iterator[RestartableBroker]:
    with RestartableBroker() as server:
        yield server


@pytest.mark.xfail(
    strict=False,
    reason=(
        "two known faults: (1) kafka-python 3 runs rebalance listeners on its IO thread, and "
        "the revoke path (runner.revoke -> OffsetLedger.revoked -> settle -> KafkaSource.commit) "
        "blocks there: RuntimeError, then poll() raises 'User rebalance callback throws an "
        "error' and the pipeline stops; (2) without that, the ledger seeks the recreated "
        "partition to the offset learned before the restart, so the events written since at "
        "lower offsets are skipped silently"
    ),
)
def test_broker_restarted_mid_stream_the_app_reconnects_and_scores_new_events(
    restartable_broker: RestartableBroker, redis_url: str, topic: str
) -> None:
    bootstrap = restartable_broker.bootstrap
    ensure_topics(bootstrap, [topic])
    events = list(FraudGenerator(seed=31).events(6_000))
    first, second = events[:3_000], events[3_000:]
    prefix = f"t{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(redis_url)
    produce(bootstrap, topic, first)
    with running(fraud_settings(bootstrap, redis_url, topic, prefix)) as run:
        run.wait_for(lambda: run.predicted >= len(first), 30, "the first events' predictions")
        assert unscored(client, prefix, first) == 0

        restartable_broker.stop()  # memory only: topics, offsets and the group are gone
        time.sleep(1)
        restartable_broker.start()
        assert restartable_broker.bootstrap == bootstrap
        ensure_topics(bootstrap, [topic, f"{topic}.dlq"])
        produce(bootstrap, topic, second)
        assert run.get("/healthz") == (200, "ok\n")

        run.wait_for(
            lambda: unscored(client, prefix, second) == 0,
            30,
            "predictions of the events produced after the broker restart",
        )
        assert run.thread is not None and run.thread.is_alive()
        assert run.get("/healthz") == (200, "ok\n")
