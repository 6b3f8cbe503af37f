"""Synthetic event streams for the example tasks, generated without any I/O.

The ``streamlearn generate`` command and the demo send these to Kafka; tests use them directly.
"""

from streamlearn.generators.fraud import FraudGenerator, fraud_events
from streamlearn.generators.recommendation import RecommendationGenerator, recommendation_events

__all__ = ["FraudGenerator", "RecommendationGenerator", "fraud_events", "recommendation_events"]
