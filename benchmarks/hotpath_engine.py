"""(d) streamlearn itself: the real :class:`~streamlearn.app.App`, default fraud configuration.

Run in its own process (see :mod:`benchmarks.hotpath_child`). The configuration is the packaged
one ``streamlearn run examples/fraud/config.yaml`` uses, pointed at the benchmark's topic, group
and a Redis prefix of its own (so no run restores another's checkpoint); only the batch-size-1
run changes ``batching``. Served scores are recorded by :class:`benchmarks.recording.BenchmarkApp`
except in the memory run, where the plain App runs so that recording does not grow the RSS.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.hotpath_child import Read
from benchmarks.retention_e2e import rss_mb
from streamlearn.config import AppConfig, parse_config
from streamlearn.demo_tasks import DEMO_TASKS, demo_config
from streamlearn.hooks import PipelineHooks

PIPELINE = "fraud"


@dataclass(frozen=True, slots=True)
class EngineRun:
    """How one engine run is set up and what it records.

    >>> EngineRun("hp-d").batch_size is None, EngineRun("hp-d1", batch_size=1).batch_size
    (True, 1)
    """

    prefix: str  # Redis prefix: keys, checkpoints and the replica lock of this run alone
    batch_size: int | None = None  # min_size == max_size == this; None keeps the default
    record_served: bool = True
    keep_latencies: bool = False
    rss_every: int = 0  # record RSS each time this many more events were predicted (0: never)
    client: str = "kafka-python"  # kafka.client: the source's library (d' is "confluent")


def engine_config(read: Read, run: EngineRun) -> AppConfig:
    """The packaged fraud configuration pointed at ``read``'s topic and group, ``run``'s prefix.

    >>> read = Read("127.0.0.1:9092", "redis://127.0.0.1:6379/0", "t", "g", 10)
    >>> cfg = engine_config(read, EngineRun("hp-d1", batch_size=1))
    >>> p = cfg.pipelines[0]
    >>> p.source.topic, p.source.group, cfg.redis.prefix, p.batching.min_size, p.batching.max_size
    ('t', 'g', 'hp-d1', 1, 1)
    >>> engine_config(read, EngineRun("hp-d")).pipelines[0].batching.max_size
    2048
    >>> engine_config(read, EngineRun("hp-d2", client="confluent")).kafka.client
    'confluent'
    """
    fraud = demo_config(DEMO_TASKS["fraud"], read.bootstrap, read.redis_url, metrics_port=0)
    base = fraud.model_dump(by_alias=True)
    base["redis"] = {**base["redis"], "prefix": run.prefix}
    base["kafka"] = {**base["kafka"], "client": run.client}
    pipeline = base["pipelines"][0]
    pipeline["source"] = {**pipeline["source"], "topic": read.topic, "group": read.group}
    pipeline["outputs"] = {**pipeline["outputs"], "dead_letter_topic": f"{read.topic}.dlq"}
    if run.batch_size is not None:
        n = run.batch_size
        pipeline["batching"] = {
            **pipeline["batching"],
            "min_size": n,
            "max_size": n,
            "initial_size": None,
        }
    return parse_config(base, env={})


class EngineHooks(PipelineHooks):
    """Timing, batch sizes, stage times, RSS marks and (optionally) every latency of a run.

    >>> hooks = EngineHooks(keep_latencies=True, rss_every=2)
    >>> hooks.on_consumed("fraud", 3)
    >>> hooks.on_predictions("fraud", np.array([0.01, 0.02, 0.03]))
    >>> hooks.predicted, len(hooks.latencies), [m["events"] for m in hooks.rss_marks]
    (3, 1, [3])
    """

    def __init__(self, keep_latencies: bool = False, rss_every: int = 0) -> None:
        self.keep_latencies = keep_latencies
        self.rss_every = rss_every
        self.first_consumed: float | None = None
        self.last_written: float | None = None
        self.consumed = self.predicted = self.learned = self.drifts = 0
        self.sizes: list[int] = []
        self.stage_s: dict[str, float] = {}
        self.latencies: list[np.ndarray] = []
        self.rss_marks: list[dict[str, float]] = []
        self._next_mark = rss_every

    def on_consumed(self, pipeline: str, n: int) -> None:
        if self.first_consumed is None:
            self.first_consumed = time.monotonic()
        self.consumed += n

    def on_predictions(self, pipeline: str, latencies_s: np.ndarray) -> None:
        self.last_written = time.monotonic()
        self.predicted += len(latencies_s)
        if self.keep_latencies:
            self.latencies.append(np.asarray(latencies_s, dtype=np.float64).copy())
        if self.rss_every and self.predicted >= self._next_mark:
            self.rss_marks.append({"events": self.predicted, "rss_mb": round(rss_mb(), 1)})
            self._next_mark += self.rss_every

    def on_learned(self, pipeline: str, n: int) -> None:
        self.learned += n

    def on_drift(self, pipeline: str) -> None:
        self.drifts += 1

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:
        self.sizes.append(size)

    def on_stage(self, pipeline: str, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds


def run_engine(ready: Any, read: Read, run: EngineRun) -> dict[str, Any]:
    """Run the App over ``read`` until ``read.events`` were consumed (or a cap); its figures."""
    from benchmarks.recording import BenchmarkApp
    from streamlearn.app import App

    rss_start = rss_mb()
    hooks = EngineHooks(run.keep_latencies, run.rss_every)
    cls = BenchmarkApp if run.record_served else App
    app = cls(engine_config(read, run), observers=(hooks,))
    answer: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: answer.update(stats=app.run(max_events=read.events)), name="app-run"
    )
    began = time.monotonic()
    worker.start()
    _watch(app, worker, hooks, read, ready, began)
    worker.join()
    app.close()
    if "stats" not in answer:
        raise RuntimeError("the App stopped without returning its statistics (see the log)")
    first = hooks.first_consumed or began
    seconds = (hooks.last_written or first) - first
    sizes = np.asarray(hooks.sizes or [0])
    figures: dict[str, Any] = {
        "events": hooks.predicted,
        "consumed": hooks.consumed,
        "learned": hooks.learned,
        "drifts_detected": hooks.drifts,
        "batches": len(hooks.sizes),
        "startup_s": round(first - began, 2),
        "seconds": round(seconds, 3),
        "events_per_s": round(hooks.predicted / seconds, 1) if seconds > 0 else None,
        "mean_batch": round(float(sizes.mean()), 1),
        "batch_p10_p50_p90_max": [int(x) for x in np.percentile(sizes, [10, 50, 90, 100])],
        "stage_us_per_event": {
            k: round(v / max(hooks.predicted, 1) * 1e6, 1) for k, v in hooks.stage_s.items()
        },
        "rss_mb": {"start": round(rss_start, 1), "end": round(rss_mb(), 1)},
        "rss_peak_mb": round(rss_mb("VmHWM"), 1),
        "rss_marks": hooks.rss_marks,
    }
    if run.keep_latencies:
        figures["latencies_s"] = np.concatenate(hooks.latencies) if hooks.latencies else np.zeros(0)
    if isinstance(app, BenchmarkApp):
        scores, labels = app.served(PIPELINE)
        figures["scores"], figures["labels"] = scores, labels
    return figures


def _watch(
    app: Any, worker: threading.Thread, hooks: EngineHooks, read: Read, ready: Any, began: float
) -> None:
    """Say ready once the partitions are held; stop the App at its time cap or when idle."""
    signalled = False
    while worker.is_alive():
        worker.join(0.05)
        now = time.monotonic()
        # The App builds KafkaSources; the Source protocol does not name assignment_ready.
        if not signalled and app.runners and all(r.source.assignment_ready() for r in app.runners):
            ready()
            signalled = True
        first = hooks.first_consumed
        capped = (
            read.time_cap_s is not None and first is not None and now - first >= read.time_cap_s
        )
        idle = (
            read.idle_stop_s is not None
            and first is not None
            and now - (hooks.last_written or first) > read.idle_stop_s
        )
        if capped or idle or now - began > read.timeout_s:
            app.stop.set()
