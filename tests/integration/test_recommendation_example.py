"""The recommendation example end to end on the real broker and Redis: interactions as
`streamlearn generate recommendation` writes them, through `examples/recommendation/config.yaml`;
each user's list lands in Redis without what they bought or rated, every served list goes to the
predictions topic, every interaction is learned once across a restart.
"""

from __future__ import annotations

import importlib.resources
import io
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import redis
import yaml
from rich.console import Console
from typer.testing import CliRunner

from connectors.kafka import KafkaSink, ensure_topics, read_all
from connectors.redis_checkpoints import RedisCheckpointStore
from connectors.redis_recs import RecommendationStore
from streamlearn.app import App
from streamlearn.checkpoint import Checkpoint
from streamlearn.cli import app as cli
from streamlearn.config import AppConfig, RecommendationPipelineConfig, load_config, parse_config
from streamlearn.demo import run_demo
from streamlearn.demo_tasks import demo_task
from streamlearn.generators.recommendation import recommendation_events

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/recommendation/config.yaml"
EVENTS = 12_000
MALFORMED = [
    b"{not json",
    b'{"event_id": "bad-1", "user_id": "u", "item_id": "i", "event_type": "like", '
    b'"value": 1, "ts": 1}',
    b'{"event_id": "bad-2", "user_id": "u", "item_id": "", "event_type": "view", '
    b'"value": 1, "ts": 1}',
    b'{"event_id": "bad-3", "user_id": "u", "event_type": "view", "value": 1, "ts": 1}',
]


def settings(broker: str, redis_url: str, topic: str, prefix: str) -> AppConfig:
    """The example configuration on the test's topic, Redis prefix and services."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["kafka"] = {"bootstrap": broker, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
    data["redis"] = {"url": redis_url, "prefix": prefix}
    data["metrics"] = {"port": 0}
    (pipeline,) = data["pipelines"]
    pipeline["source"] = {**pipeline["source"], "topic": topic, "group": f"g-{topic}"}
    pipeline["outputs"] = {"predictions_topic": f"{topic}.served"}
    pipeline["checkpoint"] = {"interval_s": 3600, "lock_ttl_s": 2}  # one, at each shutdown
    return parse_config(data, env={})


def produce(broker: str, topic: str) -> list[dict[str, Any]]:
    """Write the interactions (and the malformed messages among them) as a backlog."""
    events = list(recommendation_events(EVENTS, seed=3, users=1_500, items=800))
    with KafkaSink(broker) as sink:
        for i, event in enumerate(events):
            sink.send(
                topic, orjson.dumps(event), event["user_id"].encode(), timestamp_ms=event["ts"]
            )
            if i % 3_000 == 1_500:
                sink.send(topic, MALFORMED[(i // 3_000) % len(MALFORMED)], b"u")
        sink.flush()
    return events


def test_the_example_is_the_packaged_demo_task_and_checks() -> None:
    packaged = importlib.resources.files("streamlearn.tasks").joinpath("recommendation.yaml")
    assert packaged.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")
    (pipeline,) = load_config(EXAMPLE, env={}).pipelines
    assert isinstance(pipeline, RecommendationPipelineConfig)
    assert pipeline.source.topic == "interactions" and pipeline.recommendation.k == 10
    result = CliRunner().invoke(cli, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "recommendation, top 10 per user" in result.output


def test_lists_served_and_learned_exactly_once_across_a_restart(
    broker: str, redis_url: str, topic: str
) -> None:
    ensure_topics(broker, [topic], partitions=2)
    events = produce(broker, topic)
    malformed = EVENTS // 3_000
    total = EVENTS + malformed
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config = settings(broker, redis_url, topic, prefix)
    with App(config) as first:
        learned_first = first.run(max_events=total // 2)["recommendation"].learned
    with App(config) as second:
        learned_second = second.run(max_events=total - total // 2)["recommendation"].learned
        hit_rate = second.metrics.registry.get_sample_value(
            "streamlearn_model_score", {"pipeline": "recommendation", "metric": "hit_rate_at_10"}
        )

    client = redis.Redis.from_url(redis_url)
    checkpoints = RedisCheckpointStore(client, prefix, "recommendation")
    newest = Checkpoint.from_fields(checkpoints.load(checkpoints.versions()[0]))
    assert newest.learned == learned_first + learned_second == EVENTS  # each one exactly once

    # Every valid interaction's served list went out once per time it was served (a replay
    # after the first run's stop serves nothing twice: offsets were committed at shutdown).
    served = [orjson.loads(m.value) for m in read_all(broker, f"{topic}.served")]
    assert sorted(r["event_id"] for r in served) == sorted(e["event_id"] for e in events)
    assert all(len(r["items"]) <= 10 for r in served)
    # A list is empty only when served before the model learned anything (the first batch),
    # or when every item the model knew then is one the user bought or rated (early on, the
    # model may know only a handful).
    excluded_before: dict[str, bool] = {}  # event id -> its user bought or rated before it
    bought: set[str] = set()
    for e in events:  # a user's events keep their order (one partition per user)
        excluded_before[e["event_id"]] = e["user_id"] in bought
        if e["event_type"] in ("purchase", "rating"):
            bought.add(e["user_id"])
    for r in served:
        assert r["items"] or r["model_version"] == 0 or excluded_before[r["event_id"]], r
    assert sum(not r["items"] for r in served) <= config.pipelines[0].batching.max_size + 100

    # Each user's list holds no item they bought or rated, and at most 10 items.
    never_again: dict[str, set[str]] = defaultdict(set)
    users = set()
    for e in events:
        users.add(e["user_id"])
        if e["event_type"] in ("purchase", "rating"):
            never_again[e["user_id"]].add(e["item_id"])
    store = RecommendationStore(client, prefix, "recommendation", ttl_s=0)
    listed = 0
    unlisted: list[str] = []
    for user in users:
        ranked = store.read(user)
        assert len(ranked) <= 10
        assert not never_again[user] & {item for item, _ in ranked}, user
        scores = [score for _, score in ranked]
        assert scores == sorted(scores, reverse=True)
        listed += bool(ranked)
        if not ranked:
            unlisted.append(user)
        ttl = client.pttl(f"{prefix}:recommendation:recs:{user}")
        assert not ranked or 0 < ttl <= 604_800_000
    # Users whose last batch came after the model had learned something all have a list, but
    # for one who had bought or rated everything the model knew then.
    last_served = {r["user_id"]: r for r in served}  # a user's records keep their order
    assert listed > len(users) // 2
    for user in unlisted:
        assert last_served[user]["model_version"] == 0 or never_again[user], user

    dead = read_all(broker, f"{topic}.dlq")
    reasons = sorted(dict(m.headers)["reason"].decode() for m in dead)
    assert reasons == sorted(["not_json", "unknown_event_type", "empty_item", "missing_field"])
    assert hit_rate is not None and 0.0 < hit_rate <= 1.0

    user = next(iter(u for u in users if store.read(u)))
    result = CliRunner().invoke(
        cli, ["query", "recommendation", user, "--redis-url", redis_url, "--prefix", prefix]
    )
    assert result.exit_code == 0, result.output
    first_item = store.read(user)[0][0]
    assert result.output.splitlines()[0].split()[:2] == ["1", first_item]


def test_the_demo_runs_the_recommendation_task(tmp_path: Path) -> None:
    events = 8_000
    report = run_demo(
        task=demo_task("recommendation"),
        events=events,
        rate=8_000,
        drift_at=None,
        metrics_port=0,
        report_path=tmp_path / "report.json",
        console=Console(file=io.StringIO(), width=120),
    )
    malformed = events // 1000
    assert report["task"] == "recommendation" and report["predicted"] == events
    assert report["learned"] == events
    assert sum(report["invalid_by_reason"].values()) == malformed
    assert 0.0 < report["scores"]["hit_rate_at_10"] <= 1.0
