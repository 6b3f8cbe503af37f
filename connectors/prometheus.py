"""Turns the engine's hooks into Prometheus metrics.

``PrometheusHooks`` records what the pipelines report; ``connectors.metrics_server.MetricsServer``
exposes it on ``/metrics`` beside ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connectors.prometheus_collectors import ArrayHistogram, CheckpointAge
from streamlearn.hooks import PipelineHooks

# Stream latencies live between a millisecond and a few seconds; the client's default buckets
# (5 ms .. 10 s, sparse below 100 ms) would put a whole healthy pipeline in two buckets.
DEFAULT_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Labels come seconds (a declined payment) to weeks (a chargeback, churn) after their event.
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
LABEL_DELAY_BUCKETS_S = (
    1.0, 10.0, MINUTE, 10 * MINUTE, HOUR, 6 * HOUR, DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY,
    45 * DAY, 60 * DAY, 90 * DAY,
)  # fmt: skip
DEFAULT_STAGE_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class PrometheusHooks(PipelineHooks):
    """Pipeline hooks that keep the documented ``streamlearn_*`` metrics in a registry.

    Parameters
    ----------
    registry
        Where the metrics are registered; a fresh private registry when ``None``.
    latency_buckets_s
        Upper bounds (seconds) of the event-latency histogram buckets.
    clock
        Wall clock in epoch seconds, for the checkpoint age; injected so tests can drive it.

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> hooks = PrometheusHooks(registry)
    >>> hooks.on_consumed("fraud", 100)
    >>> hooks.on_invalid("fraud", "not_json", 2)
    >>> hooks.on_predictions("fraud", np.array([0.004, 0.02, 0.3]))
    >>> registry.get_sample_value("streamlearn_events_consumed_total", {"pipeline": "fraud"})
    100.0
    >>> registry.get_sample_value("streamlearn_events_invalid_total",
    ...                           {"pipeline": "fraud", "reason": "not_json"})
    2.0
    >>> registry.get_sample_value("streamlearn_event_latency_seconds_bucket",
    ...                           {"pipeline": "fraud", "le": "0.05"})
    2.0
    >>> hooks.ready
    False
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        latency_buckets_s: Sequence[float] = DEFAULT_LATENCY_BUCKETS_S,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self.ready = False
        self._lag_partitions: dict[str, set[str]] = {}
        counter, gauge = self._counter, self._gauge
        self.consumed = counter("streamlearn_events_consumed", "Messages taken from the source.")
        self.invalid = counter(
            "streamlearn_events_invalid", "Messages sent to the dead-letter topic.", "reason"
        )
        self.predictions = counter("streamlearn_predictions", "Predictions written.")
        self.learned = counter("streamlearn_learned", "Labelled events the model learned from.")
        self.target_missed = counter(
            "streamlearn_latency_target_missed", "Predictions written after the latency target."
        )
        self.batches = counter("streamlearn_batches", "Batches closed, by trigger.", "trigger")
        self.drifts = counter("streamlearn_drift_detected", "Times the drift detector fired.")
        self.labels_unmatched = counter(
            "streamlearn_labels_unmatched",
            "Delayed labels that matched no event, by reason (dead-lettered).",
            "reason",
        )
        self.too_late = counter(
            "streamlearn_events_too_late",
            "Events too late (event time) to be folded into their entity's aggregates; scored.",
        )
        self.batch_size = gauge("streamlearn_batch_size", "The batcher's current target size.")
        self.lag = gauge("streamlearn_consumer_lag", "Messages behind, by partition.", "partition")
        self.model_score = gauge(
            "streamlearn_model_score", "Rolling prequential model score, by metric.", "metric"
        )
        self.model_version = gauge("streamlearn_model_version", "Version of the serving model.")
        self.model_staleness = gauge(
            "streamlearn_model_staleness_seconds",
            "Scorer role: seconds since the learner last vouched for the served model.",
        )
        self.stage_duration = Histogram(
            "streamlearn_batch_duration_seconds",
            "Time one batch spent in each stage.",
            ["pipeline", "stage"],
            registry=self.registry,
            buckets=DEFAULT_STAGE_BUCKETS_S,
        )
        self.latency = ArrayHistogram(
            "streamlearn_event_latency_seconds",
            "Time from an event's ingest to its prediction being written.",
            latency_buckets_s,
            registry=self.registry,
        )
        self.label_delay = ArrayHistogram(
            "streamlearn_label_delay_seconds",
            "Event-time delay of each delayed label after its event, as joined and learned.",
            LABEL_DELAY_BUCKETS_S,
            registry=self.registry,
        )
        self.checkpoint_age = CheckpointAge(clock, registry=self.registry)

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, ["pipeline", *labels], registry=self.registry)

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(name, documentation, ["pipeline", *labels], registry=self.registry)

    def on_consumed(self, pipeline: str, n: int) -> None:  # noqa: D102
        self.consumed.labels(pipeline).inc(n)

    def on_invalid(self, pipeline: str, reason: str, n: int) -> None:  # noqa: D102
        self.invalid.labels(pipeline, reason).inc(n)

    def on_labels_unmatched(self, pipeline: str, reason: str, n: int) -> None:  # noqa: D102
        self.labels_unmatched.labels(pipeline, reason).inc(n)

    def on_too_late(self, pipeline: str, n: int) -> None:  # noqa: D102
        self.too_late.labels(pipeline).inc(n)

    def on_label_delays(self, pipeline: str, delays_s: np.ndarray) -> None:  # noqa: D102
        self.label_delay.observe_many(pipeline, delays_s)

    def on_predictions(self, pipeline: str, latencies_s: np.ndarray) -> None:  # noqa: D102
        self.predictions.labels(pipeline).inc(len(latencies_s))
        self.latency.observe_many(pipeline, latencies_s)

    def on_learned(self, pipeline: str, n: int) -> None:  # noqa: D102
        self.learned.labels(pipeline).inc(n)

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:  # noqa: D102
        self.batches.labels(pipeline, trigger).inc()

    def on_batch_size(self, pipeline: str, size: int) -> None:  # noqa: D102
        self.batch_size.labels(pipeline).set(size)

    def on_stage(self, pipeline: str, stage: str, seconds: float) -> None:  # noqa: D102
        self.stage_duration.labels(pipeline, stage).observe(seconds)

    def on_target_missed(self, pipeline: str, n: int) -> None:  # noqa: D102
        self.target_missed.labels(pipeline).inc(n)

    def on_lag(self, pipeline: str, lag: Mapping[int, int]) -> None:  # noqa: D102
        current = {str(partition): behind for partition, behind in lag.items()}
        # After a rebalance a revoked partition's lag would otherwise stay frozen on the graph.
        for gone in self._lag_partitions.get(pipeline, set()) - current.keys():
            self.lag.remove(pipeline, gone)
        for partition, behind in current.items():
            self.lag.labels(pipeline, partition).set(behind)
        self._lag_partitions[pipeline] = set(current)

    def on_model_score(self, pipeline: str, scores: Mapping[str, float]) -> None:  # noqa: D102
        for metric, value in scores.items():
            self.model_score.labels(pipeline, metric).set(value)

    def on_drift(self, pipeline: str) -> None:  # noqa: D102
        self.drifts.labels(pipeline).inc()

    def on_model_version(self, pipeline: str, version: int) -> None:  # noqa: D102
        self.model_version.labels(pipeline).set(version)

    def on_model_staleness(self, pipeline: str, seconds: float) -> None:  # noqa: D102
        self.model_staleness.labels(pipeline).set(seconds)

    def on_checkpoint(self, pipeline: str, written_at: float) -> None:  # noqa: D102
        self.checkpoint_age.checkpointed(pipeline, written_at)

    def on_ready(self, ready: bool) -> None:  # noqa: D102
        self.ready = ready

    # Liveness and readiness per pipeline are answered by ``streamlearn.health.HealthMonitor``
    # on /healthz and /readyz; they are states, not metrics.
    def on_pipeline_ready(self, pipeline: str, ready: bool) -> None:  # noqa: D102
        pass

    def on_batch_started(self, pipeline: str) -> None:  # noqa: D102
        pass

    def on_busy(self, pipeline: str, activity: str | None) -> None:  # noqa: D102
        pass

    def on_failed(self, pipeline: str, message: str) -> None:  # noqa: D102
        pass
