"""The retention (churn) example end to end on the real broker and Redis: customer activity and
churn labels 30 days later, as `streamlearn generate retention` writes them, run through
`examples/retention/config.yaml`; every customer gets a churn risk, every label is learned once.

The stream is written while the processor runs, as in production: read from a backlog instead,
the whole events topic may be consumed before the labels topic, so every event would be scored
by the untrained model.
"""

from __future__ import annotations

import importlib.resources
import io
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import yaml
from rich.console import Console
from typer.testing import CliRunner

from connectors.kafka import KafkaSink, ensure_topics, read_all
from connectors.redis_checkpoints import RedisCheckpointStore
from connectors.redis_store import PredictionStore
from streamlearn.app import App
from streamlearn.checkpoint import Checkpoint
from streamlearn.cli import app as cli
from streamlearn.config import AppConfig, load_config, parse_config
from streamlearn.demo import run_demo
from streamlearn.demo_tasks import demo_task
from streamlearn.errors import ConfigError
from streamlearn.generators.retention import AGGREGATES, FIELD_TYPES, RetentionGenerator
from streamlearn.progress import ProgressHooks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/retention/config.yaml"
EVENTS = 20_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
CUSTOMERS = 700  # ~30 events each over the ~120 days of event time; ~25 of them churn
RATE = 5_000  # events per second while the processor runs


def settings(broker: str, redis_url: str, topic: str, prefix: str) -> AppConfig:
    """The example configuration, pointed at the test's topics, Redis prefix and services."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["kafka"] = {"bootstrap": broker, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
    data["redis"] = {"url": redis_url, "prefix": prefix}
    data["metrics"] = {"port": 0}
    (pipeline,) = data["pipelines"]
    pipeline["source"] = {**pipeline["source"], "topic": topic, "group": f"g-{topic}"}
    pipeline["labels"]["topic"] = f"{topic}-labels"
    pipeline["checkpoint"] = {"interval_s": 3600, "lock_ttl_s": 2}  # one, at shutdown
    return parse_config(data, env={})


def stream() -> list[tuple[str, str, dict[str, Any], int]]:
    """What `streamlearn generate retention` writes: events, and each label when it is known."""
    generator = RetentionGenerator(seed=5, customers=CUSTOMERS, events=EVENTS, start_ms=START_MS)
    return list(generator.messages(EVENTS))


def produce_live(
    broker: str, topics: dict[str, str], progress: ProgressHooks, stop: threading.Event
) -> None:
    """Send the stream at ``RATE`` events a second once the processor holds its partitions."""
    while not progress.ready and not stop.wait(0.1):
        pass
    started = time.monotonic()
    sent = 0
    try:
        with KafkaSink(broker) as sink:
            for kind, key, value, ts in stream():
                sink.send(topics[kind], orjson.dumps(value), key.encode(), timestamp_ms=ts)
                sent += kind == "events"
                if sent % 500 == 0:
                    time.sleep(max(0.0, started + sent / RATE - time.monotonic()))
            sink.flush()
    except BaseException:
        stop.set()  # the processor stops early and the assertions say what is missing
        raise


def test_the_example_is_the_packaged_demo_task_and_checks() -> None:
    packaged = importlib.resources.files("streamlearn.tasks").joinpath("retention.yaml")
    # Both files stay identical: `streamlearn demo --task retention` runs the packaged one.
    assert packaged.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")
    (pipeline,) = load_config(EXAMPLE, env={}).pipelines
    features = {name: spec.type.value for name, spec in pipeline.schema_.features.items()}
    assert features == FIELD_TYPES
    aggregates = {
        name: spec.model_dump(by_alias=True, exclude_none=True)
        for name, spec in pipeline.schema_.aggregates.items()
    }
    assert set(aggregates) == set(AGGREGATES)
    assert [a["fn"] for a in aggregates.values()] == [a["fn"] for a in AGGREGATES.values()]
    assert pipeline.schema_.entity == "customer_id" and pipeline.schema_.target is None
    assert pipeline.labels is not None and pipeline.labels.target == "churned"
    result = CliRunner().invoke(cli, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output


def test_every_customer_scored_every_label_learned_once(
    broker: str, redis_url: str, topic: str
) -> None:
    topics = {"events": topic, "labels": f"{topic}-labels"}
    # One events partition: a customer's events stay in order, and the newest event time (which
    # expires labels whose event never came) cannot run ahead of a lagging partition.
    ensure_topics(broker, topics.values(), partitions=1)
    total = len(stream())
    prefix = f"t{uuid.uuid4().hex[:6]}"
    progress = ProgressHooks()
    with App(settings(broker, redis_url, topic, prefix), observers=(progress,)) as app:
        args = (broker, topics, progress, app.stop)
        producer = threading.Thread(target=produce_live, args=args)
        guard = threading.Timer(90, app.stop.set)  # a hang fails the assertions, not the session
        producer.start()
        guard.start()
        try:
            learned = app.run(max_events=total)["retention"].learned
        finally:
            guard.cancel()
            producer.join()
        registry = app.metrics.registry
        auc = registry.get_sample_value(
            "streamlearn_model_score", {"pipeline": "retention", "metric": "auc"}
        )
        delays = {
            stat: registry.get_sample_value(
                f"streamlearn_label_delay_seconds_{stat}", {"pipeline": "retention"}
            )
            for stat in ("count", "sum")
        }
    events = [orjson.loads(m.value) for m in read_all(broker, topics["events"])]
    labels = [orjson.loads(m.value) for m in read_all(broker, topics["labels"])]
    assert len(events) == EVENTS and len(events) + len(labels) == total

    client = redis.Redis.from_url(redis_url)
    store = PredictionStore(client, prefix, "retention", ttl_s=0)
    newest: dict[str, str] = {}  # each customer's last event, in the order they were sent
    versions: list[int] = []
    for event in events:
        newest[event["customer_id"]] = event["event_id"]
    for customer, event_id in newest.items():
        found = store.read(customer)
        assert found is not None, customer
        assert found["event_id"] == event_id
        assert 0.0 <= float(found["score"]) <= 1.0
        versions.append(int(found["model_version"]))
        assert client.exists(f"{prefix}:retention:agg:{customer}")  # its aggregate state

    # Each label whose event arrived is learned exactly once, and counted in the checkpoint.
    scored = {event["event_id"] for event in events}
    joinable = sum(label["event_id"] in scored for label in labels)
    assert joinable == len(labels)  # the generator labels only events it sent
    assert learned == joinable
    checkpoints = RedisCheckpointStore(client, prefix, "retention")
    assert Checkpoint.from_fields(checkpoints.load(checkpoints.versions()[0])).learned == joinable
    assert read_all(broker, f"{topic}.dlq") == []  # nothing malformed, no label unmatched
    assert auc is not None and 0.0 <= auc <= 1.0
    # Each label is sent 30 days of event time after its event; the delay says so. (A label read
    # before its event, which a live stream can do across topics, waited for it: no delay.)
    assert delays["count"] is not None and 0 < delays["count"] <= joinable
    assert delays["sum"] == pytest.approx(delays["count"] * 30 * 86_400)
    assert max(versions) > 0  # the latest risks come from a model that learned from labels


def test_the_demo_runs_the_retention_task(tmp_path: Path) -> None:
    """`streamlearn demo --task retention`, smaller: it stops once every message is consumed."""
    events = 6_000
    report = run_demo(
        task=demo_task("retention"),
        events=events,
        rate=4_000,
        drift_at=None,
        metrics_port=0,
        report_path=tmp_path / "report.json",
        console=Console(file=io.StringIO(), width=120),
    )
    malformed = events // 1000
    assert report["task"] == "retention" and report["predicted"] == events
    assert report["consumed"] == report["messages_total"] > events + malformed
    labels = report["messages_total"] - events - malformed
    assert report["learned"] == labels and report["labels_unmatched_by_reason"] == {}
    assert sum(report["invalid_by_reason"].values()) == malformed
    assert orjson.loads((tmp_path / "report.json").read_bytes()) == report


def test_an_unknown_demo_task_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known tasks: fraud, recommendation, retention"):
        demo_task("ranking")
