"""Turns one pipeline's recorded seconds into the run report's charts.

Pure: a pipeline's part of a run record in, :class:`~streamlearn.report.svg.Chart` objects out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from streamlearn.report.svg import PALETTE, Chart, Mark, Series

HEADLINE_METRICS = {
    "classification": ("auc",),
    "recommendation": ("hit_rate_at_10", "ndcg_at_10"),
}
"""The prequential scores each task is judged by, as it names them."""

METRIC_TITLES = {
    "auc": "AUC",
    "accuracy": "accuracy",
    "logloss": "log loss",
    "hit_rate_at_10": "hit rate@10",
    "ndcg_at_10": "NDCG@10",
}

TIME = "seconds since the run started"
_DRIFT, _REPLACED, _CHECKPOINT = "#d62728", "#9467bd", "#2ca02c"
_MAX_BARS = 120


def metric_title(name: str) -> str:
    """How a metric is named for a person.

    >>> metric_title("hit_rate_at_10"), metric_title("f1")
    ('hit rate@10', 'f1')
    """
    return METRIC_TITLES.get(name, name)


def headline_metrics(task: str, seen: Iterable[str]) -> list[str]:
    """The scores to plot: the task's own where reported, else every bounded one seen.

    >>> headline_metrics("classification", ["accuracy", "auc", "logloss"])
    ['auc']
    >>> headline_metrics("other", ["logloss", "f1"])
    ['f1']
    """
    seen = list(dict.fromkeys(seen))
    chosen = [m for m in HEADLINE_METRICS.get(task, ()) if m in seen]
    return chosen or [m for m in seen if m != "logloss"]


def throughput(points: list[dict[str, Any]]) -> Chart:
    """Messages consumed and predictions written per second."""
    ts = [p["t"] for p in points]
    return Chart(
        "Events per second",
        TIME,
        "per second",
        [
            Series("consumed", ts, [p.get("consumed", 0) for p in points]),
            Series("predicted", ts, [p.get("predicted", 0) for p in points], dashed=True),
        ],
        y_min=0,
    )


def lag(points: list[dict[str, Any]]) -> Chart | None:
    """Messages waiting upstream, summed over partitions, as last measured each second."""
    measured = [p for p in points if "lag" in p]
    if not measured:
        return None
    ts = [p["t"] for p in measured]
    return Chart(
        "Consumer lag", TIME, "messages", [Series("lag", ts, [p["lag"] for p in measured])]
    )


def batches(points: list[dict[str, Any]]) -> Chart:
    """The batcher's size over time, and the mean size of batches closed, by trigger."""
    sized = [p for p in points if "batch_size" in p]
    series = [Series("controller size", [p["t"] for p in sized], [p["batch_size"] for p in sized])]
    triggers = sorted({t for p in points for t in p.get("batches", {})})
    for i, trigger in enumerate(triggers, start=1):
        closed = [
            (p["t"], p["batches"][trigger]) for p in points if trigger in p.get("batches", {})
        ]
        series.append(
            Series(
                f"closed: {trigger}",
                [t for t, _ in closed],
                [events / count for _, (count, events) in closed],
                color=PALETTE[i % len(PALETTE)],
                points=True,
            )
        )
    return Chart("Batch size and what closed each batch", TIME, "events per batch", series, y_min=0)


def latency(points: list[dict[str, Any]], target_ms: float | None) -> Chart | None:
    """p50 and p99 of ingest-to-written latency each second, against the target."""
    timed = [p for p in points if "p99_ms" in p]
    if not timed:
        return None
    ts = [p["t"] for p in timed]
    p99 = [p["p99_ms"] for p in timed]
    floor = min(p["p50_ms"] for p in timed)
    wide = max([*p99, target_ms or 0]) > 50 * max(floor, 0.1)
    return Chart(
        "Latency, event ingest to prediction written",
        TIME,
        "milliseconds",
        [Series("p50", ts, [p["p50_ms"] for p in timed]), Series("p99", ts, p99)],
        hlines=[Mark(target_ms, f"target {target_ms:g} ms", "#444")] if target_ms else [],
        log_y=wide,
        y_min=None if wide else 0,
    )


def scores(points: list[dict[str, Any]], marks: list[dict[str, Any]], task: str) -> Chart | None:
    """The prequential score(s) as reported, with drift detections and replacements marked."""
    seen = [m for p in points for m in p.get("scores", {})]
    if not seen:
        return None
    series = []
    for metric in headline_metrics(task, seen):
        reported = [p for p in points if metric in p.get("scores", {})]
        series.append(
            Series(
                metric_title(metric),
                [p["t"] for p in reported],
                [p["scores"][metric] for p in reported],
            )
        )
    shown = []
    for m in marks:
        if m["kind"] == "drift":
            shown.append(Mark(m["t"], "drift detected", _DRIFT, f"drift detected at {m['t']} s"))
        elif m["kind"] == "replacement":
            detail = f"model replaced at {m['t']} s (version {m.get('version')})"
            shown.append(Mark(m["t"], "model replaced", _REPLACED, detail))
    return Chart("Prequential model score", TIME, "prequential score", series, marks=shown)


def _bin_width(points: list[dict[str, Any]]) -> int:
    span = (points[-1]["t"] - points[0]["t"] + 1) if points else 1
    return max(1, math.ceil(span / _MAX_BARS))


def _binned(points: list[dict[str, Any]], key: str) -> tuple[list[float], dict[str, list[float]]]:
    """Counts by reason in at most ``_MAX_BARS`` bins of equal width (seconds), empty ones too."""
    if not any(p.get(key) for p in points):
        return [], {}
    width, start = _bin_width(points), points[0]["t"]
    xs = list(range(start, points[-1]["t"] + 1, width))
    by_reason: dict[str, list[float]] = {}
    for p in points:
        for reason, n in p.get(key, {}).items():
            counts = by_reason.setdefault(reason, [0.0] * len(xs))
            counts[(p["t"] - start) // width] += n
    return [float(x) for x in xs], dict(sorted(by_reason.items()))


def dead_letters(points: list[dict[str, Any]], key: str, title: str) -> Chart | None:
    """Messages dead-lettered by reason (``invalid`` events, or ``unmatched`` labels)."""
    xs, by_reason = _binned(points, key)
    if not xs:
        return None
    width = _bin_width(points)
    unit = "messages per second" if width == 1 else f"messages per {width} s"
    series = [Series(reason, xs, counts) for reason, counts in by_reason.items()]
    return Chart(title, TIME, unit, series, bars=True)


def label_delays(points: list[dict[str, Any]]) -> Chart | None:
    """How long after their events the labels learned each second came (p50 and p90)."""
    measured = [p for p in points if "label_delay_p50_s" in p]
    if not measured:
        return None
    longest = max(p["label_delay_p90_s"] for p in measured)
    unit, scale = next(
        (name, size) for name, size in _DELAY_UNITS if longest >= 2 * size or size == 1.0
    )
    ts = [p["t"] for p in measured]
    return Chart(
        "Delay of the labels learned, after their events",
        TIME,
        f"{unit} of event time",
        [
            Series("p50", ts, [p["label_delay_p50_s"] / scale for p in measured]),
            Series("p90", ts, [p["label_delay_p90_s"] / scale for p in measured]),
        ],
        y_min=0,
    )


_DELAY_UNITS = (("days", 86_400.0), ("hours", 3_600.0), ("minutes", 60.0), ("seconds", 1.0))


def checkpoints(points: list[dict[str, Any]], marks: list[dict[str, Any]]) -> Chart | None:
    """Age of the newest checkpoint over time (a saw-tooth), each checkpoint marked."""
    written = [m["t"] for m in marks if m["kind"] == "checkpoint"]
    if not written or not points:
        return None
    ts, ages, newest, i = [], [], None, 0
    for p in points:
        while i < len(written) and written[i] <= p["t"] + 1:
            newest, i = written[i], i + 1
        ts.append(p["t"] + 1)
        ages.append(None if newest is None else max(p["t"] + 1 - newest, 0.0))
    shown = [Mark(t, "checkpoint", _CHECKPOINT, f"checkpoint at {t} s") for t in written]
    return Chart(
        "Checkpoint age",
        TIME,
        "seconds",
        [Series("age of the newest checkpoint", ts, ages, color="#555")],
        marks=shown,
        y_min=0,
    )


def pipeline_charts(data: Mapping[str, Any]) -> dict[str, list[Chart | None]]:
    """Every chart of one pipeline, by report section (``None`` where there is nothing)."""
    points, marks = data["points"], data["marks"]
    charts: dict[str, list[Chart | None]] = {
        "Throughput and consumer lag": [throughput(points), lag(points)],
        "Batch size and triggers": [batches(points)],
        "Latency against the target": [latency(points, data.get("latency_target_ms"))],
        "Model score, drift and replacements": [scores(points, marks, data.get("task", ""))],
        "Dead letters": [
            dead_letters(points, "invalid", "Dead-lettered events by reason"),
            dead_letters(points, "unmatched", "Unmatched labels by reason"),
        ],
        "Checkpoints": [checkpoints(points, marks)],
    }
    delays = label_delays(points)
    if delays is not None:  # a section only for pipelines whose labels come on their own
        charts["Delayed labels"] = [delays]
    if points:  # one time axis for every chart of the pipeline
        for chart in (c for drawn in charts.values() for c in drawn if c is not None):
            chart.x_min, chart.x_max = points[0]["t"], points[-1]["t"] + 1
    return charts
