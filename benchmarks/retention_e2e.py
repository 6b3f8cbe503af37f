"""The retention pipeline end to end on the real broker and Redis, from a backlog.

A producer process writes the stream (events, and labels when they become known, each with its
event time as the record timestamp) to an events topic and a labels topic of one partition each.
Then a processor process runs the real :class:`streamlearn.app.App` with the retention
configuration (adaptive batching, delayed labels, per-customer aggregates in Redis) until it has
consumed every message. Each runs in its own process, so the processor's memory is its own and
producing never shares its GIL.

Throughput is messages consumed over the time from the first message consumed to the last batch
closed (start-up, the group join and the final checkpoint are left out). Memory: the processor's
RSS before it starts, at its first batch and at the end (and its peak), sampled as it runs, and
Redis ``used_memory`` with the number of pending-label and aggregate-state keys.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.retention_stream import EVENTS_TOPIC, LABELS_TOPIC, StreamSpec, app_config
from streamlearn.evaluation import PrequentialEvaluator
from streamlearn.hooks import PipelineHooks

_SAMPLE_S = 0.5  # how often RSS and Redis memory are sampled while the processor runs
_TIMEOUT_S = 900


def run_end_to_end(
    spec: StreamSpec,
    bootstrap: str,
    redis_url: str,
    topic: str,
    profile: Path | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Produce ``spec``'s stream to ``topic`` (and ``topic``-labels), then process it; figures.

    ``checkpoint`` overrides the pipeline's checkpoint settings (default: the defaults).
    """
    produced = _in_child(_produce, spec, bootstrap, topic)
    processed = _in_child(
        _process, produced["messages"], bootstrap, redis_url, topic, checkpoint, profile=profile
    )
    return {"produced": produced, **processed}


def _in_child(target: Any, *args: Any, profile: Path | None = None) -> dict[str, Any]:
    """Run ``target(*args)`` in a fresh process; with ``profile``, sampled by py-spy into it."""
    context = mp.get_context("spawn")  # never fork a process that holds Kafka threads
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_reply, args=(child, target, *args), daemon=True)
    process.start()
    child.close()
    spy = _spy(process.pid or 0, profile) if profile is not None else None
    if not parent.poll(_TIMEOUT_S):
        process.terminate()
        raise TimeoutError(f"{target.__name__} gave no answer within {_TIMEOUT_S} s")
    try:
        kind, answer = parent.recv()
    except EOFError:
        process.join(5)
        raise RuntimeError(f"{target.__name__} died (exit code {process.exitcode})") from None
    process.join(30)
    if spy is not None:
        spy.wait(60)
    if kind == "error":
        raise RuntimeError(f"{target.__name__} failed: {answer}")
    result: dict[str, Any] = answer
    return result


def _reply(conn: Connection, target: Any, *args: Any) -> None:
    try:
        conn.send(("ok", target(*args)))
    except BaseException as error:  # the parent reports it
        import traceback

        conn.send(("error", f"{error!r}\n{traceback.format_exc()}"))


# --- producer process -------------------------------------------------------------------------


def _produce(spec: StreamSpec, bootstrap: str, topic: str) -> dict[str, Any]:
    from benchmarks.retention_stream import build_stream
    from connectors.kafka import KafkaSink, ensure_topics, wait_for_broker

    stream = build_stream(spec)
    topics = {EVENTS_TOPIC: topic, LABELS_TOPIC: f"{topic}-labels"}
    wait_for_broker(bootstrap, timeout_s=60)
    ensure_topics(bootstrap, sorted(topics.values()), partitions=1)
    started = time.monotonic()
    with KafkaSink(bootstrap, client_id="retention-benchmark-load") as sink:
        for i, (kind, key, value, ts) in enumerate(stream, 1):
            sink.send(topics[kind], value, key=key, timestamp_ms=ts)
            if i % 20_000 == 0:
                sink.flush(timeout_s=120)
        sink.flush(timeout_s=120)
    counts = Counter(kind for kind, *_ in stream)
    return {
        "messages": len(stream),
        "events": counts[EVENTS_TOPIC],
        "labels": counts[LABELS_TOPIC],
        "seconds": round(time.monotonic() - started, 1),
        "bytes": sum(len(value) for _, _, value, _ in stream),
    }


# --- processor process ------------------------------------------------------------------------


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Timing(PipelineHooks):
    """When the first message was consumed and each batch closed; what the run did."""

    def __init__(self) -> None:
        self.first_consumed: float | None = None
        self.first_batch_rss_mb: float | None = None
        self.last_closed = 0.0
        self.consumed = self.predicted = self.learned = 0
        self.sizes: list[int] = []
        self.stage_s: dict[str, float] = {}
        self.unmatched: Counter[str] = Counter()
        self.drifts = 0

    def on_consumed(self, pipeline: str, n: int) -> None:
        if self.first_consumed is None:
            self.first_consumed = time.monotonic()
        self.consumed += n

    def on_predictions(self, pipeline: str, latencies_s: np.ndarray) -> None:
        self.predicted += len(latencies_s)

    def on_learned(self, pipeline: str, n: int) -> None:
        self.learned += n

    def on_stage(self, pipeline: str, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    def on_labels_unmatched(self, pipeline: str, reason: str, n: int) -> None:
        self.unmatched[reason] += n

    def on_drift(self, pipeline: str) -> None:
        self.drifts += 1

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:
        self.last_closed = time.monotonic()
        self.sizes.append(size)
        if self.first_batch_rss_mb is None:
            self.first_batch_rss_mb = rss_mb()


class KeepServed(PrequentialEvaluator):
    """The prequential evaluator, keeping every served score and its label as they come."""

    def __init__(self, window: int = 10_000, threshold: float = 0.5) -> None:
        super().__init__(window=window, threshold=threshold)
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self.kept.append((np.asarray(scores, dtype=float).copy(), np.asarray(labels).copy()))
        super().update(scores, labels)


class Sampler(threading.Thread):
    """Samples the processor's RSS and Redis memory every ``_SAMPLE_S`` while it runs."""

    def __init__(self, redis_url: str, timing: Timing) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.timing = timing
        self.samples: list[dict[str, float]] = []
        self.done = threading.Event()
        self.began = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(_SAMPLE_S):
            self.samples.append(self.sample())

    def sample(self) -> dict[str, float]:
        """One sample: seconds since start, messages consumed, RSS and Redis memory (MiB)."""
        return {
            "s": round(time.monotonic() - self.began, 2),
            "consumed": self.timing.consumed,
            "rss_mb": round(rss_mb(), 1),
            "redis_mb": round(int(self.client.info("memory")["used_memory"]) / 2**20, 1),
        }


def _process(
    messages: int,
    bootstrap: str,
    redis_url: str,
    topic: str,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import logging

    from streamlearn.app import App

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    rss_start = rss_mb()
    prefix = f"bench{int(time.time())}"
    config = app_config(bootstrap, redis_url, topic, prefix, checkpoint)
    timing = Timing()
    evaluators: list[KeepServed] = []
    joiners: Counter[str] = Counter()  # which message made each join: the event or the label

    class BenchApp(App):
        def _runner(self, *args: Any, **kwargs: Any) -> Any:
            runner = super()._runner(*args, **kwargs)
            task: Any = runner.pipeline
            evaluator = KeepServed(threshold=task.config.model.threshold)
            task.evaluator = evaluator
            evaluators.append(evaluator)
            task.learn = _counting_joiners(task.learn, topic, joiners)
            return runner

    sampler = Sampler(redis_url, timing)
    sampler.start()
    started = time.monotonic()
    with BenchApp(config, observers=(timing,)) as app:
        stats = app.run(max_events=messages)["retention"]
    returned = time.monotonic()
    sampler.done.set()
    sampler.join()
    final = sampler.sample()
    first = timing.first_consumed or started
    seconds = timing.last_closed - first
    memory = sampler.client.info("memory")
    keys = _key_counts(sampler.client, prefix)
    return {
        "consumed": stats.consumed,
        "batches": stats.batches,
        "predicted": timing.predicted,
        "learned": timing.learned,
        "labels_unmatched": dict(timing.unmatched),
        "drifts_detected": timing.drifts,
        "startup_s": round(first - started, 2),
        "processing_s": round(seconds, 2),
        "shutdown_s": round(returned - timing.last_closed, 2),
        "messages_per_s": round(timing.consumed / seconds) if seconds > 0 else None,
        "events_per_s": round(timing.predicted / seconds) if seconds > 0 else None,
        "mean_batch": round(float(np.mean(timing.sizes)), 1) if timing.sizes else 0.0,
        "batch_sizes": _size_summary(timing.sizes),
        "stage_us_per_message": {
            k: round(v / max(timing.consumed, 1) * 1e6, 1) for k, v in timing.stage_s.items()
        },
        "rss_mb": {
            "start": round(rss_start, 1),
            "first_batch": round(timing.first_batch_rss_mb or float("nan"), 1),
            "end": final["rss_mb"],
            "peak": round(rss_mb("VmHWM"), 1),
        },
        "redis": {
            "used_memory_mb": round(int(memory["used_memory"]) / 2**20, 1),
            "used_memory_peak_mb": round(int(memory["used_memory_peak"]) / 2**20, 1),
            "keys": keys,
            "bytes_per_pending_key": round(int(memory["used_memory"]) / keys["pending"])
            if keys["pending"]
            else None,
        },
        "memory_samples": _thin(sampler.samples, 40),
        "served": _served(evaluators),
        "joins_label_first": joiners["event"],
        "joins_event_first": joiners["label"],
    }


def _counting_joiners(learn: Any, topic: str, joiners: Counter[str]) -> Any:
    """``learn``, counting each join by whose message made it (an event: its label came first)."""

    def counted(scored: Any, keep: Any = None) -> Any:
        for join in scored.exchange.joins if scored.exchange is not None else ():
            joiners["event" if join.joiner.startswith(f"{topic}/") else "label"] += 1
        return learn(scored, keep)

    return counted


def _spy(pid: int, path: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling process ``pid`` until it exits, as collapsed stacks per thread."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        raise RuntimeError(f"--profile needs py-spy beside {sys.executable}: pip install py-spy")
    command = [str(spy), "record", "--pid", str(pid)]
    command += ["--rate", "200", "--nonblocking", "--threads", "--format", "raw"]
    return subprocess.Popen(
        [*command, "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _key_counts(client: Any, prefix: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        parts = key.decode().split(":")
        counts[parts[2] if len(parts) > 2 else "other"] += 1
    return {"pending": counts.pop("pending", 0), **dict(counts)}


def _size_summary(sizes: list[int]) -> dict[str, int]:
    if not sizes:
        return {}
    a = np.asarray(sizes)
    return {
        "min": int(a.min()),
        "p50": int(np.percentile(a, 50)),
        "max": int(a.max()),
        "at_max_share_pct": round(100 * float((a == a.max()).mean())),
    }


def _thin(samples: list[dict[str, float]], keep: int) -> list[dict[str, float]]:
    step = max(1, len(samples) // keep)
    return samples[::step]


def _served(evaluators: list[KeepServed]) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    pairs = [p for e in evaluators for p in e.kept]
    if not pairs:
        return {"labels": 0}
    scores = np.concatenate([s for s, _ in pairs])
    labels = np.concatenate([y for _, y in pairs]).astype(int)
    auc = float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None
    return {"labels": len(labels), "positives": int(labels.sum()), "auc": auc}
