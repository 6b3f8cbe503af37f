"""Fraud scoring end to end on a real broker and a real Redis: nothing lost, nothing mocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
import redis
import yaml

from connectors.embedded import free_port
from connectors.kafka import (
    KafkaSink,
    committed_offsets,
    end_offsets,
    ensure_topics,
    read_all,
)
from streamlearn.app import App
from streamlearn.generators.fraud import FraudGenerator
from streamlearn.run_record import load_record
from streamlearn.workloads import MALFORMED_SAMPLES

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 10_000

# One of each kind of bad input, with the reason the dead-letter topic must give.
MALFORMED: list[tuple[bytes, str]] = [
    (b"{not json", "not_json"),
    (b'{"event_id": "m1", "entity_id": "c", "ts": 1, "amount": NaN}', "not_finite"),
    (b"[1, 2, 3]", "not_object"),
    (b'"just a string"', "not_object"),
    (b"", "empty"),
    (b'{"event_id": "m2", "entity_id": "c", "ts": 1}', "missing_field"),
    (
        b'{"event_id": "m3", "entity_id": "c", "ts": 1, "amount": "12.5", "merchant_risk": 0.1,'
        b' "velocity_1h": 1, "distance_km": 1, "hour": 1, "is_foreign": 0, "channel": "web",'
        b' "mcc": "5411", "is_fraud": 0}',
        "wrong_type",
    ),
    (
        b'{"event_id": "m4", "entity_id": "c", "ts": 1, "amount": 1.0, "merchant_risk": 0.1,'
        b' "velocity_1h": 1, "distance_km": 1, "hour": 1, "is_foreign": 0, "channel": "web",'
        b' "mcc": "5411", "is_fraud": 7}',
        "wrong_type",
    ),
    (b'{"event_id": "m5", "pad": "' + b"x" * 70_000 + b'"}', "oversized"),
]


def fraud_config(
    tmp_path: Path,
    topic: str,
    broker: str,
    redis_url: str,
    prefix: str,
    connect_timeout_s: float = 30,
) -> Path:
    config = yaml.safe_load((ROOT / "examples/fraud/config.yaml").read_text())
    config["kafka"] = {
        "bootstrap": broker,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "connect_timeout_s": connect_timeout_s,
    }
    config["redis"] = {"url": redis_url, "prefix": prefix}
    config["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    pipeline = config["pipelines"][0]
    pipeline["source"] = {"topic": topic, "group": f"group-{topic}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def produce(broker: str, topic: str, events: list[dict], partitions: int = 3) -> None:
    ensure_topics(broker, [topic], partitions=partitions)
    # Spread the malformed messages through the stream, between valid events.
    spacing = len(events) // len(MALFORMED)
    bad_at = {k * spacing: value for k, (value, _) in enumerate(MALFORMED)}
    with KafkaSink(broker) as sink:
        for i, event in enumerate(events):
            sink.send(topic, orjson.dumps(event), key=event["entity_id"].encode())
            if i in bad_at:
                sink.send(topic, bad_at[i], key=b"bad")
        sink.flush()


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.fixture
def workload(broker: str, topic: str) -> list[dict]:
    events = list(FraudGenerator(seed=3).events(EVENTS))
    produce(broker, topic, events)
    return events


def test_every_event_scored_every_bad_one_dead_lettered(
    tmp_path: Path, broker: str, redis_url: str, topic: str, workload: list[dict]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    path = fraud_config(tmp_path, topic, broker, redis_url, prefix)
    from streamlearn.config import load_config

    config = load_config(path, env={})
    total = EVENTS + len(MALFORMED)
    with App(config) as app:
        stats = app.run(max_events=total)["fraud"]
        metrics = scrape(config.metrics.port)

    assert (stats.consumed, stats.predicted, stats.invalid) == (total, EVENTS, len(MALFORMED))

    # Every entity has a prediction hash in the documented layout, for its latest event.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    latest: dict[str, dict] = {}
    for event in workload:
        latest[event["entity_id"]] = event
    for entity, event in latest.items():
        stored = client.hgetall(f"{prefix}:fraud:pred:{entity}")
        assert set(stored) == {
            "score",
            "label",
            "model_version",
            "event_id",
            "ts",
            "scored_at",
            "reasons",
        }
        assert 0.0 <= float(stored["score"]) <= 1.0
        assert int(stored["ts"]) <= int(event["ts"])
        assert 0 < client.pttl(f"{prefix}:fraud:pred:{entity}") <= 604_800_000
    # Within a partition events arrive in order, so the hash holds the entity's last event.
    assert sum(
        client.hget(f"{prefix}:fraud:pred:{e}", "event_id") == ev["event_id"]
        for e, ev in latest.items()
    ) == len(latest)

    # Offsets committed up to the end of every partition.
    committed = committed_offsets(broker, f"group-{topic}")
    ends = end_offsets(broker, topic)
    assert {p: committed[(topic, p)] for p in ends} == ends

    # Every malformed message is in the dead-letter topic, with its bytes and the reason.
    letters = read_all(broker, f"{topic}.dlq")
    found = {bytes(r.value): dict(r.headers) for r in letters}
    assert len(letters) == len(MALFORMED)
    for value, reason in MALFORMED:
        assert found[value]["reason"].decode() == reason
        assert found[value]["source"].decode().startswith(f"{topic}/")

    # /metrics agrees with what happened.
    label = 'pipeline="fraud"'
    assert metrics[f"streamlearn_events_consumed_total{{{label}}}"] == total
    assert metrics[f"streamlearn_predictions_total{{{label}}}"] == EVENTS
    assert metrics[f"streamlearn_learned_total{{{label}}}"] == EVENTS
    invalid = {
        k: v for k, v in metrics.items() if k.startswith("streamlearn_events_invalid_total{")
    }
    assert sum(invalid.values()) == len(MALFORMED)
    assert metrics[f"streamlearn_event_latency_seconds_count{{{label}}}"] == EVENTS
    auc = [
        v
        for k, v in metrics.items()
        if k.startswith("streamlearn_model_score{") and 'metric="auc"' in k and label in k
    ]
    assert auc and auc[0] > 0.6


def test_cli_run_stops_cleanly_on_sigterm(
    tmp_path: Path, broker: str, redis_url: str, topic: str, workload: list[dict]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    path = fraud_config(tmp_path, topic, broker, redis_url, prefix)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlearn", "run", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not client.keys(f"{prefix}:fraud:pred:*"):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    consumed = int(out.split("consumed ")[1].split(",")[0])
    committed = committed_offsets(broker, f"group-{topic}")
    # Whatever was consumed before the signal was written and committed: none left behind.
    assert sum(committed.values()) == consumed


def test_cli_run_records_the_run_and_report_draws_it(
    tmp_path: Path, broker: str, redis_url: str, topic: str, workload: list[dict]
) -> None:
    path = fraud_config(tmp_path, topic, broker, redis_url, f"t{uuid.uuid4().hex[:6]}")
    run_json, page = tmp_path / "RUN.json", tmp_path / "RUN.html"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    total = EVENTS + len(MALFORMED)
    command = [sys.executable, "-m", "streamlearn"]
    ran = subprocess.run(
        [*command, "run", str(path), "--max-events", str(total), "--record", str(run_json)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    record = load_record(run_json)
    fraud = record["pipelines"]["fraud"]
    assert fraud["totals"]["consumed"] == total
    assert fraud["totals"]["predicted"] == EVENTS
    assert sum(fraud["totals"]["invalid"].values()) == len(MALFORMED)
    assert sum(p.get("predicted", 0) for p in fraud["points"]) == EVENTS
    drawn = subprocess.run(
        [*command, "report", str(run_json)], env=env, capture_output=True, text=True, timeout=60
    )
    assert drawn.returncode == 0, drawn.stderr
    html = page.read_text(encoding="utf-8")
    assert f"wrote {EVENTS:,} predictions" in html
    assert "Dead letters" in html and "Prequential model score" in html


def run_expecting_a_clear_error(path: Path) -> str:
    """Run the CLI on a configuration that must fail at start-up; return its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "streamlearn", "run", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    return result.stderr


def test_unreachable_broker_is_a_clear_error(tmp_path: Path, redis_url: str) -> None:
    # Short start-up patience so the test is quick; the default is a minute of backoff.
    path = fraud_config(
        tmp_path, "nowhere", f"127.0.0.1:{free_port()}", redis_url, "x", connect_timeout_s=2
    )
    err = run_expecting_a_clear_error(path)
    assert "unreachable" in err and "STREAMLEARN_KAFKA_BOOTSTRAP" in err


def test_unreachable_redis_is_a_clear_error(tmp_path: Path, broker: str) -> None:
    path = fraud_config(tmp_path, "t", broker, f"redis://127.0.0.1:{free_port()}/0", "x")
    config = yaml.safe_load(path.read_text())
    config["redis"]["connect_timeout_s"] = 2
    path.write_text(yaml.safe_dump(config))
    err = run_expecting_a_clear_error(path)
    assert "Redis at redis://127.0.0.1:" in err and "unreachable" in err
    assert "STREAMLEARN_REDIS_URL" in err


def test_demo_malformed_samples_are_all_rejected() -> None:
    from streamlearn.config import load_config
    from streamlearn.decoding import EventDecoder

    schema = load_config(ROOT / "examples/fraud/config.yaml", env={}).pipelines[0].schema_
    decoded = EventDecoder(schema).decode(list(MALFORMED_SAMPLES))
    assert len(decoded) == 0 and len(decoded.rejected) == len(MALFORMED_SAMPLES)


def test_predictions_topic_gets_every_prediction(
    tmp_path: Path, broker: str, redis_url: str, topic: str, workload: list[dict]
) -> None:
    path = fraud_config(tmp_path, topic, broker, redis_url, f"t{uuid.uuid4().hex[:6]}")
    config = yaml.safe_load(path.read_text())
    config["pipelines"][0]["outputs"] = {"predictions_topic": f"{topic}.predictions"}
    config["metrics"]["port"] = 0
    path.write_text(yaml.safe_dump(config))
    from streamlearn.config import load_config

    with App(load_config(path, env={})) as app:
        app.run(max_events=EVENTS + len(MALFORMED))
    published = [orjson.loads(r.value) for r in read_all(broker, f"{topic}.predictions")]
    assert sorted(p["event_id"] for p in published) == sorted(e["event_id"] for e in workload)
    assert all(0.0 <= p["score"] <= 1.0 and p["pipeline"] == "fraud" for p in published)


def test_generate_writes_the_documented_schema(broker: str, topic: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAMLEARN_KAFKA_BOOTSTRAP": broker}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamlearn",
            "generate",
            "fraud",
            "--events",
            "500",
            "--seed",
            "4",
            "--drift-at",
            "250",
            "--topic",
            topic,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    from streamlearn.config import load_config
    from streamlearn.decoding import EventDecoder

    records = read_all(broker, topic)
    schema = load_config(ROOT / "examples/fraud/config.yaml", env={}).pipelines[0].schema_
    decoded = EventDecoder(schema).decode([bytes(r.value) for r in records])
    assert len(records) == len(decoded) == 500 and not decoded.rejected
    assert [bytes(r.key).decode() for r in records] == decoded.entity_ids


def test_demo_runs_end_to_end_and_leaves_a_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamlearn",
            "demo",
            "--events",
            "3000",
            "--rate",
            "3000",
            "--report",
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(report.read_bytes())
    assert (summary["predicted"], summary["invalid"]) == (3000, 3)
    assert summary["p99_ms"] is not None and summary["events_per_s"] > 0
    assert "streamlearn query fraud" in result.stderr
    # The run record and the HTML report land next to the JSON summary, made from this run.
    record = load_record(tmp_path / "report-run.json")
    assert record["pipelines"]["fraud"]["totals"]["predicted"] == 3000
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Prequential model score" in page and "Consumer lag" in page
    assert "3,000 predictions" in page
    assert page.count("<svg") >= 6
