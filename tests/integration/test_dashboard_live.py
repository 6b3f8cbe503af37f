"""Every Grafana dashboard query returns data from a real Prometheus scraping a real processor.

One `App` runs three pipelines on the real broker and Redis: fraud with its labels inline (with
malformed messages, a latency target every backlogged event misses, and a drift detector set to
fire), fraud with its labels on their own topic (with duplicate labels, and an aggregate that
some events come too late for), and recommendation.
Prometheus scrapes the processor's `/metrics` while it runs; each panel's query, as Grafana sends
it, must come back with data.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.embedded import free_port
from connectors.kafka import KafkaSink, ensure_topics
from streamlearn.app import App
from streamlearn.config import parse_config
from streamlearn.generators.fraud import FIELD_TYPES, FraudGenerator
from streamlearn.generators.recommendation import recommendation_events
from streamlearn.hooks import PipelineHooks
from tests.unit.test_docker_files import (
    as_sent_to_prometheus,
    dashboard_queries,
    run_prometheus,
)

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3_000
FRAUD_MODEL = {
    "estimator": "sklearn.linear_model.SGDClassifier",
    "params": {"loss": "log_loss", "alpha": 0.001},
}


def produce(broker: str, topic: str) -> list[dict[str, Any]]:
    """Backlogs for the three pipelines; returns the churn events, whose labels come later."""
    ensure_topics(broker, [f"{topic}-fraud", f"{topic}-churn", f"{topic}-churn-labels"])
    ensure_topics(broker, [f"{topic}-recs"])
    events = list(FraudGenerator(seed=9, drift_at=EVENTS // 2).events(EVENTS))
    with KafkaSink(broker) as sink:
        for i, event in enumerate(events):
            key = event["entity_id"].encode()
            sink.send(f"{topic}-fraud", orjson.dumps(event), key)
            if i % 500 == 0:
                sink.send(f"{topic}-fraud", b"{not json", key)
            unlabelled = {k: v for k, v in event.items() if k != "is_fraud"}
            sink.send(f"{topic}-churn", orjson.dumps(unlabelled), key, None, event["ts"])
            if i % 250 == 0:  # two hours behind its card's newest event: too late to count
                late = {**unlabelled, "event_id": f"{event['event_id']}-late"}
                late["ts"] = event["ts"] - 7_200_000
                sink.send(f"{topic}-churn", orjson.dumps(late), key, None, late["ts"])
        for event in recommendation_events(EVENTS, seed=9, users=300, items=200):
            sink.send(f"{topic}-recs", orjson.dumps(event), event["user_id"].encode())
        sink.flush()
    return events


class Consumed(PipelineHooks):
    """Messages consumed per pipeline."""

    def __init__(self) -> None:
        self.by_pipeline: dict[str, int] = {}

    def on_consumed(self, pipeline: str, n: int) -> None:
        self.by_pipeline[pipeline] = self.by_pipeline.get(pipeline, 0) + n


def send_labels_later(
    broker: str, topic: str, events: list[dict[str, Any]], consumed: Consumed, stop: threading.Event
) -> None:
    """Once the churn events are consumed, their labels, a minute of event time after each (some
    twice: duplicates), so each label joins an event already scored, as in production."""
    while consumed.by_pipeline.get("churn", 0) < len(events) and not stop.wait(0.2):
        pass
    with KafkaSink(broker) as sink:
        for i, event in enumerate(events):
            label = {"event_id": event["event_id"], "is_fraud": event["is_fraud"]}
            for _ in range(2 if i % 100 == 0 else 1):
                sink.send(
                    f"{topic}-churn-labels",
                    orjson.dumps(label),
                    event["entity_id"].encode(),
                    None,
                    event["ts"] + 60_000,
                )
        sink.flush()


def settings(broker: str, redis_url: str, topic: str, port: int) -> dict[str, Any]:
    common = {"checkpoint": {"interval_s": 1, "lock_ttl_s": 2}}
    return {
        "kafka": {"bootstrap": broker, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
        "redis": {"url": redis_url, "prefix": f"t{uuid.uuid4().hex[:6]}"},
        "metrics": {"host": "127.0.0.1", "port": port},
        "pipelines": [
            {
                "name": "fraud",
                "source": {"topic": f"{topic}-fraud"},
                "schema": {"target": "is_fraud", "features": FIELD_TYPES},
                "model": FRAUD_MODEL,
                "batching": {"latency_target_ms": 5, "max_size": 256},
                "drift": {
                    "detector": "page_hinkley",
                    "params": {"threshold": 0.5, "min_instances": 10},
                    "grace_events": 0,
                },
                **common,
            },
            {
                "name": "churn",
                "source": {"topic": f"{topic}-churn"},
                "schema": {
                    "features": FIELD_TYPES,
                    "aggregates": {"tx_1h": {"fn": "count", "window": "1h"}},
                    "allowed_lateness_s": 60,
                },
                "model": FRAUD_MODEL,
                "labels": {
                    "topic": f"{topic}-churn-labels",
                    "id": "event_id",
                    "target": "is_fraud",
                    "horizon_s": 3600,
                },
                **common,
            },
            {
                "name": "recs",
                "task": "recommendation",
                "source": {"topic": f"{topic}-recs"},
                **common,
            },
        ],
    }


def test_every_dashboard_query_returns_data_from_a_running_processor(
    broker: str, redis_url: str, topic: str
) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("the prometheus server is not on PATH (Debian package `prometheus`)")
    dashboard = json.loads(
        (ROOT / "docker/grafana/dashboards/streamlearn.json").read_text(encoding="utf-8")
    )
    queries = [as_sent_to_prometheus(q) for q in dashboard_queries(dashboard)]
    events = produce(broker, topic)
    port = free_port()
    consumed = Consumed()
    config = parse_config(settings(broker, redis_url, topic, port), env={})
    with App(config, observers=(consumed,)) as app:
        runner = threading.Thread(target=app.run, daemon=True)
        runner.start()
        labels = threading.Thread(
            target=send_labels_later, args=(broker, topic, events, consumed, app.stop), daemon=True
        )
        labels.start()
        guard = threading.Timer(120, app.stop.set)
        guard.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                api = run_prometheus(prometheus, Path(tmp), f"127.0.0.1:{port}")
                try:
                    empty = queries
                    deadline = time.monotonic() + 90
                    while empty and time.monotonic() < deadline and runner.is_alive():
                        time.sleep(1.0)
                        answers = {q: api.query(q) for q in empty}
                        for query, answer in answers.items():
                            assert answer["status"] == "success", f"{query}: {answer}"
                        empty = [q for q, a in answers.items() if not a["data"]["result"]]
                finally:
                    api.process.terminate()
                    api.process.wait(timeout=10)
        finally:
            guard.cancel()
            app.stop.set()
            runner.join(60)
    assert empty == [], "queries that returned nothing from the running processor"
