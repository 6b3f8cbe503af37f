"""``streamlearn demo``: the whole product on one machine with nothing else installed.

Starts the embedded broker and Redis, streams a synthetic workload (fraud transactions, or
customer activity with churn labels 30 days later) into Kafka at a steady rate while the
processor scores it, shows progress live, and leaves a JSON report, the run record and its
HTML report. What differs per task is in :mod:`streamlearn.demo_tasks`.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live

from streamlearn.config import AppConfig
from streamlearn.demo_tasks import DemoProgress, DemoTask, demo_config, ms, progress_table
from streamlearn.errors import StreamlearnError
from streamlearn.run_record import RunRecorder

__all__ = ["run_demo"]


def run_demo(
    *,
    task: DemoTask,
    events: int,
    rate: float,
    drift_at: int | None,
    metrics_port: int,
    report_path: Path,
    console: Console,
) -> dict[str, Any]:
    """Run the demo end to end and return (and write) its report."""
    from connectors.embedded import EmbeddedBroker, EmbeddedRedis, free_port
    from streamlearn.app import App, stop_on_signals

    port = metrics_port or free_port()
    console.print("starting the embedded Kafka-compatible broker (Tansu) and Redis ...")
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_server:
        config = demo_config(task, broker.bootstrap, redis_server.url, port)
        progress = DemoProgress()
        recorder = RunRecorder.for_config(config)
        app = App(config, observers=(progress, recorder))
        console.print(
            f"broker {broker.bootstrap}, redis {redis_server.url}, "
            f"metrics http://127.0.0.1:{port}/metrics"
        )
        stream = _Stream(broker.bootstrap, task, events, rate, drift_at, _topics(config))
        stream.create_topics()
        # The processor runs until it has consumed every message the generator wrote.
        processor = _Worker("processor", app.run, app.stop)
        generator = _Worker("generator", lambda: stream.produce(app.stop), app.stop)
        started = time.monotonic()
        with stop_on_signals(app.stop):
            processor.start()
            _wait_until_ready(progress, processor)
            generator.start()
            _watch(task, progress, processor, stream, app.stop, console)
        app.close()
        for worker in (processor, generator):
            worker.join(timeout=30)
            if worker.error is not None:
                raise worker.error
        report = _report(task, progress, stream, time.monotonic() - started)
        report_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        _summary(console, task, report, report_path)
        _write_run_report(console, recorder, report_path)
        _show_prediction(console, config, task)
        return report


class _Worker(threading.Thread):
    """A daemon thread that keeps its exception and stops the demo when it fails."""

    def __init__(self, name: str, work: Callable[[], object], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.work = work
        self.stop_all = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # reported by the main thread after the live display
            self.error = exc
            self.stop_all.set()


class _Stream:
    """The generated stream: produced by a child process, then counted on the broker.

    ``total`` (the messages on the pipeline's topics: events, labels, malformed ones) is known
    once the generator is done; the processor is stopped when it has consumed that many.
    """

    def __init__(
        self,
        bootstrap: str,
        task: DemoTask,
        events: int,
        rate: float,
        drift_at: int | None,
        topics: list[str],
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = task.partitions
        self.args = (bootstrap, task.name, events, rate, drift_at, task.partitions, task.options)
        self.events, self.rate = events, rate
        self.topics = topics
        self.total: int | None = None

    def create_topics(self) -> None:
        from connectors.kafka import ensure_topics

        events, *labels = self.topics
        ensure_topics(self.bootstrap, [events], partitions=self.partitions)
        ensure_topics(self.bootstrap, labels)

    def produce(self, stop: threading.Event) -> None:
        # A process of its own, so producing does not share the processor's GIL.
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=_produce, args=self.args, name="generator", daemon=True)
        process.start()
        while process.is_alive():
            process.join(timeout=0.2)
            if stop.is_set():
                process.terminate()
                process.join(timeout=5)
                return
        if process.exitcode != 0:
            raise StreamlearnError(f"the event generator failed (exit code {process.exitcode})")
        from connectors.kafka import end_offsets

        self.total = sum(sum(end_offsets(self.bootstrap, t).values()) for t in self.topics)


def _topics(config: AppConfig) -> list[str]:
    pipeline = config.pipelines[0]
    return [pipeline.source.topic] + ([pipeline.labels.topic] if pipeline.labels else [])


def _produce(
    bootstrap: str,
    task: str,
    events: int,
    rate: float,
    drift_at: int | None,
    partitions: int,
    options: Mapping[str, Any],
) -> None:
    from streamlearn.workloads import produce_workload

    # Ctrl-C is the demo's to handle: it stops this process once the processor has stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    produce_workload(
        task,
        events=events,
        bootstrap=bootstrap,
        rate=rate,
        seed=7,
        drift_at=drift_at,
        partitions=partitions,
        malformed_every=1000,
        options=options,
    )


def _wait_until_ready(progress: DemoProgress, processor: threading.Thread) -> None:
    # Start producing once the processor holds its partitions, so the latency the demo
    # reports is the processor's, not the consumer group's start-up.
    deadline = time.monotonic() + 60
    while processor.is_alive() and not progress.ready and time.monotonic() < deadline:
        time.sleep(0.1)


def _watch(
    task: DemoTask,
    progress: DemoProgress,
    runner: threading.Thread,
    stream: _Stream,
    stop: threading.Event,
    console: Console,
) -> None:
    def table() -> Any:
        return progress_table(task, progress.snapshot(), progress.unmatched, stream.total)

    with Live(table(), console=console, refresh_per_second=4) as live:
        while runner.is_alive():
            runner.join(timeout=0.25)
            if stream.total is not None and progress.consumed >= stream.total:
                stop.set()  # all consumed: the processor finishes what it holds and stops
            live.update(table())


def _report(
    task: DemoTask, progress: DemoProgress, stream: _Stream, wall_s: float
) -> dict[str, Any]:
    s = progress.snapshot()
    report: dict[str, Any] = {
        "task": task.name,
        "events_generated": stream.events,
        "generator_rate": stream.rate,
        "messages_total": stream.total,
        "wall_seconds": round(wall_s, 2),
        "invalid_by_reason": dict(progress.invalid_by_reason),
    }
    if task.labels_apart:
        report["labels_unmatched_by_reason"] = dict(progress.unmatched_by_reason)
    return {**report, **asdict(s)}


def _summary(console: Console, task: DemoTask, report: dict[str, Any], path: Path) -> None:
    score = report["scores"].get(task.metric, float("nan"))
    if task.labels_apart:
        unmatched = sum(report["labels_unmatched_by_reason"].values())
        done = (
            f"{report['predicted']:,} predictions, {report['learned']:,} labels learned, "
            f"{unmatched:,} unmatched, {report['invalid']:,} dead-lettered, "
            f"{report['events_per_s']:,.0f} messages/s"
        )
    else:
        done = (
            f"{report['predicted']:,} predictions, {report['invalid']:,} dead-lettered, "
            f"{report['events_per_s']:,.0f} events/s"
        )
    console.print(
        f"\n[bold]done[/]: {done}, p99 latency {ms(report['p99_ms'])}, "
        f"{task.metric_title} {score:.3f}"
    )
    console.print(f"report written to {path}")
    console.print(
        "against your own Redis: STREAMLEARN_REDIS_URL=redis://HOST:6379/0 "
        f"streamlearn query {task.name} {task.entity}"
    )


def _write_run_report(console: Console, recorder: RunRecorder, report_path: Path) -> None:
    """The run record beside the JSON report (``-run.json``) and its HTML page (``.html``)."""
    from streamlearn.report import render_report

    record_path = report_path.with_name(f"{report_path.stem}-run.json")
    html_path = report_path.with_suffix(".html")
    record = recorder.record()
    record_path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    html_path.write_text(render_report(record, "streamlearn demo report"), encoding="utf-8")
    console.print(f"run record written to {record_path}")
    console.print(f"HTML report (open it in a browser) written to {html_path}")


def _show_prediction(console: Console, config: AppConfig, task: DemoTask) -> None:
    from connectors.redis_store import PredictionStore, connect

    client = connect(config.redis.url, timeout_s=5)
    pipeline = config.pipelines[0].name
    if task.name == "recommendation":
        _show_list(console, client, config.redis.prefix, pipeline, task.entity)
        return
    store = PredictionStore(client, config.redis.prefix, pipeline, ttl_s=0)
    entity, found = task.entity, store.read(task.entity)
    if found is None:  # a small stream may not reach that one: show any entity scored
        keys = client.scan_iter(match=f"{config.redis.prefix}:{pipeline}:pred:*", count=100)
        for key in keys:
            entity = key.decode().rsplit(":pred:", 1)[1]
            found = store.read(entity)
            break
    console.print(f"`streamlearn query {pipeline} {entity}` gave: {found}")


def _show_list(console: Console, client: Any, prefix: str, pipeline: str, user: str) -> None:
    from connectors.redis_recs import RecommendationStore

    store = RecommendationStore(client, prefix, pipeline, ttl_s=0)
    ranked = store.read(user)
    if not ranked:  # a small stream may not reach that one: show any user served
        for key in client.scan_iter(match=f"{prefix}:{pipeline}:recs:*", count=100):
            user = key.decode().rsplit(":recs:", 1)[1]
            ranked = store.read(user)
            break
    items = ", ".join(item for item, _ in ranked)
    console.print(f"`streamlearn query {pipeline} {user}` gave: {items or 'nothing'}")
