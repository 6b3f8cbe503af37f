"""The retention benchmark's stream and pipeline configuration.

One generated customer-activity stream (events, and each sampled event's churn label when it
becomes known, 30 days later), serialised once as Kafka messages would carry it, and the
retention pipeline's configuration with or without the per-customer aggregates.

The stream goes on past the last event only far enough to deliver the labels of the events it
holds (the generator keeps simulating days; later events and their labels are dropped), so every
sampled event of the stream is scored and later evaluated, the last ones included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson

from streamlearn.config import AppConfig, PipelineConfig, parse_config
from streamlearn.generators.retention import AGGREGATES, DAY_MS, FIELD_TYPES, RetentionGenerator

EVENTS_TOPIC = "customer-activity"
LABELS_TOPIC = "churn-labels"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z: the stream is the same on every day it runs
HORIZON_S = 31 * 86_400  # the label delay (30 days) and one day of slack, as in the example


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """The generator settings of one stream.

    >>> StreamSpec(events=1_000).drift_at is None
    True
    """

    seed: int = 7
    customers: int = 5_000
    events: int = 300_000
    days: float = 120.0
    label_fraction: float = 0.2
    label_delay_days: float = 30.0
    drift_at: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The settings, for the results file."""
        return asdict(self)


# One message: (topic, key, value, timestamp_ms), as a producer sends it.
Message = tuple[str, bytes, bytes, int]


def event_index(event_id: str) -> int:
    """Position of an event in the stream, from the generator's id ``ev-{seed}-{index:09d}``.

    >>> event_index("ev-7-000001234")
    1234
    """
    return int(event_id.rsplit("-", 1)[1])


def build_stream(spec: StreamSpec) -> list[Message]:
    """The ``spec.events`` events in event-time order, with every label of theirs that comes."""
    generator = RetentionGenerator(
        seed=spec.seed,
        customers=spec.customers,
        events=spec.events,
        days=spec.days,
        label_fraction=spec.label_fraction,
        label_delay_days=spec.label_delay_days,
        drift_at=spec.drift_at,
        start_ms=START_MS,
    )
    out: list[Message] = []
    last_ts = START_MS
    for kind, key, value, ts in generator.messages(spec.events):
        out.append(_message(kind, key, value, ts))
        last_ts = ts if kind == "events" else last_ts
    # The labels still to come for these events: the generator simulates on; drop the rest.
    end = last_ts + int(spec.label_delay_days * DAY_MS) + DAY_MS
    for kind, key, value, ts in generator.messages(10**12):
        if ts > end:
            break
        if kind == "labels" and event_index(value["event_id"]) < spec.events:
            out.append(_message(kind, key, value, ts))
    return out


def _message(kind: str, key: str, value: dict[str, Any], ts: int) -> Message:
    topic = EVENTS_TOPIC if kind == "events" else LABELS_TOPIC
    return topic, key.encode(), orjson.dumps(value), ts


def pipeline_dict(
    *,
    aggregates: bool = True,
    min_size: int = 1,
    max_size: int = 2048,
    topic: str = EVENTS_TOPIC,
    labels_topic: str = LABELS_TOPIC,
) -> dict[str, Any]:
    """The retention pipeline, as the packaged example configures it (model, labels, batching).

    Built here from the generator's ``FIELD_TYPES`` and ``AGGREGATES`` rather than read from the
    example file, so the benchmark measures a fixed configuration. ``aggregates=False`` leaves
    only the event's own fields.

    >>> sorted(pipeline_dict(aggregates=False)["schema"])
    ['entity', 'features', 'id', 'timestamp']
    """
    schema: dict[str, Any] = {
        "id": "event_id",
        "entity": "customer_id",
        "timestamp": "ts",
        "features": dict(FIELD_TYPES),
    }
    if aggregates:
        schema["aggregates"] = {name: dict(spec) for name, spec in AGGREGATES.items()}
    return {
        "name": "retention",
        "source": {"topic": topic, "group": topic, "start": "earliest"},
        "schema": schema,
        "labels": {
            "topic": labels_topic,
            "id": "event_id",
            "target": "churned",
            "horizon_s": HORIZON_S,
        },
        "model": {
            "estimator": "sklearn.linear_model.SGDClassifier",
            "params": {"loss": "log_loss", "alpha": 0.01, "random_state": 0},
            "scale": True,
            "threshold": 0.02,
        },
        "batching": {
            "latency_target_ms": 100,
            "latency_margin_ms": 20,
            "min_size": min_size,
            "max_size": max_size,
            "max_wait_ms": 50,
        },
        "drift": {"detector": "adwin"},
        "outputs": {"prediction_ttl_s": 30 * 86_400},
    }


def pipeline_config(*, aggregates: bool = True, batch_size: int = 256) -> PipelineConfig:
    """The pipeline for an in-process replay at a fixed batch size."""
    data = pipeline_dict(aggregates=aggregates, min_size=batch_size, max_size=batch_size)
    return PipelineConfig.model_validate(data)


def app_config(
    bootstrap: str,
    redis_url: str,
    topic: str,
    prefix: str,
    checkpoint: dict[str, Any] | None = None,
) -> AppConfig:
    """The whole application for the end-to-end run: adaptive batching, labels, aggregates.

    Checkpoints at the defaults (every 10 s, 5 kept), as production runs them, unless
    ``checkpoint`` sets its keys.
    """
    pipeline = pipeline_dict(topic=topic, labels_topic=f"{topic}-labels")
    if checkpoint:
        pipeline["checkpoint"] = dict(checkpoint)
    data = {
        "kafka": {"bootstrap": bootstrap, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
        "redis": {"url": redis_url, "prefix": prefix},
        "metrics": {"port": 0},
        "pipelines": [pipeline],
    }
    return parse_config(data, env={})
