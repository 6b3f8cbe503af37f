"""Records what a run did, second by second, for the run report (``streamlearn report``).

A :class:`~streamlearn.hooks.PipelineHooks` observer: each hook adds to the current second's
counters; a bounded ring keeps the last ``capacity`` seconds per pipeline, marks keep when the
drift detector fired, the model was replaced and checkpoints were written.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streamlearn.config_services import mask_urls
from streamlearn.errors import StreamlearnError
from streamlearn.hooks import PipelineHooks

FORMAT = "streamlearn-run/1"
"""The ``format`` field of a run record; the report refuses others."""

# Latency histogram over the whole run, for its percentiles: 0.1 ms .. 1000 s, 40 bins a decade.
_LATENCY_EDGES_S = np.logspace(-4, 3, 281)
# Latencies kept per second for its p50/p99 (its first ones): the percentiles are computed on a
# pipeline's thread when the second closes, so this bounds that pause (~1 ms).
_SECOND_SAMPLE = 20_000


@dataclass
class _Second:
    """Counters of one pipeline during one second."""

    t: int
    consumed: int = 0
    predicted: int = 0
    learned: int = 0
    missed: int = 0
    latencies: list[np.ndarray] = field(default_factory=list)
    kept: int = 0
    batches: dict[str, list[int]] = field(default_factory=dict)  # trigger -> [count, events]
    invalid: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    label_delays: list[np.ndarray] = field(default_factory=list)
    lag: int | None = None
    batch_size: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    model_version: int | None = None

    def point(self) -> dict[str, Any]:
        """The second as a JSON-ready point; empty fields are left out."""
        point: dict[str, Any] = {"t": self.t}
        for name in ("consumed", "predicted", "learned", "missed", "batch_size"):
            value = getattr(self, name)
            if value:
                point[name] = value
        if self.lag is not None:
            point["lag"] = self.lag  # a lag of 0 is a measurement: the consumer is caught up
        if self.latencies:
            sample = np.concatenate(self.latencies) * 1000.0
            p50, p99 = np.percentile(sample, [50, 99])
            point["p50_ms"], point["p99_ms"] = round(float(p50), 3), round(float(p99), 3)
        if self.label_delays:
            delays = np.concatenate(self.label_delays)
            p50, p90 = np.percentile(delays, [50, 90])
            point["label_delay_p50_s"] = round(float(p50), 3)
            point["label_delay_p90_s"] = round(float(p90), 3)
        for name in ("batches", "invalid", "unmatched", "scores"):
            value = getattr(self, name)
            if value:
                point[name] = value
        if self.model_version is not None:
            point["model_version"] = self.model_version
        return point


class _PipelineRecord:
    """One pipeline's ring of seconds, its marks and its totals."""

    def __init__(self, name: str, task: str, target_ms: float | None, capacity: int) -> None:
        self.name, self.task, self.target_ms, self.capacity = name, task, target_ms, capacity
        self.points: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.marks: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.dropped = 0
        self.current: _Second | None = None
        self.latency_counts = np.zeros(len(_LATENCY_EDGES_S) + 1, dtype=np.int64)
        self.totals: dict[str, Any] = {
            "consumed": 0,
            "predicted": 0,
            "learned": 0,
            "missed": 0,
            "drifts": 0,
            "replacements": 0,
            "checkpoints": 0,
            "too_late": 0,
            "invalid": {},
            "unmatched": {},
            "batches": {},
        }
        self.last_scores: dict[str, float] = {}
        self.last_version: int | None = None

    def second(self, t: int) -> _Second:
        current = self.current
        if current is not None and current.t == t:
            return current
        if current is not None:
            self._keep(current.point())
            # Seconds without any call are kept as empty points: nothing happened then.
            idle = max(0, t - current.t - 1)
            kept = min(idle, self.capacity)
            self.dropped += idle - kept
            for second in range(t - kept, t):
                self._keep({"t": second})
        self.current = _Second(t)
        return self.current

    def _keep(self, point: dict[str, Any]) -> None:
        if len(self.points) == self.points.maxlen:
            self.dropped += 1
        self.points.append(point)

    def summary(self) -> dict[str, Any]:
        points, dropped = list(self.points), self.dropped
        if self.current is not None:  # the second still open counts too
            points.append(self.current.point())
            if len(points) > self.capacity:
                points, dropped = points[1:], dropped + 1
        # Copies: the pipelines go on counting while the caller writes this out.
        return copy.deepcopy(
            {
                "task": self.task,
                "latency_target_ms": self.target_ms,
                "totals": self.totals,
                "latency_ms": _percentiles_ms(self.latency_counts),
                "last_scores": self.last_scores,
                "points_dropped": dropped,
                "points": points,
                "marks": list(self.marks),
            }
        )


def _percentiles_ms(counts: np.ndarray) -> dict[str, float] | None:
    """p50, p90, p99 and max (upper bin edges, ms) of a latency histogram."""
    total = int(counts.sum())
    if not total:
        return None
    edges_ms = np.append(_LATENCY_EDGES_S, np.inf) * 1000.0
    cumulative = np.cumsum(counts)
    out = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        index = int(np.searchsorted(cumulative, q * total))
        out[name] = round(float(edges_ms[min(index, len(edges_ms) - 2)]), 3)
    return out


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


class RunRecorder(PipelineHooks):
    """Keeps per-second points of every pipeline, cheaply, and writes them as a run record.

    Parameters
    ----------
    pipelines
        Per pipeline name: its task and latency target (ms), as the report shows them.
    capacity
        Seconds kept per pipeline (the newest); marks are bounded the same way.
    clock, wall
        Monotonic seconds, and epoch seconds for the record's start.

    Examples
    --------
    >>> now = [0.0]
    >>> rec = RunRecorder({"fraud": ("classification", 100.0)}, clock=lambda: now[0])
    >>> rec.on_consumed("fraud", 500)
    >>> rec.on_predictions("fraud", np.array([0.02, 0.04]))
    >>> now[0] = 1.2
    >>> rec.on_consumed("fraud", 300); rec.on_drift("fraud")
    >>> record = rec.record()
    >>> [p["consumed"] for p in record["pipelines"]["fraud"]["points"]]
    [500, 300]
    >>> record["pipelines"]["fraud"]["marks"]
    [{'t': 1.2, 'kind': 'drift'}]
    """

    def __init__(
        self,
        pipelines: Mapping[str, tuple[str, float | None]] | None = None,
        *,
        capacity: int = 3600,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.capacity = capacity
        self.clock, self.wall = clock, wall
        self.started, self.started_at = clock(), wall()
        self._lock = threading.Lock()  # pipelines report from their own threads
        self._records: dict[str, _PipelineRecord] = {}
        self._failures: list[dict[str, Any]] = []
        for name, (task, target_ms) in (pipelines or {}).items():
            self._records[name] = _PipelineRecord(name, task, target_ms, capacity)

    @classmethod
    def for_config(cls, config: Any, **options: Any) -> RunRecorder:
        """A recorder knowing each configured pipeline's task and latency target."""
        described = {
            p.name: (p.task, float(p.batching.latency_target_ms)) for p in config.pipelines
        }
        return cls(described, **options)

    def _now(self, pipeline: str) -> tuple[_PipelineRecord, _Second, float]:
        record = self._records.get(pipeline)
        if record is None:
            record = self._records[pipeline] = _PipelineRecord(
                pipeline, "unknown", None, self.capacity
            )
        elapsed = self.clock() - self.started
        return record, record.second(int(elapsed)), round(elapsed, 3)

    def on_consumed(self, pipeline: str, n: int) -> None:  # noqa: D102
        with self._lock:
            record, second, _ = self._now(pipeline)
            second.consumed += n
            record.totals["consumed"] += n

    def on_invalid(self, pipeline: str, reason: str, n: int) -> None:  # noqa: D102
        with self._lock:
            record, second, _ = self._now(pipeline)
            _add(second.invalid, reason, n)
            _add(record.totals["invalid"], reason, n)

    def on_labels_unmatched(self, pipeline: str, reason: str, n: int) -> None:  # noqa: D102
        with self._lock:
            record, second, _ = self._now(pipeline)
            _add(second.unmatched, reason, n)
            _add(record.totals["unmatched"], reason, n)

    def on_too_late(self, pipeline: str, n: int) -> None:  # noqa: D102
        with self._lock:
            self._now(pipeline)[0].totals["too_late"] += n

    def on_label_delays(self, pipeline: str, delays_s: np.ndarray) -> None:  # noqa: D102
        with self._lock:
            _, second, _ = self._now(pipeline)
            if sum(map(len, second.label_delays)) < _SECOND_SAMPLE:
                second.label_delays.append(np.asarray(delays_s, dtype=np.float64).copy())

    def on_predictions(self, pipeline: str, latencies_s: np.ndarray) -> None:  # noqa: D102
        counts = np.bincount(
            np.searchsorted(_LATENCY_EDGES_S, latencies_s), minlength=len(_LATENCY_EDGES_S) + 1
        )
        with self._lock:
            record, second, _ = self._now(pipeline)
            second.predicted += len(latencies_s)
            record.totals["predicted"] += len(latencies_s)
            record.latency_counts += counts
            if second.kept < _SECOND_SAMPLE and len(latencies_s):
                second.latencies.append(latencies_s[: _SECOND_SAMPLE - second.kept].copy())
                second.kept += min(len(latencies_s), _SECOND_SAMPLE - second.kept)

    def on_learned(self, pipeline: str, n: int) -> None:  # noqa: D102
        with self._lock:
            record, second, _ = self._now(pipeline)
            second.learned += n
            record.totals["learned"] += n

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:  # noqa: D102
        with self._lock:
            record, second, _ = self._now(pipeline)
            for counts in (second.batches, record.totals["batches"]):
                entry = counts.setdefault(trigger, [0, 0])
                entry[0] += 1
                entry[1] += size

    def on_batch_size(self, pipeline: str, size: int) -> None:  # noqa: D102
        with self._lock:
            self._now(pipeline)[1].batch_size = size

    def on_target_missed(self, pipeline: str, n: int) -> None:  # noqa: D102
        with self._lock:
            record, second, _ = self._now(pipeline)
            second.missed += n
            record.totals["missed"] += n

    def on_lag(self, pipeline: str, lag: Mapping[int, int]) -> None:  # noqa: D102
        if lag:
            with self._lock:
                self._now(pipeline)[1].lag = int(sum(lag.values()))

    def on_model_score(self, pipeline: str, scores: Mapping[str, float]) -> None:  # noqa: D102
        finite = {k: round(float(v), 5) for k, v in scores.items() if np.isfinite(v)}
        if not finite:
            return
        with self._lock:
            record, second, _ = self._now(pipeline)
            second.scores.update(finite)
            record.last_scores.update(finite)

    def on_drift(self, pipeline: str) -> None:  # noqa: D102
        with self._lock:
            record, _, t = self._now(pipeline)
            record.marks.append({"t": t, "kind": "drift"})
            record.totals["drifts"] += 1

    def on_model_version(self, pipeline: str, version: int) -> None:
        """Record the version; a move other than +1 from the last one is a replacement.

        Versions rise by one per batch learned, so any other step means another model took
        over: a drift reset, a challenger that won, or an operator's rollback or import.
        """
        with self._lock:
            record, second, t = self._now(pipeline)
            second.model_version = version
            last, record.last_version = record.last_version, version
            if last is not None and version not in (last, last + 1):
                record.marks.append({"t": t, "kind": "replacement", "version": version})
                record.totals["replacements"] += 1

    def on_checkpoint(self, pipeline: str, written_at: float) -> None:  # noqa: D102
        with self._lock:
            record, _, t = self._now(pipeline)
            record.marks.append({"t": t, "kind": "checkpoint"})
            record.totals["checkpoints"] += 1

    def on_failed(self, pipeline: str, message: str) -> None:  # noqa: D102
        with self._lock:
            record, _, t = self._now(pipeline)
            record.marks.append({"t": t, "kind": "failed", "message": mask_urls(message)})

    def record(self) -> dict[str, Any]:
        """Everything recorded so far, JSON-ready (the current second included)."""
        with self._lock:
            duration = self.clock() - self.started
            return {
                "format": FORMAT,
                "started_at": round(self.started_at, 3),
                "duration_s": round(duration, 3),
                "interval_s": 1,
                "pipelines": {name: r.summary() for name, r in self._records.items()},
            }

    def write(self, path: Path) -> None:
        """Write :meth:`record` to ``path`` as JSON."""
        path.write_bytes(orjson.dumps(self.record(), option=orjson.OPT_INDENT_2))


def load_record(path: Path) -> dict[str, Any]:
    """Read a run record, refusing files that are not one (with a message saying so)."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise StreamlearnError(f"cannot read the run record {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise StreamlearnError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StreamlearnError(
            f"{path} is not a run record (expected format {FORMAT!r}); write one with "
            "`streamlearn run CONFIG --record RUN.json` or `streamlearn demo`"
        )
    return data
