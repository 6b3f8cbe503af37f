"""Custom Prometheus collectors: a histogram fed whole arrays, and an age computed at scrape time.

Used by :class:`connectors.prometheus.PrometheusHooks`; the per-event observe of the client's own
histogram costs microseconds per event, this costs one numpy call per batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


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
