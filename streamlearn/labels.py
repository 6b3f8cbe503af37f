"""Delayed labels: decode label messages, and the shapes of the join done through Redis.

A scored event's features (its original message) and the score actually served wait in Redis
until its label comes; a label that comes first waits for its event. Whichever message arrives
second *joins* the pair and is its **joiner**: the join is learned when the joiner's batch is
learned. A replay after a crash re-reads the joiner (it lies past the checkpoint) and learns the
join again, into the model restored from that checkpoint; any other replayed message leaves it
alone. That is what makes learning from delayed labels exactly once across crashes.

Labels given up (their event never came, or lies past the horizon) are returned until the
writer says their dead letters are durable (:meth:`LabelStore.dead_lettered`): a crash in
between sends them again rather than not at all. Entries are deleted by event time once no
message that touched them can be read again (:meth:`LabelStore.forget`, with the bound of
:class:`streamlearn.watermarks.ForgetMarks`), so a backlog holds no more of them than the
horizon's worth, as a live stream does through the entries' TTL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from streamlearn.config_labels import LabelsConfig
from streamlearn.rejections import Rejection, describe

UNMATCHED_REASONS = ("duplicate", "past_horizon", "unknown_event")


@dataclass(slots=True)
class PendingEvents:
    """Scored events to keep until their label: id, where they came from, and what to keep."""

    event_ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # "topic/partition/offset"
    ts_ms: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)


@dataclass(slots=True)
class ArrivedLabels:
    """Label messages of a batch, decoded: whose label, which value, when, from where."""

    event_ids: list[str] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # positions in the raw batch
    values: list[bytes] = field(default_factory=list)  # kept to dead-letter if never matched

    def __len__(self) -> int:
        return len(self.event_ids)


@dataclass(frozen=True, slots=True)
class Join:
    """An event and its label, joined: learn ``payload``'s event with ``target``."""

    event_id: str
    payload: bytes
    target: int
    joiner: str  # source of the message whose processing made the join


@dataclass(frozen=True, slots=True)
class ExpiredLabel:
    """An early label given up, dead-lettered with ``reason``.

    ``unknown_event``: its event never came within the horizon; ``past_horizon``: its event
    came and lies more than the horizon before it (the label was read first).
    """

    event_id: str
    source: str
    value: bytes
    reason: str = "unknown_event"


@dataclass(slots=True)
class Exchange:
    """What the label store did with a batch's events and labels."""

    joins: list[Join] = field(default_factory=list)
    unmatched: list[Rejection] = field(default_factory=list)  # label rows of this batch
    expired: list[ExpiredLabel] = field(default_factory=list)


class LabelStore(Protocol):
    """Keeps pending events and early labels, and joins them (Redis in production)."""

    def exchange(
        self,
        events: PendingEvents,
        labels: ArrivedLabels,
        watermark_ms: int,
        floor_ms: int = 0,
    ) -> Exchange:
        """Store the batch's events, join what can be joined, expire what waited too long.

        Early labels whose deadline ``watermark_ms`` passed are returned in
        :attr:`Exchange.expired` by every call until :meth:`dead_lettered` is told of them.
        An event stored or joined here is due to be forgotten a horizon after its time, or
        after ``floor_ms`` (what was learned of both topics before this batch) if that is
        later: a checkpoint that has read a horizon past it came after this batch.
        """
        ...

    def dead_lettered(self, expired: list[ExpiredLabel]) -> None:
        """The dead letters of these expired labels are durable: stop returning them."""
        ...

    def forget(self, before_ms: int | None) -> int:
        """Delete events (waiting or joined) due before ``before_ms``; ``None``: none.

        Returns how many were deleted. A label read later for a forgotten event is an
        early label whose event never comes (``unknown_event``), as after the entry's TTL.
        Also drops what the TTL already removed from the index of what is due.
        """
        ...


def pending_payload(value: bytes, score: float, ts_ms: int, extra: dict[str, Any]) -> bytes:
    """What is kept of a scored event: its message, the score served, and computed features.

    >>> orjson.loads(pending_payload(b'{"a":1}', 0.25, 7, {}))
    {'v': '{"a":1}', 's': 0.25, 't': 7}
    """
    return orjson.dumps({"v": value.decode(), "s": score, "t": ts_ms, **extra})


class LabelDecoder:
    """Validates label messages: a JSON object with the event's id and a 0/1 target.

    Examples
    --------
    >>> from streamlearn.config_labels import LabelsConfig
    >>> d = LabelDecoder(LabelsConfig(topic="l", id="event_id", target="churned", horizon_s=9))
    >>> labels, bad = d.decode([b'{"event_id": "e1", "churned": 1}', b'{"event_id": "e2"}'],
    ...                        rows=[4, 5], ts_ms=[10, 11], sources=["l/0/0", "l/0/1"])
    >>> labels.event_ids, labels.targets, [(r.index, r.reason) for r in bad]
    (['e1'], [1], [(5, 'missing_field')])
    """

    def __init__(self, config: LabelsConfig) -> None:
        self.id = config.id
        self.target = config.target

    def decode(
        self,
        values: Sequence[bytes | None],
        rows: Sequence[int],
        ts_ms: Sequence[int],
        sources: Sequence[str],
    ) -> tuple[ArrivedLabels, list[Rejection]]:
        """Decode label messages; ``rows`` are their positions in the raw batch."""
        out, rejected = ArrivedLabels(), []
        for value, row, ts, source in zip(values, rows, ts_ms, sources):
            problem = self._problem(value)
            if isinstance(problem, Rejection):
                rejected.append(Rejection(row, problem.reason, problem.detail))
                continue
            event_id, target = problem
            out.event_ids.append(event_id)
            out.targets.append(target)
            out.ts_ms.append(int(ts))
            out.sources.append(source)
            out.rows.append(row)
            out.values.append(value or b"")
        return out, rejected

    def _problem(self, value: bytes | None) -> Rejection | tuple[str, int]:
        if not value:
            return Rejection(0, "empty", "label message has no value")
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return Rejection(0, "not_json", f"label is not valid JSON: {str(exc)[:120]}")
        if type(record) is not dict:
            return Rejection(0, "not_object", f"expected a JSON object, got {describe(record)}")
        event_id, target = record.get(self.id), record.get(self.target)
        if event_id is None or target is None:
            missing = self.id if event_id is None else self.target
            return Rejection(0, "missing_field", f"field {missing!r} is missing")
        if type(event_id) not in (str, int) or event_id == "":
            detail = f"field {self.id!r}: expected a string id, got {describe(event_id)}"
            return Rejection(0, "wrong_type", detail)
        if type(target) not in (int, bool) or target not in (0, 1):
            detail = f"field {self.target!r}: expected 0/1 or true/false, got {describe(target)}"
            return Rejection(0, "wrong_type", detail)
        return str(event_id), int(target)


class MemoryLabelStore:
    """The label store's rules in memory, for tests and for trying a pipeline without Redis.

    Same rules as :class:`connectors.redis_labels.RedisLabelStore` (the contract tests run on
    both); entries expire only by event time here (no wall-clock TTL).

    Examples
    --------
    >>> store = MemoryLabelStore(horizon_s=60)
    >>> early = ArrivedLabels(["e1"], [1], [500], ["lb/0/0"], [0], [b"{}"])
    >>> store.exchange(PendingEvents(), early, watermark_ms=0).joins
    []
    >>> event = PendingEvents(["e1"], ["ev/0/0"], [400], [b"payload"])
    >>> joined = store.exchange(event, ArrivedLabels(), watermark_ms=400).joins
    >>> [(j.event_id, j.target, j.joiner) for j in joined]
    [('e1', 1, 'ev/0/0')]
    >>> store.forget(before_ms=400 + 60_000 + 1), store.entries
    (1, {})
    """

    def __init__(self, horizon_s: float) -> None:
        self.horizon_ms = int(horizon_s * 1000)
        self.entries: dict[str, dict[str, Any]] = {}

    def exchange(
        self,
        events: PendingEvents,
        labels: ArrivedLabels,
        watermark_ms: int,
        floor_ms: int = 0,
    ) -> Exchange:
        """Store events, join labels, return early labels past ``watermark_ms``."""
        out = self._store_and_join(events, labels, floor_ms)
        for event_id, entry in self.entries.items():
            if entry["st"] == "l" and entry["lts"] + self.horizon_ms <= watermark_ms:
                out.expired.append(ExpiredLabel(event_id, entry["ls"], entry["lv"]))
        return out

    def _store_and_join(
        self, events: PendingEvents, labels: ArrivedLabels, floor_ms: int
    ) -> Exchange:
        # The batch's events, then its labels, as the Redis script takes them; no expiry.
        out = Exchange()
        for event_id, source, ts, payload in zip(
            events.event_ids, events.sources, events.ts_ms, events.payloads
        ):
            due = max(ts, floor_ms) + self.horizon_ms
            self._event(event_id, source, ts, payload, due, out)
        for i, event_id in enumerate(labels.event_ids):
            self._label(labels, i, event_id, floor_ms + self.horizon_ms, out)
        return out

    def dead_lettered(self, expired: list[ExpiredLabel]) -> None:
        """Delete the expired early labels whose dead letters are durable."""
        for label in expired:
            entry = self.entries.get(label.event_id)
            if entry is not None and entry["st"] == "l" and entry["ls"] == label.source:
                del self.entries[label.event_id]

    def forget(self, before_ms: int | None) -> int:
        """Delete waiting and joined events due before ``before_ms`` (no TTL here)."""
        if before_ms is None:
            return 0
        gone = [
            event_id
            for event_id, entry in self.entries.items()
            if entry["st"] in ("w", "j") and entry["due"] < before_ms
        ]
        for event_id in gone:
            del self.entries[event_id]
        return len(gone)

    def _event(
        self, event_id: str, source: str, ts: int, payload: bytes, due: int, out: Exchange
    ) -> None:
        entry = self.entries.get(event_id)
        if entry is None:
            self.entries[event_id] = {"st": "w", "p": payload, "et": ts, "es": source, "due": due}
        elif entry["st"] == "l" and entry["lts"] - ts > self.horizon_ms:
            out.expired.append(ExpiredLabel(event_id, entry["ls"], entry["lv"], "past_horizon"))
            # The refused label is kept with the event: a replay of the event refuses it again.
            waiting = {"st": "w", "p": payload, "et": ts, "es": source, "due": due}
            self.entries[event_id] = {**waiting, "xs": entry["ls"], "xv": entry["lv"]}
        elif entry["st"] == "l":
            entry.update(st="j", p=payload, et=ts, es=source, jn=source, due=due)
            out.joins.append(Join(event_id, payload, entry["lt"], source))
        elif entry["st"] == "j" and entry["jn"] == source:
            out.joins.append(Join(event_id, entry["p"], entry["lt"], source))
        elif entry.get("es") == source and "xs" in entry:
            out.expired.append(ExpiredLabel(event_id, entry["xs"], entry["xv"], "past_horizon"))

    def _label(self, labels: ArrivedLabels, i: int, event_id: str, due: int, out: Exchange) -> None:
        source, ts, target = labels.sources[i], labels.ts_ms[i], labels.targets[i]
        entry = self.entries.get(event_id)
        if entry is None:
            self.entries[event_id] = {
                "st": "l",
                "lt": target,
                "ls": source,
                "lv": labels.values[i],
                "lts": ts,
            }
        elif entry["st"] == "w":
            if ts - entry["et"] > self.horizon_ms:
                out.unmatched.append(Rejection(labels.rows[i], "past_horizon", "label too late"))
            else:
                entry.update(st="j", lt=target, ls=source, jn=source)
                entry["due"] = max(entry["due"], due)  # this label is the joiner
                out.joins.append(Join(event_id, entry["p"], target, source))
        elif entry.get("ls") != source:
            out.unmatched.append(Rejection(labels.rows[i], "duplicate", "already labelled"))
        elif entry["st"] == "j" and entry["jn"] == source:
            out.joins.append(Join(event_id, entry["p"], entry["lt"], source))
