"""``streamlearn demo``: the whole product on one machine with nothing else installed.

Starts the embedded broker and Redis, streams synthetic fraud events into Kafka at a steady
rate while the processor scores them, shows progress live, and leaves a JSON report.
"""

from __future__ import annotations

import importlib.resources
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamlearn.config import AppConfig, parse_config
from streamlearn.errors import StreamlearnError
from streamlearn.progress import ProgressHooks, ProgressSnapshot


def demo_config(bootstrap: str, redis_url: str, metrics_port: int) -> AppConfig:
    """The packaged fraud configuration, pointed at the embedded services."""
    text = importlib.resources.files("streamlearn.tasks").joinpath("fraud.yaml").read_text()
    data = yaml.safe_load(text)
    data["kafka"] = {
        **data.get("kafka", {}),
        "bootstrap": bootstrap,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
    }
    data["redis"] = {**data.get("redis", {}), "url": redis_url}
    data["metrics"] = {"host": "127.0.0.1", "port": metrics_port}
    return parse_config(data, env={})


def run_demo(
    *,
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
        config = demo_config(broker.bootstrap, redis_server.url, port)
        progress = ProgressHooks()
        app = App(config, observers=(progress,))
        console.print(
            f"broker {broker.bootstrap}, redis {redis_server.url}, "
            f"metrics http://127.0.0.1:{port}/metrics"
        )
        # Every message produced is consumed: valid events plus one malformed per 1000.
        total = events + events // 1000
        processor = _Worker("processor", lambda: app.run(max_events=total), app.stop)
        generator = _Worker(
            "generator", lambda: _generate(broker.bootstrap, events, rate, drift_at, app), app.stop
        )  # supervises a generator process, so producing does not share the processor's GIL
        started = time.monotonic()
        with stop_on_signals(app.stop):
            processor.start()
            _wait_until_ready(progress, processor)
            generator.start()
            _watch(progress, processor, console, total)
        app.close()
        for worker in (processor, generator):
            worker.join(timeout=30)
            if worker.error is not None:
                raise worker.error
        report = _report(progress, events, rate, time.monotonic() - started)
        report_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        _summary(console, report, report_path)
        _show_prediction(console, config)
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


def _generate(bootstrap: str, events: int, rate: float, drift_at: int | None, app: Any) -> None:
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_produce, args=(bootstrap, events, rate, drift_at), name="generator", daemon=True
    )
    process.start()
    while process.is_alive():
        process.join(timeout=0.2)
        if app.stop.is_set():
            process.terminate()
            process.join(timeout=5)
            return
    if process.exitcode != 0:
        raise StreamlearnError(f"the event generator failed (exit code {process.exitcode})")


def _produce(bootstrap: str, events: int, rate: float, drift_at: int | None) -> None:
    from streamlearn.workloads import produce_workload

    # Ctrl-C is the demo's to handle: it stops this process once the processor has stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    produce_workload(
        "fraud",
        events=events,
        bootstrap=bootstrap,
        rate=rate,
        seed=7,
        drift_at=drift_at,
        partitions=2,
        malformed_every=1000,
    )


def _wait_until_ready(progress: ProgressHooks, processor: threading.Thread) -> None:
    # Start producing once the processor holds its partitions, so the latency the demo
    # reports is the processor's, not the consumer group's start-up.
    deadline = time.monotonic() + 60
    while processor.is_alive() and not progress.ready and time.monotonic() < deadline:
        time.sleep(0.1)


def _watch(progress: ProgressHooks, runner: threading.Thread, console: Console, total: int) -> None:
    with Live(_table(progress.snapshot(), total), console=console, refresh_per_second=4) as live:
        while runner.is_alive():
            runner.join(timeout=0.25)
            live.update(_table(progress.snapshot(), total))


def _table(s: ProgressSnapshot, total: int) -> Table:
    table = Table(title="streamlearn demo: fraud scoring", show_header=False)
    table.add_row("events consumed", f"{s.consumed:,} / {total:,}")
    table.add_row("events/s", f"{s.events_per_s:,.0f}")
    table.add_row("predictions written", f"{s.predicted:,}")
    table.add_row("dead-lettered", f"{s.invalid:,}")
    table.add_row("batch size", f"{s.batch_size}")
    table.add_row("p50 / p99 latency", f"{_ms(s.p50_ms)} / {_ms(s.p99_ms)}")
    auc = s.scores.get("auc")
    table.add_row("rolling AUC", "-" if auc is None else f"{auc:.3f}")
    table.add_row("drift detected", str(s.drifts))
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _report(progress: ProgressHooks, events: int, rate: float, wall_s: float) -> dict[str, Any]:
    s = progress.snapshot()
    return {
        "events_generated": events,
        "generator_rate": rate,
        "wall_seconds": round(wall_s, 2),
        "invalid_by_reason": dict(progress.invalid_by_reason),
        **asdict(s),
    }


def _summary(console: Console, report: dict[str, Any], path: Path) -> None:
    console.print(
        f"\n[bold]done[/]: {report['predicted']:,} predictions, {report['invalid']:,} "
        f"dead-lettered, {report['events_per_s']:,.0f} events/s, p99 latency "
        f"{_ms(report['p99_ms'])}, rolling AUC {report['scores'].get('auc', float('nan')):.3f}"
    )
    console.print(f"report written to {path}")
    console.print(
        "against your own Redis: STREAMLEARN_REDIS_URL=redis://HOST:6379/0 "
        "streamlearn query fraud card-00001"
    )


def _show_prediction(console: Console, config: AppConfig) -> None:
    from connectors.redis_store import PredictionStore, connect

    client = connect(config.redis.url, timeout_s=5)
    store = PredictionStore(client, config.redis.prefix, "fraud", ttl_s=0)
    entity = "card-00001"
    found = store.read(entity)
    console.print(f"`streamlearn query fraud {entity}` gave: {found}")
