"""The ``streamlearn`` command: run, check, generate, query and demo.

Errors a user can cause are printed as one clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from streamlearn.cli_model import model_app
from streamlearn.config import load_config, service_defaults
from streamlearn.errors import StreamlearnError
from streamlearn.roles import ROLES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Keep machine-learning models learning from live business events.",
)
console = Console(stderr=True, soft_wrap=True)  # progress, errors
output = Console()  # results
app.add_typer(model_app, name="model")

ConfigPath = Annotated[Path, typer.Argument(help="The YAML configuration file.")]
LogFormat = Annotated[
    str, typer.Option(help="text: readable lines; json: one JSON object a line, for log shippers.")
]


@app.command()
def run(
    config: ConfigPath,
    max_events: Annotated[
        int | None, typer.Option(help="Stop cleanly after this many consumed messages.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING ...")] = "INFO",
    log_format: LogFormat = "text",
    record: Annotated[
        Path | None,
        typer.Option(
            help="Record what each pipeline did, second by second, into this JSON file at exit "
            "(for `streamlearn report`)."
        ),
    ] = None,
    role: Annotated[
        str,
        typer.Option(
            help="all: score and learn in this process. scorer: score with the newest "
            "published model, send what to learn to the learner, never learn (run many). "
            "learner: learn, checkpoint and publish the model (one per pipeline; another "
            "waits as its standby)."
        ),
    ] = "all",
) -> None:
    """Run the configured pipelines until stopped (SIGTERM/SIGINT end them cleanly)."""
    from streamlearn.app import App, stop_on_signals
    from streamlearn.run_record import RunRecorder

    if role not in ROLES:
        expected = ", ".join(ROLES)
        raise typer.BadParameter(f"expected one of {expected}, got {role!r}", param_hint="--role")
    _logging(log_level, log_format, role)
    settings = load_config(config)
    recorder = RunRecorder.for_config(settings) if record is not None else None
    observers = (recorder,) if recorder is not None else ()
    try:
        application = App(settings, observers=observers, role=role)
        with application, stop_on_signals(application.stop):
            results = application.run(max_events=max_events)
    finally:
        if recorder is not None and record is not None:
            recorder.write(record)
            console.print(f"run record written to {escape(str(record))}")
    for name, stats in results.items():
        output.print(
            f"[bold]{name}[/]: consumed {stats.consumed}, predicted {stats.predicted}, "
            f"invalid {stats.invalid}, learned {stats.learned} in {stats.batches} batches"
        )


@app.command()
def check(config: ConfigPath) -> None:
    """Validate a configuration without running it."""
    from streamlearn.tasks import build_task

    settings = load_config(config)
    for pipeline in settings.pipelines:
        task = build_task(pipeline)  # builds the model: a bad estimator or parameter shows here
        console.print(
            f"[green]ok[/] pipeline [bold]{pipeline.name}[/]: topic "
            f"{escape(pipeline.source.topic)}, {escape(task.describe())}"
        )


@app.command()
def generate(
    task: Annotated[
        str, typer.Argument(help="Which synthetic stream: fraud, retention or recommendation.")
    ],
    events: Annotated[
        int | None,
        typer.Option(
            help="How many events to write "
            "(default: fraud 10000, retention 2000000, recommendation 500000)."
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Events per second (default: as fast as possible).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    drift_at: Annotated[
        int | None, typer.Option(help="Event index where the pattern changes.")
    ] = None,
    topic: Annotated[
        str | None,
        typer.Option(
            help="Events topic (default: transactions, customer-activity, or interactions)."
        ),
    ] = None,
    labels_topic: Annotated[
        str | None, typer.Option(help="Retention: topic for the churn labels (churn-labels).")
    ] = None,
    customers: Annotated[
        int | None, typer.Option(help="Retention: how many customers (50000).")
    ] = None,
    label_delay_days: Annotated[
        float | None,
        typer.Option(help="Retention: churn horizon and label delay, in days of event time (30)."),
    ] = None,
    label_fraction: Annotated[
        float | None, typer.Option(help="Retention: share of events that get a label (0.2).")
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Recommendation: how many users (100000).")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Recommendation: how many items in the catalogue (20000).")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    partitions: Annotated[int, typer.Option(help="Partitions if the topic is created.")] = 1,
) -> None:
    """Write a synthetic event stream for TASK to Kafka.

    retention writes customer activity keyed by customer id, about 120 days of event time,
    and a churn label for a sample of events, each sent once known: label-delay-days of event
    time later. recommendation writes user-item interactions (view, cart, purchase, rating)
    keyed by user id, about 100000 a day of event time; drift-at rotates every user's tastes.
    A message's Kafka timestamp is its event time (a label's: when it is known).
    """
    from streamlearn.workloads import TASK_EVENTS, TASK_TOPICS, produce_workload

    defaults = service_defaults()
    options = {
        "customers": customers,
        "label_delay_days": label_delay_days,
        "label_fraction": label_fraction,
        "users": users,
        "items": items,
    }
    sent = produce_workload(
        task,
        events=events if events is not None else TASK_EVENTS.get(task, 10_000),
        bootstrap=bootstrap or defaults.kafka_bootstrap,
        topic=topic,
        labels_topic=labels_topic,
        rate=rate,
        seed=seed,
        drift_at=drift_at,
        partitions=partitions,
        options=options,
    )
    where = topic or TASK_TOPICS.get(task, task)
    console.print(f"wrote {sent} {task} events to {escape(where)}")


@app.command()
def query(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name, e.g. fraud.")],
    entity: Annotated[str, typer.Argument(help="Entity id (a card, a customer) or a user id.")],
    redis_url: Annotated[str | None, typer.Option(help="Redis URL.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Key prefix.")] = None,
) -> None:
    """Print what Redis holds for ENTITY: its latest prediction, or a user's list.

    For a recommendation pipeline, the user's current top-K items, best first, with scores.
    """
    import orjson

    from connectors.redis_recs import RecommendationStore
    from connectors.redis_store import PredictionStore, connect

    defaults = service_defaults()
    client = connect(redis_url or defaults.redis_url, timeout_s=5)
    key_prefix = prefix or defaults.redis_prefix
    found = PredictionStore(client, key_prefix, pipeline, ttl_s=0).read(entity)
    if found is not None:
        typer.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    ranked = RecommendationStore(client, key_prefix, pipeline, ttl_s=0).read(entity)
    if not ranked:
        console.print(f"no prediction or recommendations for {entity!r} in pipeline {pipeline!r}")
        raise typer.Exit(1)
    for rank, (item, score) in enumerate(ranked, start=1):
        typer.echo(f"{rank:>3}  {item}  {score:.6g}")


@app.command()
def demo(
    task: Annotated[
        str,
        typer.Option(
            help="fraud (card transactions), retention (churn risk) or recommendation "
            "(each user's top 10 items)."
        ),
    ] = "fraud",
    events: Annotated[
        int | None,
        typer.Option(
            help="Events in the synthetic stream (default: fraud 100000, retention 150000, "
            "recommendation 200000)."
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Events per second the generator produces (default: fraud 5000, retention 2000, "
            "recommendation 5000)."
        ),
    ] = None,
    drift_at: Annotated[
        int | None,
        typer.Option(
            help="Where the pattern changes (default: half-way for fraud and recommendation, "
            "none for retention)."
        ),
    ] = None,
    metrics_port: Annotated[int, typer.Option(help="Port for /metrics (0 picks one).")] = 0,
    report: Annotated[
        Path,
        typer.Option(
            help="Where to write the JSON report; the run record (-run.json) and the HTML "
            "report (.html) go next to it."
        ),
    ] = Path("streamlearn-report.json"),
    log_format: LogFormat = "text",
) -> None:
    """Start a local broker and Redis, stream a synthetic workload, and score it live."""
    from streamlearn.demo import run_demo
    from streamlearn.demo_tasks import demo_task

    chosen = demo_task(task)
    size = events if events is not None else chosen.events
    _logging("WARNING", log_format)
    # The broker is probed while it starts; its refused connections are expected noise.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    run_demo(
        task=chosen,
        events=size,
        rate=rate if rate is not None else chosen.rate,
        drift_at=drift_at if drift_at is not None else chosen.drift_at(size),
        metrics_port=metrics_port,
        report_path=report,
        console=console,
    )


@app.command()
def report(
    run_record: Annotated[
        Path, typer.Argument(help="A run record: `streamlearn run --record` or the demo's.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The HTML file (default: beside the record, .html)."),
    ] = None,
) -> None:
    """Draw a run record as one self-contained HTML page: throughput, batches, latency, score."""
    from streamlearn.report import render_report
    from streamlearn.run_record import load_record

    target = out or run_record.with_suffix(".html")
    target.write_text(render_report(load_record(run_record)), encoding="utf-8")
    output.print(f"report written to {escape(str(target))}")


def _logging(level: str, log_format: str = "text", role: str = "all") -> None:
    from connectors.kafka_logging import tame_kafka_logging
    from streamlearn.logs import LOG_FORMATS, configure_logging

    if level.upper() not in logging.getLevelNamesMapping():
        raise typer.BadParameter(f"unknown log level {level!r}", param_hint="--log-level")
    if log_format not in LOG_FORMATS:
        expected = " or ".join(LOG_FORMATS)
        raise typer.BadParameter(
            f"unknown log format {log_format!r}: expected {expected}", param_hint="--log-format"
        )
    configure_logging(level, log_format, role)
    # kafka-python logs each refused connection; streamlearn says once what is wrong.
    tame_kafka_logging()


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except StreamlearnError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
