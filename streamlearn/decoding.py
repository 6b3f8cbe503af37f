"""Turns a batch of raw JSON messages into validated columns, and names every rejected one.

Each message is parsed once (orjson); fields are then checked and converted column by column,
so a clean batch costs a few list comprehensions and numpy conversions, and only a column that
holds a bad value is walked row by row to find it. No message content can make it raise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from streamlearn.config import FieldType, SchemaConfig
from streamlearn.rejections import Rejection, describe, exception_text, unparsable

__all__ = ["MAX_TIMESTAMP_MS", "DecodedBatch", "EventDecoder", "Rejection"]

log = logging.getLogger(__name__)

_NUMBER_TYPES = {int, float, bool}
_INT_TYPES = {int, bool}
_ID_TYPES = {str, int}
MAX_TIMESTAMP_MS = 2**53
_TARGET_TYPES = {int, bool, float, type(None)}


@dataclass(slots=True)
class DecodedBatch:
    """The valid events of a batch, as columns, plus the rejected ones.

    ``index`` maps each valid row back to its position in the raw batch. ``targets`` holds the
    label per row, NaN where the event carried none.
    """

    index: np.ndarray
    event_ids: list[str]
    entity_ids: list[str]
    timestamps_ms: np.ndarray
    numeric: dict[str, np.ndarray]
    categorical: dict[str, list[str]]
    targets: np.ndarray
    rejected: list[Rejection]

    def __len__(self) -> int:
        return len(self.event_ids)

    def take(self, rows: list[int]) -> DecodedBatch:
        """Only ``rows`` (positions in it, in order); the rejections stay as they are."""
        return DecodedBatch(
            index=self.index[rows],
            event_ids=[self.event_ids[i] for i in rows],
            entity_ids=[self.entity_ids[i] for i in rows],
            timestamps_ms=self.timestamps_ms[rows],
            numeric={k: v[rows] for k, v in self.numeric.items()},
            categorical={k: [v[i] for i in rows] for k, v in self.categorical.items()},
            targets=self.targets[rows],
            rejected=list(self.rejected),
        )

    def without(self, rejections: list[Rejection], rows: list[int]) -> DecodedBatch:
        """The batch less ``rows`` (positions in it), rejected for ``rejections``."""
        keep = np.ones(len(self), dtype=bool)
        keep[rows] = False
        kept = self.take(np.flatnonzero(keep).tolist())
        kept.rejected = sorted([*self.rejected, *rejections], key=lambda r: r.index)
        return kept


class EventDecoder:
    """Parses and validates JSON events against a pipeline's schema.

    Examples
    --------
    >>> from streamlearn.config import SchemaConfig
    >>> schema = SchemaConfig(target="is_fraud",
    ...                       features={"amount": "float", "channel": "category"})
    >>> batch = EventDecoder(schema).decode([
    ...     b'{"event_id": "e1", "entity_id": "c1", "ts": 1, "amount": 9.5,'
    ...     b' "channel": "web", "is_fraud": 0}',
    ...     b'{"event_id": "e2", "entity_id": "c2", "ts": 2, "amount": "9.5", "channel": "web"}',
    ...     b'not json',
    ... ])
    >>> batch.event_ids, batch.numeric["amount"].tolist(), batch.targets.tolist()
    (['e1'], [9.5], [0.0])
    >>> [(r.index, r.reason) for r in batch.rejected]
    [(1, 'wrong_type'), (2, 'not_json')]
    """

    def __init__(self, schema: SchemaConfig) -> None:
        self.schema = schema
        self.numeric_fields = [
            name for name, spec in schema.features.items() if spec.type != FieldType.CATEGORY
        ]
        self.category_fields = [
            name for name, spec in schema.features.items() if spec.type == FieldType.CATEGORY
        ]

    def decode(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Decode a batch of message values; never raises because of what they contain."""
        try:
            return self._decode_columns(values)
        except Exception as exc:
            # A message no check foresaw must cost that message, not the pipeline (a batch that
            # raises is never committed, so the processor would fail on it again and again).
            log.warning(
                "decoding %d messages column-wise failed (%s); decoding them one by one",
                len(values),
                exception_text(exc),
            )
            return self._decode_one_by_one(values)

    def _decode_columns(self, values: Sequence[bytes | None]) -> DecodedBatch:
        rejected: dict[int, Rejection] = {}
        records, positions = self._parse(values, rejected)
        v = _Verdicts(records, positions, rejected)
        s = self.schema
        event_ids = self._strings(v, s.id, "a string id", allow_empty=False)
        entity_ids = self._strings(v, s.entity, "a string id", allow_empty=False)
        ts = self._numbers(v, s.timestamp, _NUMBER_TYPES)
        limit = s.max_abs_value
        numeric = {
            name: self._numbers(v, name, self._allowed(name), limit) for name in self.numeric_fields
        }
        categorical = {
            name: self._strings(v, name, "a string", allow_empty=True)
            for name in self.category_fields
        }
        targets = self._targets(v)
        self._check_time_range(v, ts)
        keep = ~v.bad
        rows = np.flatnonzero(keep)
        all_kept = bool(keep.all())
        return DecodedBatch(
            index=np.asarray(positions, dtype=np.int64)[keep],
            event_ids=event_ids if all_kept else [event_ids[i] for i in rows],
            entity_ids=entity_ids if all_kept else [entity_ids[i] for i in rows],
            timestamps_ms=ts[keep].astype(np.int64),
            numeric={k: col[keep] for k, col in numeric.items()},
            categorical={
                k: col if all_kept else [col[i] for i in rows] for k, col in categorical.items()
            },
            targets=targets[keep],
            rejected=sorted(rejected.values(), key=lambda r: r.index),
        )

    def _decode_one_by_one(self, values: Sequence[bytes | None]) -> DecodedBatch:
        rows: list[tuple[int, DecodedBatch]] = []
        rejected: list[Rejection] = []
        for i, value in enumerate(values):
            try:
                one = self._decode_columns([value])
            except Exception as exc:
                rejected.append(Rejection(i, "undecodable", exception_text(exc)))
                continue
            rejected.extend(Rejection(i, r.reason, r.detail) for r in one.rejected)
            if len(one):
                rows.append((i, one))
        return DecodedBatch(
            index=np.array([i for i, _ in rows], dtype=np.int64),
            event_ids=[one.event_ids[0] for _, one in rows],
            entity_ids=[one.entity_ids[0] for _, one in rows],
            timestamps_ms=np.array([one.timestamps_ms[0] for _, one in rows], dtype=np.int64),
            numeric={
                k: np.array([one.numeric[k][0] for _, one in rows], dtype=np.float64)
                for k in self.numeric_fields
            },
            categorical={
                k: [one.categorical[k][0] for _, one in rows] for k in self.category_fields
            },
            targets=np.array([one.targets[0] for _, one in rows], dtype=np.float64),
            rejected=rejected,
        )

    def _check_time_range(self, v: _Verdicts, ts: np.ndarray) -> None:
        # Epoch milliseconds from 1970 to year ~287000: anything else is a unit mistake.
        outside = (ts < 0) | (ts > MAX_TIMESTAMP_MS)
        name = self.schema.timestamp
        # As floats, integers just past the bound round down onto it: compare those exactly.
        for k in np.flatnonzero((ts == MAX_TIMESTAMP_MS) & ~v.bad).tolist():
            outside[k] = v.records[k][name] > MAX_TIMESTAMP_MS
        for k in np.flatnonzero(outside & ~v.bad).tolist():
            value = describe(v.records[k][name])
            v.mark(k, "out_of_range", f"field {name!r}: {value} is not epoch milliseconds")

    def _allowed(self, name: str) -> set[type]:
        kind = self.schema.features[name].type
        return _INT_TYPES if kind in (FieldType.INT, FieldType.BOOL) else _NUMBER_TYPES

    def _parse(
        self, values: Sequence[bytes | None], rejected: dict[int, Rejection]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        limit = self.schema.max_event_bytes
        try:  # a clean batch, every message a JSON object within the limit: C loops only
            if values and min(map(len, values)) > 0 and max(map(len, values)) <= limit:  # type: ignore[arg-type]
                parsed = list(map(orjson.loads, values))  # type: ignore[arg-type]
                if set(map(type, parsed)) == {dict}:
                    return parsed, list(range(len(values)))
        except (TypeError, orjson.JSONDecodeError):  # a None value, a message that is not JSON
            pass  # found and named one by one below
        records: list[dict[str, Any]] = []
        positions: list[int] = []
        for i, value in enumerate(values):
            if not value:
                rejected[i] = Rejection(i, "empty", "message has no value")
                continue
            if len(value) > limit:
                rejected[i] = Rejection(i, "oversized", f"{len(value)} bytes > {limit}")
                continue
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                rejected[i] = unparsable(i, exc)
                continue
            if type(record) is not dict:
                detail = f"expected a JSON object, got {describe(record)}"
                rejected[i] = Rejection(i, "not_object", detail)
                continue
            records.append(record)
            positions.append(i)
        return records, positions

    @staticmethod
    def _strings(v: _Verdicts, name: str, expected: str, *, allow_empty: bool) -> list[str]:
        column: list[Any] = [r.get(name) for r in v.records]
        if set(map(type, column)) <= {str} and (allow_empty or "" not in column):
            return column
        for j, value in enumerate(column):
            if type(value) in _ID_TYPES and (allow_empty or value != ""):
                column[j] = str(value)
            else:
                v.reject(j, name, value, expected)
                column[j] = ""
        return column

    @staticmethod
    def _numbers(
        v: _Verdicts, name: str, allowed: set[type], limit: float | None = None
    ) -> np.ndarray:
        column: list[Any] = [r.get(name) for r in v.records]
        if not set(map(type, column)) <= allowed:
            expected = "an integer" if allowed is _INT_TYPES else "a number"
            for j, value in enumerate(column):
                if type(value) not in allowed:
                    v.reject(j, name, value, expected)
                    column[j] = 0
        array = np.array(column, dtype=np.float64) if column else np.empty(0)
        for k in np.flatnonzero(~np.isfinite(array)).tolist():
            v.mark(k, "not_finite", f"field {name!r} is {describe(column[k])}")
        if limit is not None:
            for k in np.flatnonzero(np.abs(array) > limit).tolist():
                v.mark(k, "out_of_range", f"field {name!r}: |{describe(column[k])}| > {limit:g}")
        return array

    def _targets(self, v: _Verdicts) -> np.ndarray:
        name = self.schema.target
        out = np.full(len(v.records), np.nan)
        if name is None:
            return out
        column: list[Any] = [r.get(name) for r in v.records]
        if set(map(type, column)) <= _TARGET_TYPES:
            out = np.array(column, dtype=np.float64)  # None (no label) becomes NaN
            wrong = np.flatnonzero(~np.isnan(out) & (out != 0) & (out != 1)).tolist()
        else:  # a value of another type somewhere: find it row by row
            out, wrong = np.full(len(column), np.nan), []
            for j, value in enumerate(column):
                if type(value) in _TARGET_TYPES and value in (0, 1):
                    out[j] = value
                elif value is not None:
                    wrong.append(j)
        for j in wrong:
            detail = f"field {name!r}: expected 0/1 or true/false, got {describe(column[j])}"
            v.mark(j, "wrong_type", detail)
        return out


class _Verdicts:
    """Which parsed records failed validation and why; the first problem found is the one kept."""

    def __init__(
        self, records: list[dict[str, Any]], positions: list[int], rejected: dict[int, Rejection]
    ) -> None:
        self.records = records
        self.positions = positions
        self.rejected = rejected
        self.bad = np.zeros(len(records), dtype=bool)

    def mark(self, j: int, reason: str, detail: str) -> None:
        """Reject parsed record ``j`` (unless it already was)."""
        if not self.bad[j]:
            self.bad[j] = True
            self.rejected[self.positions[j]] = Rejection(self.positions[j], reason, detail)

    def reject(self, j: int, name: str, value: object, expected: str) -> None:
        """Reject record ``j`` for its field ``name``: missing, or not ``expected``."""
        if name not in self.records[j]:
            self.mark(j, "missing_field", f"field {name!r} is missing")
        else:
            self.mark(
                j, "wrong_type", f"field {name!r}: expected {expected}, got {describe(value)}"
            )
