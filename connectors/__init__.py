"""Adapters to outside systems (Kafka, Redis, Prometheus, embedded services): all network I/O."""
