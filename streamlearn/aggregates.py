"""Per-entity streaming features: counts, sums, means, extremes, distinct values and recency.

Pure logic. The caller loads each entity's :class:`EntityState`, :meth:`Aggregator.apply` computes
every event's features from the history before it and folds the event in, the caller saves.

Semantics (what ``tests/unit/test_aggregates.py`` checks against a brute-force reference):

- **Windows.** ``W`` is cut into 64 epoch-aligned buckets of ``b = ceil(W / 64)`` ms. An event at
  time ``t`` (bucket ``k = t // b``) aggregates the entity's applied events in buckets
  ``k-63 .. k-1`` (all strictly earlier in event time, whenever they arrived), plus those of its
  own bucket ``k`` when none of them is later than ``t`` (ties count: they arrived first). An
  out-of-order event whose bucket holds a later event leaves that bucket out, so features never
  see the future; in-order streams always include it. So a window covers between ``W - b`` and
  ``W`` of history before the event.
- **Distinct** counts the distinct values united over those buckets; each bucket remembers at most
  ``distinct_cap`` (64) values, the first it saw, so the count saturates rather than grows.
- **Recency.** ``last``/``since_last`` look at the entity's ``recent`` (8) newest applied events
  by event time and take the newest one at or before ``t`` (ties: arrived earlier); if there is
  none (a new entity, or an event older than all eight), the spec's fill value.
- **Lateness.** An event older than the entity's newest applied event by more than
  ``allowed_lateness_s`` is *too late*: it gets features but is not folded in. State keeps the
  buckets that events still within lateness can need (``64 + ceil(lateness / b)`` behind the
  newest bucket); a too-late event sees only those.
- **Exactly once.** State records the highest offset applied per partition. An event at or below
  it is a *replay*: it is not folded in again, and its features come from the state as it is now,
  restricted to what certainly precedes it: buckets before its own, and recent events strictly
  earlier. They can differ from the first delivery's features; reuse stored ones where you have
  them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlearn.aggregate_windows import (
    BUCKETS_PER_WINDOW,
    DISTINCT_CAP,
    Bucket,
    EntityState,
    WindowBuckets,
    bucket_width_ms,
    value_hashes,
)
from streamlearn.config_aggregates import DEFAULT_ALLOWED_LATENESS_S, AggregateFn, AggregateSpec

__all__ = [
    "APPLIED",
    "RECENT_EVENTS",
    "REPLAYED",
    "TOO_LATE",
    "AggregateResult",
    "Aggregator",
    "EntityState",
]

RECENT_EVENTS = 8
# How long ``last``/``since_last`` remember an idle entity (the state's TTL, beside windows).
LAST_MEMORY_S = 7 * 86400
APPLIED, REPLAYED, TOO_LATE = 0, 1, 2

Evaluator = Callable[[Bucket, Bucket], float]


@dataclass(slots=True)
class AggregateResult:
    """The features of one batch, one array per aggregate, and what happened to each event.

    ``outcome`` holds ``APPLIED``, ``REPLAYED`` or ``TOO_LATE`` per row; ``changed`` names the
    entities whose state changed (the ones worth saving).
    """

    features: dict[str, np.ndarray]
    outcome: np.ndarray
    changed: set[str] = field(default_factory=set)

    @property
    def too_late(self) -> int:
        """Events too late to fold in (they still got features)."""
        return int(np.count_nonzero(self.outcome == TOO_LATE))

    @property
    def replayed(self) -> int:
        """Events at or below the offset their entity's state had already applied."""
        return int(np.count_nonzero(self.outcome == REPLAYED))


@dataclass(frozen=True, slots=True)
class _Group:
    """The aggregates sharing one bucket width, and how to read each from a summary."""

    width: int
    numeric: tuple[str, ...]
    categories: tuple[str, ...]
    horizon: int  # buckets kept behind the newest one: the window plus the lateness
    empty: Bucket
    evaluators: tuple[tuple[int, Evaluator], ...]


class Aggregator:
    """Computes per-entity aggregate features of a batch and folds the batch into the states.

    Parameters
    ----------
    specs
        Feature name -> :class:`AggregateSpec`; each becomes one float column.
    allowed_lateness_s
        How far behind an entity's newest event an event may be and still be folded in.
    category_fields
        The schema's category fields (those a ``count`` with a ``field`` may name); fields of
        ``distinct`` aggregates are categories anyway, every other field is numeric.
    distinct_cap
        Distinct values remembered per bucket.
    recent
        Newest events remembered for ``last`` and ``since_last``.

    Examples
    --------
    >>> specs = {"n_1h": AggregateSpec(fn="count", window="1h"),
    ...          "spend_1h": AggregateSpec(fn="sum", field="amount", window="1h"),
    ...          "gap_s": AggregateSpec(fn="since_last")}
    >>> agg, states = Aggregator(specs), {}
    >>> r = agg.apply(states, ["c1", "c1", "c2", "c1"], np.array([0, 60_000, 60_000, 120_000]),
    ...               {"amount": np.array([10.0, 5.0, 7.0, 1.0])}, {}, [0, 0, 1, 0], [0, 1, 0, 2])
    >>> r.features["n_1h"].tolist(), r.features["spend_1h"].tolist(), r.features["gap_s"].tolist()
    ([0.0, 1.0, 0.0, 2.0], [0.0, 10.0, 0.0, 15.0], [-1.0, 60.0, -1.0, 60.0])
    >>> saved = {e: s.to_bytes() for e, s in states.items() if e in r.changed}
    >>> states = {e: EntityState.from_bytes(b) for e, b in saved.items()}
    >>> again = agg.apply(states, ["c1"], np.array([120_000]), {"amount": np.array([1.0])}, {},
    ...                   [0], [2])  # the last event, delivered again after a crash
    >>> again.replayed, again.features["n_1h"].tolist(), again.changed
    (1, [2.0], set())
    """

    def __init__(
        self,
        specs: Mapping[str, AggregateSpec],
        allowed_lateness_s: float = DEFAULT_ALLOWED_LATENESS_S,
        *,
        category_fields: Collection[str] = (),
        distinct_cap: int = DISTINCT_CAP,
        recent: int = RECENT_EVENTS,
    ) -> None:
        self.names = list(specs)
        self._categories = set(category_fields) | {
            s.field for s in specs.values() if s.fn == AggregateFn.DISTINCT and s.field
        }
        self.specs = dict(specs)
        self.lateness_ms = round(allowed_lateness_s * 1000)
        self.distinct_cap = distinct_cap
        self.recent_size = recent
        self._groups = tuple(self._group(w) for w in sorted(self._widths()))
        self._layouts = {g.width: (g.numeric, g.categories) for g in self._groups}
        recency = [
            (i, spec)
            for i, spec in enumerate(specs.values())
            if spec.fn in (AggregateFn.LAST, AggregateFn.SINCE_LAST)
        ]
        self.recent_fields = tuple(dict.fromkeys(s.field for _, s in recency if s.field))
        # (column, value position or -1 for since_last, fill)
        self._recent_specs = tuple(
            (i, self.recent_fields.index(s.field) if s.field else -1, s.fill_value)
            for i, s in recency
        )
        self.numeric_fields = tuple(
            dict.fromkeys([f for g in self._groups for f in g.numeric] + list(self.recent_fields))
        )
        self.category_fields = tuple(dict.fromkeys(f for g in self._groups for f in g.categories))
        longest = max((s.window_s or 0.0 for s in specs.values()), default=0.0)
        if self._recent_specs:
            longest = max(longest, LAST_MEMORY_S)
        self.state_ttl_s = math.ceil(longest + allowed_lateness_s)

    def new_state(self) -> EntityState:
        """A state with no history, laid out for these aggregates."""
        state = EntityState()
        self._bind(state)
        return state

    def apply(
        self,
        states: dict[str, EntityState],
        entities: Sequence[str],
        ts_ms: np.ndarray,
        numbers: Mapping[str, np.ndarray],
        categories: Mapping[str, Sequence[str | None]],
        partitions: Sequence[int],
        offsets: Sequence[int],
    ) -> AggregateResult:
        """Features of each row from its entity's history before it; then fold the row in.

        Rows are taken in order; ``states`` gains a fresh state for each entity it lacks and is
        updated in place. ``numbers`` must hold :attr:`numeric_fields` (NaN: absent) and
        ``categories`` :attr:`category_fields` (``None``: absent).
        """
        n = len(entities)
        times: list[int] = np.asarray(ts_ms, dtype=np.int64).tolist()
        numeric = {f: _values(numbers[f]) for f in self.numeric_fields}
        hashes = {f: value_hashes(categories[f]) for f in self.category_fields}
        rows = [self._state(states, entity) for entity in entities]
        outcome, newest = self._classify(rows, times, list(partitions), list(offsets))
        out = [[0.0] * n for _ in self.names]
        for g in self._groups:
            values = _rows([numeric[f] for f in g.numeric], n)
            codes = _rows([hashes[f] for f in g.categories], n)
            self._window_pass(g, rows, times, outcome, newest, values, codes, out)
        if self._recent_specs:
            recent = _rows([numeric[f] for f in self.recent_fields], n)
            self._recent_pass(rows, times, outcome, recent, out)
        changed = {e for e, o in zip(entities, outcome) if o != REPLAYED}
        features = {name: np.array(col, dtype=np.float64) for name, col in zip(self.names, out)}
        return AggregateResult(features, np.array(outcome, dtype=np.int8), changed)

    def _state(self, states: dict[str, EntityState], entity: str) -> EntityState:
        state = states.get(entity)
        if state is None:
            state = states[entity] = self.new_state()
        elif state.bound is not self:
            self._bind(state)
        return state

    def _classify(
        self, rows: list[EntityState], times: list[int], partitions: list[int], offsets: list[int]
    ) -> tuple[list[int], list[int | None]]:
        """Each row's outcome and its entity's newest applied time before it; records offsets."""
        outcome = [APPLIED] * len(rows)
        newest_before: list[int | None] = [None] * len(rows)
        lateness = self.lateness_ms
        for i, state in enumerate(rows):
            newest_before[i] = newest = state.newest_ts
            p, o, t = partitions[i], offsets[i], times[i]
            seen = state.positions.get(p)
            if seen is not None and o <= seen:
                outcome[i] = REPLAYED
                continue
            state.positions[p] = o
            if newest is None or t > newest:
                state.newest_ts = t
            elif newest - t > lateness:
                outcome[i] = TOO_LATE
        return outcome, newest_before

    def _window_pass(
        self,
        g: _Group,
        rows: list[EntityState],
        times: list[int],
        outcome: list[int],
        newest: list[int | None],
        values: list[tuple[float, ...]],
        codes: list[tuple[int | None, ...]],
        out: list[list[float]],
    ) -> None:
        """One window's features for every row, each from the buckets before it; then its fold."""
        width, horizon, empty, evaluators = g.width, g.horizon, g.empty, g.evaluators
        reach, cap = BUCKETS_PER_WINDOW - 1, self.distinct_cap
        for i, state in enumerate(rows):
            w = state.windows[width]
            t = times[i]
            k = t // width
            lo = k - reach
            top = newest[i]
            if top is not None and top // width - horizon >= lo:
                lo = top // width - horizon + 1  # only what the state still keeps
            s, head = w.summary(lo, k)
            status = outcome[i]
            # The own bucket counts unless it holds a later event (or the event is replayed).
            if head < 0 or k < lo or status == REPLAYED or w.rows[head][1] > t:
                h = empty
            else:
                h = w.rows[head]
            for j, evaluate in evaluators:
                out[j][i] = evaluate(s, h)
            if status == APPLIED:
                w.add(t, values[i], codes[i], cap)
                if (top is None or k > top // width) and w.keys[0] <= k - horizon:
                    w.evict_before(k - horizon + 1)

    def _recent_pass(
        self,
        rows: list[EntityState],
        times: list[int],
        outcome: list[int],
        values: list[tuple[float, ...]],
        out: list[list[float]],
    ) -> None:
        """``last`` and ``since_last`` of every row; then the row joins its recent events."""
        specs, size = self._recent_specs, self.recent_size
        for i, state in enumerate(rows):
            t, recent = times[i], state.recent
            exclusive = outcome[i] == REPLAYED
            previous = None
            for entry in reversed(recent):
                if entry[0] < t or (entry[0] == t and not exclusive):
                    previous = entry
                    break
            for j, position, fill in specs:
                if previous is None:
                    out[j][i] = fill
                elif position < 0:  # since_last
                    out[j][i] = (t - previous[0]) / 1000.0
                else:
                    value = previous[1][position]
                    out[j][i] = value if value == value else fill
            if outcome[i] != APPLIED:
                continue
            if not recent or recent[-1][0] <= t:
                recent.append((t, values[i]))
            else:  # after the events of the same time: they arrived first
                bisect.insort_right(recent, (t, values[i]), key=lambda e: e[0])
            if len(recent) > size:
                del recent[0]

    def _bind(self, state: EntityState) -> None:
        """Lay a state out for these aggregates (it may come from another configuration)."""
        layouts = {width: (w.numeric, w.categories) for width, w in state.windows.items()}
        if (
            layouts == self._layouts
            and state.recent_fields == self.recent_fields
            and len(state.recent) <= (self.recent_size if self._recent_specs else 0)
        ):
            state.bound = self
            return
        widths = {g.width for g in self._groups}
        for width in [w for w in state.windows if w not in widths]:
            del state.windows[width]
        for g in self._groups:
            w = state.windows.get(g.width)
            if w is None:
                state.windows[g.width] = WindowBuckets(g.width, g.numeric, g.categories)
            else:
                w.relayout(g.numeric, g.categories)
        if not self._recent_specs:
            state.recent = []
        if state.recent_fields != self.recent_fields:
            where = [
                state.recent_fields.index(f) if f in state.recent_fields else -1
                for f in self.recent_fields
            ]
            state.recent = [
                (ts, tuple(values[k] if k >= 0 else math.nan for k in where))
                for ts, values in state.recent
            ]
            state.recent_fields = self.recent_fields
        del state.recent[: max(0, len(state.recent) - self.recent_size)]
        state.bound = self

    def _widths(self) -> set[int]:
        return {bucket_width_ms(s.window_s) for s in self.specs.values() if s.window_s is not None}

    def _group(self, width: int) -> _Group:
        specs = [
            (i, s)
            for i, s in enumerate(self.specs.values())
            if s.window_s is not None and bucket_width_ms(s.window_s) == width
        ]
        fields = [s.field for _, s in specs if s.field is not None]
        numeric = tuple(dict.fromkeys(f for f in fields if f not in self._categories))
        categories = tuple(dict.fromkeys(f for f in fields if f in self._categories))
        end = 2 + 4 * len(numeric)
        slots = {f: 2 + 4 * k for k, f in enumerate(numeric)}
        slots.update({f: end + 2 * k for k, f in enumerate(categories)})
        evaluators = tuple((i, _evaluator(s, slots)) for i, s in specs)
        lateness_buckets = math.ceil(self.lateness_ms / width)
        empty = WindowBuckets(width, numeric, categories).empty()
        horizon = BUCKETS_PER_WINDOW + lateness_buckets
        return _Group(width, numeric, categories, horizon, empty, evaluators)


def _evaluator(spec: AggregateSpec, slots: Mapping[str, int]) -> Evaluator:
    """How to read ``spec`` from a summary ``s`` of earlier buckets and the head bucket ``h``."""
    fn, fill = spec.fn, spec.fill_value
    if spec.field is None:  # count of events
        return lambda s, h: float(s[0] + h[0])
    a = slots[spec.field]
    if fn == AggregateFn.COUNT:
        return lambda s, h: float(s[a] + h[a])
    if fn == AggregateFn.SUM:
        return lambda s, h: s[a + 1] + h[a + 1]
    if fn == AggregateFn.MEAN:
        return lambda s, h: (s[a + 1] + h[a + 1]) / n if (n := s[a] + h[a]) else fill
    if fn == AggregateFn.MIN:
        return lambda s, h: m if (m := min(s[a + 2], h[a + 2])) != math.inf else fill
    if fn == AggregateFn.MAX:
        return lambda s, h: m if (m := max(s[a + 3], h[a + 3])) != -math.inf else fill
    # distinct: the head's values not already among the earlier buckets' ones
    return lambda s, h: float(len(s[a + 1]) + len(h[a + 1].difference(s[a + 1])))


def _rows(columns: Sequence[Sequence[Any]], n: int) -> list[tuple[Any, ...]]:
    """Row tuples of ``columns`` (``n`` empty tuples when there are none)."""
    return list(zip(*columns)) if columns else [()] * n


def _values(column: np.ndarray | Sequence[float]) -> list[float]:
    return np.asarray(column, dtype=np.float64).tolist()
