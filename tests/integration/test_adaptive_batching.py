"""The batcher on a real broker: deadline batches at a trickle, large batches under a backlog."""

from __future__ import annotations

import threading
import time
import uuid

import orjson

from connectors.kafka import KafkaSink, ensure_topics
from streamlearn.app import App
from streamlearn.generators.fraud import FraudGenerator
from streamlearn.hooks import PipelineHooks
from tests.integration.settings import fraud_settings


class BatchLog(PipelineHooks):
    """Records every closed batch: (size, trigger)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, str]] = []

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:
        self.batches.append((size, trigger))


def send(broker: str, topic: str, events: list[dict], rate: float | None) -> None:
    with KafkaSink(broker) as sink:
        started = time.monotonic()
        for i, event in enumerate(events):
            sink.send(topic, orjson.dumps(event), key=event["entity_id"].encode())
            if rate is not None:
                sink.flush()
                pause = started + (i + 1) / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        sink.flush()


def run_trickle_then_backlog(
    broker: str, redis_url: str, topic: str, min_size: int
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Batches closed during a 3 s trickle at 100 events/s, then during a 20 000 event backlog."""
    ensure_topics(broker, [topic])
    events = list(FraudGenerator(seed=5).events(20_300))
    trickle, backlog = events[:300], events[300:]
    log = BatchLog()
    settings = fraud_settings(
        broker,
        redis_url,
        topic,
        f"t{uuid.uuid4().hex[:6]}",
        batching={
            "latency_target_ms": 100,
            "min_size": min_size,
            "max_size": 2048,
            "max_wait_ms": 50,
        },
    )
    app = App(settings, observers=(log,))
    runner = threading.Thread(target=app.run, kwargs={"max_events": len(events)})
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not (app.runners and app.runners[0].source.assignment_ready()):
            assert time.monotonic() < deadline, "consumer never got its partition"
            time.sleep(0.1)
        send(broker, topic, trickle, rate=100)  # 3 s at 100 events/s
        trickle_batches = list(log.batches)
        send(broker, topic, backlog, rate=None)  # as fast as the producer goes
        runner.join(timeout=120)
    finally:
        app.stop.set()
        runner.join(timeout=30)
        app.close()

    assert sum(size for size, _ in log.batches) == len(events)
    return trickle_batches, log.batches[len(trickle_batches) :]


def test_trickle_keeps_batches_small_and_backlog_grows_them(
    broker: str, redis_url: str, topic: str
) -> None:
    trickle, backlog = run_trickle_then_backlog(broker, redis_url, topic, min_size=1)
    # 100 events/s with a 100 ms target: about 8 events fit in a batch's time budget.
    assert max(size for size, _ in trickle) <= 16
    assert max(size for size, _ in backlog) >= 256


def test_batches_that_cannot_fill_close_on_their_deadline(
    broker: str, redis_url: str, topic: str
) -> None:
    # With a floor of 64 a trickle never fills a batch: the deadline must close each one.
    trickle, backlog = run_trickle_then_backlog(broker, redis_url, topic, min_size=64)
    assert trickle and all(trigger == "deadline" for _, trigger in trickle[:-1])
    assert all(size < 64 for size, _ in trickle[:-1])
    assert max(size for size, _ in backlog) >= 256
