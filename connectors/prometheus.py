"""Turns the engine's hooks into Prometheus metrics and serves them over HTTP.

``PrometheusHooks`` records what the pipelines report; ``MetricsServer`` exposes it on
``/metrics`` beside ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from streamlearn.errors import ServiceUnavailable
from streamlearn.hooks import PipelineHooks

# Stream latencies live between a millisecond and a few seconds; the client's default buckets
# (5 ms .. 10 s, sparse below 100 ms) would put a whole healthy pipeline in two buckets.
DEFAULT_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
DEFAULT_STAGE_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class ArrayHistogram(Collector):
    """A histogram with one ``pipeline`` label, fed a whole array of observations per call.

    ``Histogram.observe`` costs a lock and a Python call per value; a batch brings thousands,
    so this keeps numpy bucket counts and adds a batch with one ``bincount``. Non-finite values
    (an event whose ingest time is unknown) are not observed.

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> h = ArrayHistogram("lat_seconds", "Latency.", [0.01, 0.1], registry=registry)
    >>> h.observe_many("fraud", np.array([0.005, 0.01, 0.05, 3.0]))
    >>> registry.get_sample_value("lat_seconds_bucket", {"pipeline": "fraud", "le": "0.01"})
    2.0
    >>> registry.get_sample_value("lat_seconds_count", {"pipeline": "fraud"})
    4.0
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets_s: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = np.asarray(buckets_s, dtype=np.float64)
        if bounds.ndim != 1 or bounds.size == 0 or not np.all(np.isfinite(bounds)):
            raise ValueError(f"histogram buckets must be finite numbers, got {buckets_s!r}")
        if np.any(np.diff(bounds) <= 0):
            raise ValueError(f"histogram buckets must be strictly increasing, got {buckets_s!r}")
        self.name = name
        self.documentation = documentation
        self._bounds = bounds
        self._le = [floatToGoString(b) for b in bounds] + ["+Inf"]
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, pipeline: str, values: np.ndarray) -> None:
        """Count every finite value of ``values`` in its bucket (``value <= le``)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        # side="left" puts a value equal to a bound in that bound's bucket, as `le` means.
        slots = np.searchsorted(self._bounds, values, side="left")
        added = np.bincount(slots, minlength=len(self._le))
        total = float(values.sum())
        with self._lock:
            if pipeline not in self._counts:
                self._counts[pipeline] = np.zeros(len(self._le), dtype=np.int64)
                self._sums[pipeline] = 0.0
            self._counts[pipeline] += added
            self._sums[pipeline] += total

    def describe(self) -> Iterable[Metric]:
        """Name the family without data, so the registry can refuse duplicates."""
        return [HistogramMetricFamily(self.name, self.documentation, labels=["pipeline"])]

    def collect(self) -> Iterable[Metric]:
        """Return the cumulative buckets, ``_sum`` and ``_count`` of every pipeline."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=["pipeline"])
        with self._lock:
            snapshot = {p: (c.cumsum(), self._sums[p]) for p, c in self._counts.items()}
        for pipeline, (cumulative, total) in snapshot.items():
            buckets = [(le, float(n)) for le, n in zip(self._le, cumulative, strict=True)]
            family.add_metric([pipeline], buckets, total)
        return [family]


class CheckpointAge(Collector):
    """Seconds since each pipeline's last checkpoint, computed when Prometheus scrapes.

    A pipeline that has not checkpointed yet has no sample.

    Examples
    --------
    >>> now = [1000.0]
    >>> registry = CollectorRegistry()
    >>> age = CheckpointAge(clock=lambda: now[0], registry=registry)
    >>> age.checkpointed("fraud", 990.0)
    >>> registry.get_sample_value("streamlearn_checkpoint_age_seconds", {"pipeline": "fraud"})
    10.0
    """

    name = "streamlearn_checkpoint_age_seconds"
    documentation = "Seconds since the pipeline's last model checkpoint was written."

    def __init__(
        self, clock: Callable[[], float] = time.time, registry: CollectorRegistry | None = None
    ) -> None:
        self.clock = clock
        self._written_at: dict[str, float] = {}
        if registry is not None:
            registry.register(self)

    def checkpointed(self, pipeline: str, written_at: float) -> None:
        """Record that ``pipeline`` wrote a checkpoint at ``written_at`` (epoch seconds)."""
        self._written_at[pipeline] = written_at

    def describe(self) -> Iterable[Metric]:
        """Name the family without data, so the registry can refuse duplicates."""
        return [GaugeMetricFamily(self.name, self.documentation, labels=["pipeline"])]

    def collect(self) -> Iterable[Metric]:
        """Return one age sample per pipeline that has checkpointed."""
        family = GaugeMetricFamily(self.name, self.documentation, labels=["pipeline"])
        now = self.clock()
        for pipeline, written_at in list(self._written_at.items()):
            family.add_metric([pipeline], max(0.0, now - written_at))
        return [family]


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
    >>> hooks.on_invalid("fraud", "bad_json", 2)
    >>> hooks.on_predictions("fraud", np.array([0.004, 0.02, 0.3]))
    >>> registry.get_sample_value("streamlearn_events_consumed_total", {"pipeline": "fraud"})
    100.0
    >>> registry.get_sample_value("streamlearn_events_invalid_total",
    ...                           {"pipeline": "fraud", "reason": "bad_json"})
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
        self.batch_size = gauge("streamlearn_batch_size", "The batcher's current target size.")
        self.lag = gauge("streamlearn_consumer_lag", "Messages behind, by partition.", "partition")
        self.model_score = gauge(
            "streamlearn_model_score", "Rolling prequential model score, by metric.", "metric"
        )
        self.model_version = gauge("streamlearn_model_version", "Version of the serving model.")
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
        self.checkpoint_age = CheckpointAge(clock, registry=self.registry)

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, ["pipeline", *labels], registry=self.registry)

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(name, documentation, ["pipeline", *labels], registry=self.registry)

    def on_consumed(self, pipeline: str, n: int) -> None:  # noqa: D102
        self.consumed.labels(pipeline).inc(n)

    def on_invalid(self, pipeline: str, reason: str, n: int) -> None:  # noqa: D102
        self.invalid.labels(pipeline, reason).inc(n)

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

    def on_checkpoint(self, pipeline: str, written_at: float) -> None:  # noqa: D102
        self.checkpoint_age.checkpointed(pipeline, written_at)

    def on_ready(self, ready: bool) -> None:  # noqa: D102
        self.ready = ready


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` for one process on a daemon thread.

    ``/healthz`` answers 200 while the process runs; ``/readyz`` answers 200 once the hooks
    were told the process is ready and 503 otherwise.

    Examples
    --------
    >>> from urllib.request import urlopen
    >>> hooks = PrometheusHooks()
    >>> hooks.on_consumed("fraud", 3)
    >>> with MetricsServer(hooks, "127.0.0.1", 0) as server:
    ...     page = urlopen(f"http://127.0.0.1:{server.port}/metrics").read().decode()
    >>> 'streamlearn_events_consumed_total{pipeline="fraud"} 3.0' in page
    True
    """

    def __init__(self, hooks: PrometheusHooks, host: str, port: int) -> None:
        self.hooks = hooks
        self.host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port being served (the one the system chose when 0 was asked for)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        """Bind and start serving; raise :class:`ServiceUnavailable` if the port is taken."""
        if self._server is not None:
            return self
        try:
            server = ThreadingHTTPServer((self.host, self._requested_port), _handler(self.hooks))
        except OSError as exc:
            raise ServiceUnavailable(_bind_failure(self.host, self._requested_port, exc)) from None
        server.daemon_threads = True
        self._server = server
        # A short poll interval only makes stop() quick; serving does not depend on it.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="streamlearn-metrics",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        what = f"port {port} on {host} is already in use by another process"
    else:
        what = f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    return (
        f"metrics server: {what}. Choose another port with `metrics.port` in the "
        "configuration or the STREAMLEARN_METRICS_PORT environment variable."
    )


def _handler(hooks: PrometheusHooks) -> type[BaseHTTPRequestHandler]:
    class MetricsRequestHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, content_type, encode(hooks.registry))
            elif path == "/healthz":
                self._reply(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/readyz":
                ready = hooks.ready
                body = b"ready\n" if ready else b"not ready\n"
                self._reply(200 if ready else 503, "text/plain; charset=utf-8", body)
            else:
                body = b"not found; try /metrics, /healthz or /readyz\n"
                self._reply(404, "text/plain; charset=utf-8", body)

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Prometheus scrapes every few seconds; one stderr line per scrape is noise.
            pass

    return MetricsRequestHandler
