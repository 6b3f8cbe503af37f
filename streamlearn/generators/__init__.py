"""Synthetic event streams for the example tasks, generated without any I/O.

The ``streamlearn generate`` command and the demo send these to Kafka; tests use them directly.
"""

from streamlearn.generators.fraud import FraudGenerator, fraud_events

__all__ = ["FraudGenerator", "fraud_events"]
