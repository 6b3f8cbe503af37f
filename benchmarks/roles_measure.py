"""What the roles benchmark measures while its processes run: CPU, rates, staleness, served AUC.

:func:`watch` follows processes through a backlog: it polls each one's /metrics (every 20 ms
until it begins its work, then every 50 ms) and reads its CPU time just before each look, so a
process's *baseline* is its CPU at the last look before it began (start-up: imports,
connecting, joining the group, and a scorer's wait for the first model) and its *work* is what
it used after (see :func:`working`). The broker's and Redis's CPU is counted from the last look
at which no process had begun.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from benchmarks.roles_run import RoleProcess, cpu_seconds, metric

Samples = dict[str, float]
Done = Callable[[dict[str, Samples]], bool]
STAGES = ("score", "write", "learn", "commit", "checkpoint")
ENDS = {"scorer": "scored", "learner": "learned", "all": "learned"}  # role -> its last milestone


@dataclass
class _Track:
    proc: RoleProcess
    base_cpu: float = 0.0
    base_t: float | None = None  # last look before it consumed anything
    first_t: float | None = None  # first look at which it had consumed
    last: Samples = field(default_factory=dict)
    next_look: float = 0.0

    @property
    def started_at(self) -> float | None:
        """When it consumed its first message: between the last look before and the first after."""
        if self.first_t is None:
            return None
        return (self.first_t + (self.base_t or self.first_t)) / 2


@dataclass
class Watched:
    """A backlog run's figures: per process and per service, and when each milestone fell."""

    processes: dict[str, dict[str, Any]]
    services_cpu_s: dict[str, float]
    began_at: float  # first message consumed by any process (monotonic)
    marks: dict[str, float]  # milestone -> seconds after began_at


def watch(
    procs: Sequence[RoleProcess],
    services: dict[str, int],
    milestones: dict[str, Done],
    timeout_s: float,
    on_look: Callable[[dict[str, Samples]], None] = lambda latest: None,
) -> Watched:
    """Follow ``procs`` until every milestone was reached (the last one ends the watch).

    A process's work ends at the milestone its role names in :data:`ENDS` (a scorer's when
    everything is scored: it idles after), else at the last; the services' at the last.
    ``services`` maps a name to the pid of a service whose CPU is counted too (0: unknown).
    ``on_look`` gets the newest samples of every process after each round of looks (a
    process not started yet is looked at once it answers).
    """
    tracks = [_Track(p) for p in procs]
    service_base = {name: cpu_seconds(pid) if pid else 0.0 for name, pid in services.items()}
    reached: dict[str, float] = {}
    cpu_at: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + timeout_s
    while len(reached) < len(milestones):
        for track in tracks:
            if time.monotonic() >= track.next_look:
                _look(track)
        if all(t.first_t is None for t in tracks):
            service_base = {n: cpu_seconds(pid) if pid else 0.0 for n, pid in services.items()}
        latest = {t.proc.name: t.last for t in tracks}
        on_look(latest)
        now = time.monotonic()
        for name, done in milestones.items():
            if name not in reached and done(latest):
                reached[name] = now
                cpu_at[name] = {t.proc.name: t.proc.cpu() for t in tracks}
        for p in procs:
            p.check()
        if now > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
            raise TimeoutError(f"milestones {sorted(set(milestones) - set(reached))} not "
                               f"reached within {timeout_s} s\n{tails}")  # fmt: skip
        time.sleep(0.005)
    last = max(reached, key=lambda k: reached[k])
    services_cpu = {
        n: round(cpu_seconds(pid) - service_base[n], 3) if pid else float("nan")
        for n, pid in services.items()
    }
    began = min(t.started_at for t in tracks if t.started_at is not None)
    out: dict[str, dict[str, Any]] = {}
    for t in tracks:
        end = ENDS.get(t.proc.role, last) if ENDS.get(t.proc.role) in cpu_at else last
        final = t.proc.metrics() or t.last
        out[t.proc.name] = {
            "role": t.proc.role,
            "startup_cpu_s": round(t.base_cpu, 3),
            "work_cpu_s": round(cpu_at[end][t.proc.name] - t.base_cpu, 3),
            "work_ends_at": end,
            "started_after_s": round((t.started_at or began) - began, 3),
            **counters(final),
        }
    return Watched(out, services_cpu, began, {k: round(v - began, 3) for k, v in reached.items()})


def _look(track: _Track) -> None:
    cpu = track.proc.cpu()  # before the metrics: a zero count there is still zero at this CPU
    samples = track.proc.metrics()
    now = time.monotonic()
    if samples:
        track.last = samples
        if not working(samples, track.proc.role):
            track.base_cpu, track.base_t = cpu, now
        elif track.first_t is None:
            track.first_t = now
    track.next_look = now + (0.02 if track.first_t is None else 0.05)


def working(samples: Samples, role: str) -> bool:
    """Whether a process has begun its work: a scorer has written a prediction (it may hold a
    batch while it waits for the first model), a learner or single process consumed.

    >>> working({'streamlearn_events_consumed_total{pipeline="f"}': 9.0}, "scorer")
    False
    """
    counter = "predictions" if role == "scorer" else "events_consumed"
    return metric(samples, f"streamlearn_{counter}_total") > 0


def counters(samples: Samples) -> dict[str, Any]:
    """The counts and per-stage seconds a process's /metrics show.

    >>> counters({'streamlearn_learned_total{pipeline="fraud"}': 5.0})["learned"]
    5
    """
    return {
        "consumed": int(metric(samples, "streamlearn_events_consumed_total")),
        "predictions": int(metric(samples, "streamlearn_predictions_total")),
        "learned": int(metric(samples, "streamlearn_learned_total")),
        "batches": int(metric(samples, "streamlearn_batches_total")),
        "stage_s": {
            s: round(metric(samples, "streamlearn_batch_duration_seconds_sum", stage=s), 3)
            for s in STAGES
        },
    }


def counted(counter: str, procs: Iterable[RoleProcess], n: int) -> Done:
    """A milestone: ``streamlearn_{counter}_total`` of ``procs`` adds up to ``n`` or more."""
    names, series = [p.name for p in procs], f"streamlearn_{counter}_total"

    def done(latest: dict[str, Samples]) -> bool:
        return sum(metric(latest.get(name, {}), series) for name in names) >= n

    return done


class StalenessSampler(threading.Thread):
    """Reads each scorer's ``streamlearn_model_staleness_seconds`` every ``every_s``.

    ``samples[scorer]`` holds ``(seconds since start, staleness)`` pairs, from the scorer's
    first batch on (the gauge is set at every batch).
    """

    def __init__(self, scorers: Sequence[RoleProcess], every_s: float = 0.1) -> None:
        super().__init__(name="staleness", daemon=True)
        self.scorers, self.every_s = scorers, every_s
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        began = tick = time.monotonic()
        while not self.halt.is_set():
            for s in self.scorers:
                samples = s.metrics()
                if any(k.startswith("streamlearn_model_staleness_seconds") for k in samples):
                    value = metric(samples, "streamlearn_model_staleness_seconds")
                    self.samples.setdefault(s.name, []).append(
                        (round(time.monotonic() - began, 2), value)
                    )
            tick += self.every_s
            self.halt.wait(max(0.0, tick - time.monotonic()))


def staleness_summary(
    samples: dict[str, list[tuple[float, float]]], interval_ms: float, warmup_s: float
) -> dict[str, Any]:
    """p50, p99 and max of every scorer's samples together: all of them, and those taken
    ``warmup_s`` or more after sending began (``steady``).

    >>> s = staleness_summary({"a": [(0.1, 9.0), (3.0, 0.5), (3.1, 1.0)], "b": [(4.0, 0.2)]},
    ...                       1000.0, warmup_s=2.0)
    >>> s["all"]["samples"], s["all"]["max_s"], s["steady"]["samples"], s["steady"]["max_s"]
    (4, 9.0, 3, 1.0)
    """

    def summary(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"samples": 0, "p50_s": None, "p99_s": None, "max_s": None}
        p50, p99 = np.percentile(values, [50, 99])
        return {
            "samples": len(values),
            "p50_s": round(float(p50), 3),
            "p99_s": round(float(p99), 3),
            "max_s": round(float(max(values)), 3),
            "p99_vs_interval": round(float(p99) * 1000 / interval_ms, 3),
        }

    pairs = [pair for v in samples.values() for pair in v]
    return {
        "warmup_s": warmup_s,
        "all": summary([x for _, x in pairs]),
        "steady": summary([x for t, x in pairs if t >= warmup_s]),
        "series": samples,
    }


def served_from_predictions(values: Iterable[bytes]) -> dict[str, float]:
    """Event id -> score from predictions-topic records; a replayed event's last record wins.

    >>> records = [b'{"event_id": "a", "score": 0.1}', b'{"event_id": "a", "score": 0.3}']
    >>> served_from_predictions(records)
    {'a': 0.3}
    """
    served: dict[str, float] = {}
    for value in values:
        record = orjson.loads(value)
        served[record["event_id"]] = float(record["score"])
    return served


def served_from_examples(values: Iterable[bytes]) -> dict[str, float]:
    """Event id -> served score from learn-topic (examples) messages; the last one wins."""
    from streamlearn.roles.examples import decode

    served: dict[str, float] = {}
    for value in values:
        examples = decode(value)
        served.update(zip(examples.decoded.event_ids, examples.served.tolist()))
    return served


def served_auc(
    served: dict[str, float], labels: dict[str, int], order: list[str]
) -> dict[str, Any]:
    """Exact ROC AUC of the served scores against the true labels: the whole stream, each half
    (the pattern changes at the half), and after the first 5 % (while the first models learn).

    ``order`` is the stream's event ids in order.

    >>> served_auc({"a": .9, "b": .1, "c": .8, "d": .2}, {"a": 1, "b": 0, "c": 1, "d": 0},
    ...            ["a", "b", "c", "d"])["auc"]
    1.0
    """
    from sklearn.metrics import roc_auc_score

    ids = [e for e in order if e in served]
    y = np.asarray([labels[e] for e in ids])
    s = np.asarray([served[e] for e in ids])
    position = np.asarray([i for i, e in enumerate(order) if e in served])

    def auc(mask: np.ndarray) -> float | None:
        ok = 0 < y[mask].sum() < mask.sum()
        return round(float(roc_auc_score(y[mask], s[mask])), 4) if ok else None

    return {
        "events": len(order),
        "served": len(ids),
        "missing": len(order) - len(ids),
        "auc": auc(np.ones(len(ids), dtype=bool)),
        "auc_first_half": auc(position < len(order) // 2),
        "auc_second_half": auc(position >= len(order) // 2),
        "auc_after_first_5pct": auc(position >= len(order) // 20),
    }
