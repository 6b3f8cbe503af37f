"""The per-event job of the hot-path benchmark (issue 9), as a user would write it with river.

Shared by the hand-written kafka-python loop (b) and the Quix Streams app (c), so both run the
same model on the same features. Imports only river (lazily) and the standard library: the
Quix app runs it in a separate virtual environment that does not hold streamlearn.
"""

from __future__ import annotations

from typing import Any

NUMERIC = ("amount", "merchant_risk", "velocity_1h", "distance_km", "hour", "is_foreign")
CATEGORIES = ("channel", "mcc")


def features(event: dict[str, Any]) -> dict[str, float]:
    """The fraud features of one event, categories one-hot encoded as ``name=value`` keys.

    >>> features({"amount": 12.5, "merchant_risk": 0.1, "velocity_1h": 2, "distance_km": 3.0,
    ...           "hour": 13, "is_foreign": 0, "channel": "web", "mcc": "5411"})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'amount': 12.5, 'merchant_risk': 0.1, 'velocity_1h': 2.0, 'distance_km': 3.0, 'hour': 13.0,
     'is_foreign': 0.0, 'channel=web': 1.0, 'mcc=5411': 1.0}
    """
    x = {name: float(event[name]) for name in NUMERIC}
    for name in CATEGORIES:
        x[f"{name}={event[name]}"] = 1.0
    return x


def fresh_model() -> Any:
    """``StandardScaler() | LogisticRegression()``: river's defaults, as in its own examples."""
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def prediction_key(pipeline: str, entity: str) -> str:
    """The documented prediction key (``sl:{pipeline}:pred:{entity}``).

    >>> prediction_key("fraud-loop", "card-00001")
    'sl:fraud-loop:pred:card-00001'
    """
    return f"sl:{pipeline}:pred:{entity}"


class PerEventJob:
    """Score one event, write its prediction (one HSET), learn from its label: test then train.

    Keeps every served score and its label, in order, for the exact prequential AUC.
    """

    def __init__(self, redis_client: Any, pipeline: str) -> None:
        self.model = fresh_model()
        self.redis = redis_client
        self.pipeline = pipeline
        self.scores: list[float] = []
        self.labels: list[int] = []

    def __call__(self, event: dict[str, Any]) -> None:
        x = features(event)
        score = self.model.predict_proba_one(x).get(True, 0.0)
        self.redis.hset(
            prediction_key(self.pipeline, event["entity_id"]),
            mapping={"score": score, "event_id": event["event_id"], "ts": event["ts"]},
        )
        label = int(event["is_fraud"])
        self.model.learn_one(x, bool(label))
        self.scores.append(score)
        self.labels.append(label)
