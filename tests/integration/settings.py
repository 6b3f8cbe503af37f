"""The fraud pipeline's configuration for integration tests, pointed at the test services."""

from __future__ import annotations

from typing import Any

from streamlearn.config import AppConfig, parse_config
from streamlearn.generators.fraud import FIELD_TYPES


def fraud_settings(
    broker: str, redis_url: str, topic: str, prefix: str, **pipeline: Any
) -> AppConfig:
    """One fraud pipeline on ``topic`` (group ``g-{topic}``); ``pipeline`` overrides its keys."""
    return parse_config(
        {
            "kafka": {
                "bootstrap": broker,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            },
            "redis": {"url": redis_url, "prefix": prefix},
            "metrics": {"port": 0},
            "pipelines": [
                {
                    "name": "fraud",
                    "source": {"topic": topic, "group": f"g-{topic}"},
                    "schema": {"target": "is_fraud", "features": FIELD_TYPES},
                    "model": {
                        "estimator": "sklearn.linear_model.SGDClassifier",
                        "params": {"loss": "log_loss", "alpha": 0.001},
                    },
                    **pipeline,
                }
            ],
        },
        env={},
    )
