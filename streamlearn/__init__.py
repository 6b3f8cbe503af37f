"""streamlearn: keep machine-learning models learning from live business events.

The engine is pure logic (batching, decoding, features, models, evaluation, drift); the
``connectors`` package holds every piece of network I/O.
"""

__version__ = "0.1.0"
