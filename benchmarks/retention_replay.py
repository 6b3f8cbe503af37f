"""In-process replays of the retention stream: the real task, no broker, no Redis.

The messages go through :class:`ClassificationTask` in fixed-size batches in stream order
(test-then-train: score, exchange with the label store, learn), as ``tests/unit/test_parity.py``
drives it. Every join carries the score actually served when its event was scored; the replay
keeps (event index, served score, label) for each, from which the prequential ROC AUC overall
and per tenth of the stream (by the position of the scored event) are computed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sklearn.metrics import roc_auc_score

from benchmarks.retention_stream import HORIZON_S, Message, event_index, pipeline_config
from streamlearn.batch import RawBatch
from streamlearn.labels import (
    ArrivedLabels,
    Exchange,
    ExpiredLabel,
    MemoryLabelStore,
    PendingEvents,
)
from streamlearn.tasks.classification import ClassificationTask

_PRUNE_EVERY = 50_000  # messages between sweeps of settled entries out of the label store


class PrunedLabelStore(MemoryLabelStore):
    """The in-memory label store's rules, at a cost per batch that does not grow with its size.

    :class:`MemoryLabelStore` looks at every entry on every exchange to expire early labels,
    which makes a replay of hundreds of thousands of messages quadratic. Here only the early
    labels are looked at; joined entries go at once (a replay here never re-delivers a message)
    and events that waited longer than the horizon in event time go on a sweep, as Redis
    expires both by TTL.
    """

    def __init__(self, horizon_s: float) -> None:
        super().__init__(horizon_s)
        self._early: set[str] = set()  # ids of labels waiting for their event
        self._since_sweep = 0

    def exchange(
        self,
        events: PendingEvents,
        labels: ArrivedLabels,
        watermark_ms: int,
        floor_ms: int = 0,
    ) -> Exchange:
        """Store events, join labels, expire early labels past ``watermark_ms``."""
        out = self._store_and_join(events, labels, floor_ms)
        for event_id in labels.event_ids:
            if self.entries.get(event_id, {}).get("st") == "l":
                self._early.add(event_id)
        for event_id in list(self._early):
            entry = self.entries.get(event_id)
            if entry is None or entry["st"] != "l":
                self._early.discard(event_id)
            elif entry["lts"] + self.horizon_ms <= watermark_ms:
                out.expired.append(ExpiredLabel(event_id, entry["ls"], entry["lv"]))
                del self.entries[event_id]
                self._early.discard(event_id)
        for join in out.joins:
            self.entries.pop(join.event_id, None)
        self._sweep(len(events) + len(labels), watermark_ms)
        return out

    def _sweep(self, seen: int, watermark_ms: int) -> None:
        self._since_sweep += seen
        if self._since_sweep < _PRUNE_EVERY:
            return
        self._since_sweep = 0
        oldest = watermark_ms - self.horizon_ms
        stale = [k for k, e in self.entries.items() if e["st"] == "w" and e["et"] < oldest]
        for key in stale:
            del self.entries[key]


@dataclass
class Replay:
    """What one replay served and learned."""

    batch_size: int | str  # "adaptive": the adaptive batcher chose the boundaries
    aggregates: bool
    messages: int
    events: int
    seconds: float
    index: np.ndarray  # per join: position of the scored event in the stream
    served: np.ndarray  # per join: the score served when the event was scored
    target: np.ndarray  # per join: the churn label
    entity: np.ndarray  # per join: the customer's number (cust-00042 -> 42)
    drifts: int
    unmatched: dict[str, int] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """Per join, in event order: event position, customer, served score, label."""
        order = np.argsort(self.index, kind="stable")
        return {
            "index": self.index[order],
            "entity": self.entity[order],
            "served": self.served[order],
            "target": self.target[order],
        }

    def auc(self, from_index: int = 0) -> float | None:
        """Prequential ROC AUC of the served scores, of events at ``from_index`` or later."""
        chosen = self.index >= from_index
        return _auc(self.target[chosen], self.served[chosen])

    def by_tenth(self, events: int) -> list[dict[str, Any]]:
        """Per tenth of the stream (by the scored event's position): AUC and calibration."""
        tenth = np.minimum(self.index * 10 // max(events, 1), 9)
        rows = []
        for t in range(10):
            chosen = tenth == t
            y, s = self.target[chosen], self.served[chosen]
            rows.append(
                {
                    "tenth": t + 1,
                    "labels": int(chosen.sum()),
                    "positives": int(y.sum()),
                    "auc": _auc(y, s),
                    "positive_rate": round(float(y.mean()), 5) if len(y) else None,
                    "mean_score": round(float(s.mean()), 5) if len(s) else None,
                    "logloss": _logloss(y, s),
                }
            )
        return rows

    def summary(self, events: int, warmup: int) -> dict[str, Any]:
        """The figures for the results file; ``warmup``: first event position counted after."""
        after = self.index >= warmup
        return {
            "batch_size": self.batch_size,
            "aggregates": self.aggregates,
            "messages": self.messages,
            "events": self.events,
            "labels_joined": len(self.target),
            "positives": int(self.target.sum()),
            "auc": self.auc(),
            "auc_after_warmup": self.auc(warmup),
            "labels_after_warmup": int(after.sum()),
            "positives_after_warmup": int(self.target[after].sum()),
            "auc_by_tenth": self.by_tenth(events),
            "drifts_detected": self.drifts,
            "unmatched": self.unmatched,
            "seconds": round(self.seconds, 1),
            "messages_per_s": round(self.messages / self.seconds) if self.seconds else None,
        }


def _logloss(y: np.ndarray, s: np.ndarray) -> float | None:
    if len(y) == 0:
        return None
    p = np.clip(s, 1e-6, 1 - 1e-6)
    return round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 5)


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    if len(y) == 0 or y.min() == y.max():
        return None
    return round(float(roc_auc_score(y, s)), 4)


class JoinLog:
    """Per join, as the label store makes it: scored event's position, score served, label."""

    def __init__(self) -> None:
        self.index: list[int] = []
        self.served: list[float] = []
        self.target: list[int] = []
        self.entity: list[int] = []

    def add(self, exchange: Exchange) -> None:
        """Keep every join of ``exchange``."""
        for join in exchange.joins:
            self.index.append(event_index(join.event_id))
            kept = orjson.loads(join.payload)
            self.served.append(kept["s"])
            self.target.append(join.target)
            self.entity.append(int(orjson.loads(kept["v"])["customer_id"].rsplit("-", 1)[1]))

    def replay(self, **figures: Any) -> Replay:
        """The joins kept, with the replay's other ``figures``, as a :class:`Replay`."""
        return Replay(
            index=np.array(self.index, dtype=np.int64),
            served=np.array(self.served, dtype=np.float64),
            target=np.array(self.target, dtype=np.int8),
            entity=np.array(self.entity, dtype=np.int64),
            **figures,
        )


def replay(stream: list[Message], *, batch_size: int, aggregates: bool = True) -> Replay:
    """Run ``stream`` through a fresh retention task in batches of ``batch_size`` messages."""
    task = ClassificationTask(pipeline_config(aggregates=aggregates, batch_size=batch_size))
    store = PrunedLabelStore(HORIZON_S)
    offsets: dict[str, int] = {}
    joins = JoinLog()
    drifts = events = 0
    unmatched: dict[str, int] = {}
    started = time.perf_counter()
    for start in range(0, len(stream), batch_size):
        raw = RawBatch()
        for topic, key, value, ts in stream[start : start + batch_size]:
            offset = offsets.get(topic, 0)
            offsets[topic] = offset + 1
            raw.append(topic, 0, offset, key, value, ts, 0.0)
        scored = task.score(raw)
        events += len(scored.decoded)
        assert scored.pending is not None and scored.arrived is not None  # labels configured
        exchange = store.exchange(scored.pending, scored.arrived, scored.watermark_ms)
        scored.exchange = exchange
        joins.add(exchange)
        outcome = task.learn(scored)
        drifts += outcome.drift
        for reason, n in outcome.unmatched.items():
            unmatched[reason] = unmatched.get(reason, 0) + n
    return joins.replay(
        batch_size=batch_size,
        aggregates=aggregates,
        messages=len(stream),
        events=events,
        seconds=time.perf_counter() - started,
        drifts=drifts,
        unmatched=unmatched,
    )


def sub_stream(stream: list[Message], events: int) -> list[Message]:
    """The messages of the first ``events`` events and their labels, in stream order."""
    return [m for m in stream if event_index(orjson.loads(m[2])["event_id"]) < events]
