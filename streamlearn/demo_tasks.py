"""What ``streamlearn demo`` knows about each task.

Its packaged configuration, the stream it generates, the figures worth watching, and whose
prediction it reads back at the end.

Examples
--------
>>> sorted(DEMO_TASKS)
['fraud', 'recommendation', 'retention']
>>> DEMO_TASKS["retention"].drift_at(150_000) is None, DEMO_TASKS["fraud"].drift_at(100_000)
(True, 50000)
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from rich.table import Table

from streamlearn.config import AppConfig, parse_config
from streamlearn.errors import ConfigError
from streamlearn.progress import ProgressHooks, ProgressSnapshot


@dataclass(frozen=True)
class DemoTask:
    """One task the demo can run."""

    name: str
    title: str  # of the live table
    events: int  # default size of the generated stream
    rate: float  # default events per second: what the processor keeps up with on two cores
    entity: str  # whose prediction is read back at the end
    drift_half_way: bool  # the pattern changes half-way unless --drift-at says otherwise
    partitions: int  # of the events topic
    options: Mapping[str, Any] = field(default_factory=dict)  # generator options
    labels_apart: bool = False  # labels come later, on their own topic
    metric: str = "auc"  # the prequential score shown, as the task names it
    metric_title: str = "rolling AUC"

    def drift_at(self, events: int) -> int | None:
        """Where the pattern changes when the user does not say."""
        return events // 2 if self.drift_half_way else None


DEMO_TASKS: dict[str, DemoTask] = {
    "fraud": DemoTask(
        name="fraud",
        title="fraud scoring",
        events=100_000,
        rate=5_000,
        entity="card-00001",
        drift_half_way=True,
        partitions=2,
    ),
    # ~30 events per customer over ~120 days of event time, so the 7- and 30-day aggregates
    # have a history to summarise; a fifth of the events get a churn label, 30 days later.
    # Each event costs more here (aggregate state and pending labels in Redis): a slower rate.
    # One events partition: when the processor falls behind, the consumer may read one
    # partition far ahead of another in event time, and a label whose event has not come waits
    # for the slowest partition (the watermark) before it is given up as unknown_event.
    "retention": DemoTask(
        name="retention",
        title="churn risk (retention)",
        events=150_000,
        rate=2_000,
        entity="cust-00001",
        drift_half_way=False,
        partitions=1,
        options={"customers": 5_000},
        labels_apart=True,
    ),
    # Users act in sessions on a long-tailed catalogue; their tastes shift half-way. Each user's
    # top 10 is rewritten in Redis after every batch that touched them.
    "recommendation": DemoTask(
        name="recommendation",
        title="live recommendations",
        events=200_000,
        rate=5_000,
        entity="user-000001",
        drift_half_way=True,
        partitions=2,
        options={"users": 20_000, "items": 5_000},
        metric="hit_rate_at_10",
        metric_title="hit rate @10",
    ),
}


def demo_task(name: str) -> DemoTask:
    """The demo task called ``name``, or a :class:`ConfigError` listing the known ones."""
    try:
        return DEMO_TASKS[name]
    except KeyError:
        known = ", ".join(sorted(DEMO_TASKS))
        raise ConfigError(f"unknown demo task {name!r}; known tasks: {known}") from None


def demo_config(task: DemoTask, bootstrap: str, redis_url: str, metrics_port: int) -> AppConfig:
    """The task's packaged configuration, pointed at the embedded services."""
    resource = importlib.resources.files("streamlearn.tasks").joinpath(f"{task.name}.yaml")
    data = yaml.safe_load(resource.read_text(encoding="utf-8"))
    data["kafka"] = {
        **data.get("kafka", {}),
        "bootstrap": bootstrap,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
    }
    data["redis"] = {**data.get("redis", {}), "url": redis_url}
    data["metrics"] = {"host": "127.0.0.1", "port": metrics_port}
    return parse_config(data, env={})


class DemoProgress(ProgressHooks):
    """The demo's running totals, with the labels that found no event by reason.

    >>> p = DemoProgress()
    >>> p.on_labels_unmatched("retention", "duplicate", 2)
    >>> p.on_labels_unmatched("retention", "duplicate", 1)
    >>> p.unmatched_by_reason, p.unmatched
    ({'duplicate': 3}, 3)
    """

    def __init__(self) -> None:
        super().__init__()
        self.unmatched_by_reason: dict[str, int] = {}

    def on_labels_unmatched(self, pipeline: str, reason: str, n: int) -> None:  # noqa: D102
        self.unmatched_by_reason[reason] = self.unmatched_by_reason.get(reason, 0) + n

    @property
    def unmatched(self) -> int:
        """Labels dead-lettered so far because they matched no event."""
        return sum(self.unmatched_by_reason.values())


def progress_table(task: DemoTask, s: ProgressSnapshot, unmatched: int, total: int | None) -> Table:
    """The live table; ``total`` is the number of messages to consume, once known."""
    table = Table(title=f"streamlearn demo: {task.title}", show_header=False)
    consumed = f"{s.consumed:,}" + ("" if total is None else f" / {total:,}")
    if task.labels_apart:
        table.add_row("messages consumed (events + labels)", consumed)
        table.add_row("messages/s", f"{s.events_per_s:,.0f}")
    else:
        table.add_row("events consumed", consumed)
        table.add_row("events/s", f"{s.events_per_s:,.0f}")
    table.add_row(
        "lists served" if task.metric != "auc" else "predictions written", f"{s.predicted:,}"
    )
    if task.labels_apart:
        table.add_row("labels joined and learned", f"{s.learned:,}")
        table.add_row("labels unmatched", f"{unmatched:,}")
    table.add_row("dead-lettered", f"{s.invalid:,}")
    table.add_row("batch size", f"{s.batch_size}")
    table.add_row("p50 / p99 latency", f"{ms(s.p50_ms)} / {ms(s.p99_ms)}")
    score = s.scores.get(task.metric)
    table.add_row(task.metric_title, "-" if score is None else f"{score:.3f}")
    table.add_row("drift detected", str(s.drifts))
    return table


def ms(value: float | None) -> str:
    """A latency for people: ``12.3 ms``, or ``-`` when there is none yet."""
    return "-" if value is None else f"{value:.1f} ms"
