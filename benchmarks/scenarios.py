"""Runs one batching variant through one scenario against the shared broker and Redis.

The processor (the real :class:`~streamlearn.app.App`) runs on a thread of this process; the
load comes from the generator process. Each run gets a fresh topic and consumer group.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.analysis import auc_curve, drift_recovery, latency_summary
from benchmarks.load import LoadGenerator, Phase, Produced, phases_events
from benchmarks.recording import BenchmarkApp, RecordingHooks
from benchmarks.variants import LATENCY_TARGET_MS, Variant, variant_config
from connectors.kafka import ensure_topics

_RUN_IDS = itertools.count(1)


@dataclass(frozen=True)
class Scenario:
    """A load shape: phases of (rate, seconds); ``prefill`` produces it all before processing.

    ``drain_s`` is how long the processor may keep catching up after the last event was sent;
    a variant still behind then is stopped and its unprocessed events count as late.
    """

    name: str
    kind: str  # steady | spike | drift | max_throughput
    phases: tuple[Phase, ...]
    unpaced_events: int = 0
    drift_at: int | None = None
    drift_horizon: int = 0
    prefill: bool = False
    drain_s: float = 3.0
    rate: float | None = None  # the steady rate, for tables

    @property
    def events(self) -> int:
        """How many events the scenario sends."""
        return phases_events(self.phases, self.unpaced_events)


@dataclass
class Services:
    """The shared broker and Redis, and the generator process feeding them."""

    bootstrap: str
    redis_url: str
    load: LoadGenerator
    prepared: dict[str, Any] = field(default_factory=dict)

    def prepare(self, events: int, drift_at: int | None) -> None:
        """Make the generator hold at least ``events`` events of the stream with ``drift_at``."""
        if self.prepared.get("drift_at", -1) != drift_at or self.prepared["events"] < events:
            self.load.prepare(events, drift_at)
            self.prepared = {"events": events, "drift_at": drift_at}


def run_variant(variant: Variant, scenario: Scenario, services: Services) -> dict[str, Any]:
    """Run ``variant`` through ``scenario``; return its measured figures."""
    topic = f"bench-{next(_RUN_IDS):03d}-{scenario.name}-{variant.name}"
    ensure_topics(services.bootstrap, [topic], partitions=1)
    services.prepare(scenario.events, scenario.drift_at)
    produced: Produced | None = None
    if scenario.prefill:
        produced = services.load.produce(topic, scenario.phases, scenario.unpaced_events)
    hooks = RecordingHooks()
    app = BenchmarkApp(
        variant_config(variant, services.bootstrap, services.redis_url, topic), observers=(hooks,)
    )
    processor = threading.Thread(
        target=app.run, kwargs={"max_events": scenario.events}, name=f"processor-{topic}"
    )
    processor.start()
    _wait_until_assigned(app, processor)
    if produced is None:
        services.load.start_produce(topic, scenario.phases, scenario.unpaced_events)
        produced = services.load.wait()
    processor.join(scenario.drain_s)
    app.stop.set()
    processor.join()
    return _figures(variant, scenario, produced, hooks, app)


def _wait_until_assigned(app: BenchmarkApp, processor: threading.Thread) -> None:
    # Latency counts from the record's send time: send only once the consumer holds its partition.
    deadline = time.monotonic() + 60
    while processor.is_alive() and time.monotonic() < deadline:
        # The App builds KafkaSources; the runner's Source protocol does not name this method.
        if app.runners and all(r.source.assignment_ready() for r in app.runners):  # type: ignore[attr-defined]
            return
        time.sleep(0.05)
    raise RuntimeError("the processor did not get its partition within 60 s")


def _figures(
    variant: Variant,
    scenario: Scenario,
    produced: Produced,
    hooks: RecordingHooks,
    app: BenchmarkApp,
) -> dict[str, Any]:
    busy_s = (hooks.last_written_at or 0.0) - (hooks.first_consumed_at or 0.0)
    figures: dict[str, Any] = {
        "variant": variant.name,
        "scenario": scenario.name,
        "produced": produced.events,
        "offered_rate": round(produced.rate, 1),
        "processed": hooks.predicted,
        "throughput": round(hooks.predicted / busy_s, 1) if busy_s > 0 else 0.0,
        "batches": len(hooks.batch_sizes),
        "mean_batch": round(hooks.predicted / max(1, len(hooks.batch_sizes)), 1),
        "max_batch": max(hooks.batch_sizes, default=0),
        "batch_size_p10_p50_p90": [
            int(x) for x in np.percentile(hooks.batch_sizes or [0], [10, 50, 90])
        ],
        "triggers": dict(hooks.triggers),
        "drifts_detected": len(hooks.drifts),
        "stage_us_per_event": {
            stage: round(seconds / max(1, hooks.predicted) * 1e6, 1)
            for stage, seconds in hooks.stage_s.items()
        },
    }
    if not scenario.prefill:
        figures.update(latency_summary(hooks.latencies_s(), produced.events, LATENCY_TARGET_MS))
    scores, labels = app.served(app.config.pipelines[0].name)
    if scenario.drift_at is not None and len(scores) > scenario.drift_at:
        recovery = drift_recovery(scores, labels, scenario.drift_at, scenario.drift_horizon)
        figures.update(
            pre_drift_auc=recovery.pre_drift_auc,
            recovered_after=recovery.recovered_after,
            drift_loss=recovery.loss,
            drift_horizon=recovery.horizon,
            post_drift_curve=recovery.curve,
            drift_detected_at=hooks.drifts,
        )
    if len(scores):
        figures["auc_curve"] = auc_curve(scores, labels)
    return figures
