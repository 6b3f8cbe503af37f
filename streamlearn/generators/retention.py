"""A synthetic customer-activity stream whose churn follows a hidden, fading engagement.

Activity events and their delayed churn labels come out as one stream in event-time order.
Generation is vectorised one day at a time, so the stream for a seed is the same however the
caller slices it.

Customers belong to a segment (casual, regular, power) and a plan (basic, pro). Each has a latent
engagement that wanders from day to day; now and then a customer starts to fade: engagement slides
for weeks (fewer and shorter sessions, more support tickets) and the daily churn hazard climbs with
it, unless the customer recovers. Spells of payment trouble bring payment failures and some churn.
A churned customer sends nothing more. So a customer's recent history (sessions in 7 and 30 days,
days since the last one, tickets, failures) predicts churn well; one event on its own hardly does.

A sample of events (``label_fraction``) is labelled: ``churned`` is 1 if the customer churns
within ``label_delay_days`` of the event, and the label is sent when that is known, exactly
``label_delay_days`` after the event. At ``drift_at`` a price rise changes who churns: basic-plan
customers in payment trouble leave far more often, power users less often.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

SEGMENTS = ("casual", "regular", "power")
PLANS = ("basic", "pro")
EVENT_TYPES = ("session", "purchase", "support_ticket", "plan_change", "payment_failure")
SESSION, PURCHASE, TICKET, PLAN_CHANGE, PAYMENT_FAILURE = range(len(EVENT_TYPES))
DAY_MS = 86_400_000

FIELD_TYPES: dict[str, str] = {
    "event_type": "category",
    "amount": "float",
    "duration_s": "float",
    "plan": "category",
    "segment": "category",
}
"""The feature fields and their types, as the ``schema.features`` of a pipeline names them."""


AGGREGATES: dict[str, dict[str, Any]] = {
    "events_7d": {"fn": "count", "window": "7d"},
    "events_30d": {"fn": "count", "window": "30d"},
    "session_time_7d": {"fn": "sum", "field": "duration_s", "window": "7d"},
    "session_time_30d": {"fn": "sum", "field": "duration_s", "window": "30d"},
    "mean_duration_30d": {"fn": "mean", "field": "duration_s", "window": "30d"},
    "longest_session_30d": {"fn": "max", "field": "duration_s", "window": "30d"},
    "spend_30d": {"fn": "sum", "field": "amount", "window": "30d"},
    "event_types_30d": {"fn": "distinct", "field": "event_type", "window": "30d"},
    "since_last_s": {"fn": "since_last"},
}
"""Per-customer aggregates that predict churn, as a pipeline's ``schema.aggregates`` names them.

Each is a function of the customer's events before the scored one: within the trailing
``window``, or the time since the previous event. Non-sessions have ``duration_s`` 0 and
non-purchases ``amount`` 0, so sums and means of them need no filter by event type.
"""

Message = tuple[str, str, dict[str, Any], int]
"""``(topic_kind, key, value, timestamp_ms)``: topic_kind is ``"events"`` or ``"labels"``."""

_SEGMENT_SHARE = (0.50, 0.35, 0.15)
_PRO_SHARE = np.array([0.15, 0.40, 0.70])  # by segment
_SESSIONS_PER_DAY = np.array([0.5, 1.0, 2.0])  # at engagement 0, before scaling to `events`
_SESSION_S = np.array([180.0, 420.0, 900.0])  # median session at engagement 0
_FADE_START = np.array([0.0025, 0.002, 0.0015])  # daily chance an engaged customer starts to fade
_FADE_STEP, _FADE_RECOVER = 0.02, 0.015  # engagement lost per faded day; daily chance to recover
_HAZARD_BASE = np.array([-10.3, -10.5, -10.7])  # daily churn logit at engagement 0
_WEEKDAY = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 0.65, 0.6])  # Monday .. Sunday
# Activity by hour of the day: quiet nights, a daytime plateau and an evening peak.
_HOUR_SHARE = np.array(
    [10, 6, 4, 3, 3, 5, 10, 20, 30, 35, 35, 35, 40, 35, 35, 35, 40, 45, 55, 65, 70, 60, 40, 20],
    dtype=np.float64,
)
_HOUR_SHARE /= _HOUR_SHARE.sum()
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday
_PILOT_CUSTOMERS = 5_000
_EVENT_FIELDS = ("event_id", "customer_id", "ts", *FIELD_TYPES)


class RetentionGenerator:
    """A deterministic stream of customer activity with delayed churn labels.

    Parameters
    ----------
    seed
        Fixes the customers and every event; the same seed gives the same stream.
    customers
        How many customers there are at the start; none join later.
    events
        The planned number of activity events: activity is scaled so that this many events
        span about ``days`` days of event time. The stream goes on past it if asked.
    days
        The event-time span of the planned ``events``.
    label_fraction
        The share of events that get a churn label.
    label_delay_days
        The churn horizon, and the delay of each label: a label says whether the customer churns
        within this many days of the event, and it is sent that long after the event.
    drift_at
        The price rise that changes who churns takes effect on the first day that starts at or
        after this activity event (by index); None for no drift.
    start_ms
        Start of the first day (epoch ms, best a UTC midnight); None means today's UTC midnight.

    Examples
    --------
    >>> gen = RetentionGenerator(seed=1, customers=200, events=2_000, start_ms=0)
    >>> kind, key, event, ts = next(gen.messages(1))
    >>> kind, key == event["customer_id"], ts == event["ts"], event["event_type"] in EVENT_TYPES
    ('events', True, True, True)
    >>> sorted(event) == sorted(["event_id", "customer_id", "ts", *FIELD_TYPES])
    True
    >>> later = list(gen.messages(1_000))
    >>> sum(kind == "events" for kind, *_ in later)
    1000
    >>> label = next(value for kind, _, value, _ in later if kind == "labels")
    >>> sorted(label), label["churned"] in (0, 1)
    (['churned', 'event_id'], True)
    """

    def __init__(
        self,
        seed: int = 0,
        customers: int = 50_000,
        events: int = 2_000_000,
        days: float = 120.0,
        label_fraction: float = 0.2,
        label_delay_days: float = 30.0,
        drift_at: int | None = None,
        start_ms: int | None = None,
    ) -> None:
        if customers < 1 or events < 1 or days <= 0 or label_delay_days <= 0:
            raise ValueError("customers, events, days and label_delay_days must be positive")
        if not 0.0 < label_fraction <= 1.0:
            raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}")
        self.seed = seed
        self.drift_at = drift_at
        self.label_fraction = label_fraction
        self.delay_ms = int(label_delay_days * DAY_MS)
        if start_ms is None:
            start_ms = int(time.time() * 1000) // DAY_MS * DAY_MS
        self.start_ms = start_ms
        self._customers = _Customers(np.random.default_rng([seed, 1]), customers)
        self._customers.settle(np.random.default_rng([seed, 3]))
        self._scale = events / _expected_events(
            self._customers, np.random.default_rng([seed, 2]), days, start_ms
        )
        self._rng = np.random.default_rng([seed, 0])
        self._day = 0
        self._count = 0  # activity events generated so far
        self._pending: deque[tuple[np.ndarray, list[str], np.ndarray]] = deque()
        self._buffer: list[Message] = []
        self._cursor = 0

    @property
    def churn_times(self) -> dict[str, int]:
        """When each customer churned (epoch ms), for the days simulated so far."""
        c = self._customers
        churned = np.flatnonzero(np.isfinite(c.churn_ts))
        return dict(zip(c.ids[churned].tolist(), c.churn_ts[churned].astype(np.int64).tolist()))

    def messages(self, n: int) -> Iterator[Message]:
        """Yield the next ``n`` activity events and the labels that come due meanwhile.

        Labels due after the ``n``-th event wait for the next call. The stream ends early
        only when every customer has churned.
        """
        produced = 0
        while produced < n:
            if self._cursor == len(self._buffer) and not self._fill():
                return
            message = self._buffer[self._cursor]
            self._cursor += 1
            produced += message[0] == "events"
            yield message

    def events(self, n: int) -> Iterator[dict[str, Any]]:
        """Yield the next ``n`` activity events, dropping the labels in between."""
        for kind, _, value, _ in self.messages(n):
            if kind == "events":
                yield value

    def _fill(self) -> bool:
        while self._customers.active.any() or self._pending:
            self._buffer, self._cursor = self._next_day(), 0
            if self._buffer:
                return True
        return False

    def _next_day(self) -> list[Message]:
        day_start = self.start_ms + self._day * DAY_MS
        drifted = self.drift_at is not None and self._count >= self.drift_at
        weekday = _WEEKDAY[(self.start_ms // DAY_MS + self._day + _EPOCH_WEEKDAY) % 7]
        c, rng = self._customers, self._rng
        churning = c.active & (rng.random(c.size) < _sigmoid(c.hazard_logit(drifted)))
        c.churn_ts[churning] = np.floor(day_start + rng.random(int(churning.sum())) * DAY_MS)
        day = _draw_day(rng, c, c.daily_rates(weekday) * self._scale, day_start)
        c.active &= ~churning
        c.step(rng)  # after the day's plan changes: tomorrow's payment trouble depends on plans
        self._day += 1
        ids = [f"ev-{self.seed}-{i:09d}" for i in range(self._count, self._count + len(day.ts))]
        self._count += len(ids)
        labelled = np.flatnonzero(rng.random(len(ids)) < self.label_fraction)
        if labelled.size:
            due = day.ts[labelled] + self.delay_ms
            self._pending.append((due, [ids[i] for i in labelled], day.customer[labelled]))
        return _merge(day.messages(c, ids), self._due_labels(day_start + DAY_MS), day.ts)

    def _due_labels(self, before_ms: int) -> tuple[list[Message], np.ndarray]:
        due, ids, customer = [], [], []
        while self._pending and self._pending[0][0][0] < before_ms:
            at, chunk_ids, chunk_customer = self._pending.popleft()
            cut = int(np.searchsorted(at, before_ms))
            if cut < len(at):
                self._pending.appendleft((at[cut:], chunk_ids[cut:], chunk_customer[cut:]))
            due.append(at[:cut])
            ids += chunk_ids[:cut]
            customer.append(chunk_customer[:cut])
        if not ids:
            return [], np.empty(0, dtype=np.int64)
        known = np.concatenate(due)
        who = np.concatenate(customer)
        churned = (self._customers.churn_ts[who] <= known).astype(np.int64).tolist()
        keys = self._customers.ids[who].tolist()
        labels = [
            ("labels", key, {"event_id": event_id, "churned": flag}, at)
            for key, event_id, flag, at in zip(keys, ids, churned, known.tolist())
        ]
        return labels, known


def retention_messages(
    n: int, *, seed: int = 0, drift_at: int | None = None, **options: Any
) -> Iterator[Message]:
    """Yield ``n`` activity events and their due labels; ``options`` go to the generator.

    Examples
    --------
    >>> stream = list(retention_messages(3_000, seed=2, customers=100, events=3_000, start_ms=0))
    >>> times = [ts for *_, ts in stream]
    >>> times == sorted(times)
    True
    >>> sorted({kind for kind, *_ in stream})
    ['events', 'labels']
    """
    return RetentionGenerator(seed=seed, drift_at=drift_at, **options).messages(n)


class _Customers:
    """The customer base: who they are, their hidden engagement, and when they churned."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        width = max(5, len(str(n - 1)))
        self.size = n
        self.ids = np.array([f"cust-{i:0{width}d}" for i in range(n)], dtype=object)
        self.segment = rng.choice(len(SEGMENTS), n, p=_SEGMENT_SHARE)
        self.plan = (rng.random(n) < _PRO_SHARE[self.segment]).astype(np.int64)
        self.base = rng.normal(0.0, 0.3, n)  # lasting differences in how much each one uses it
        self.wander = rng.normal(0.0, 0.3, n)  # day-to-day ups and downs (AR(1))
        self.decline = np.zeros(n)  # engagement lost while fading
        self.fading = np.zeros(n, dtype=bool)
        self.trouble = rng.random(n) < 0.02  # a payment problem (expired card, no funds)
        self.active = np.ones(n, dtype=bool)
        self.churn_ts = np.full(n, np.inf)

    def subset(self, rows: np.ndarray) -> _Customers:
        """A copy holding only the customers at ``rows``."""
        twin = object.__new__(_Customers)
        twin.__dict__ = {
            k: v[rows] if isinstance(v, np.ndarray) else v for k, v in vars(self).items()
        }
        twin.size = len(rows)
        return twin

    def settle(self, rng: np.random.Generator, days: int = 150) -> None:
        """Run the hidden state to its steady mix of engaged and fading customers.

        Whoever churns meanwhile is replaced by a fresh customer in the same slot, so the stream
        starts with as many customers as asked, some of them already fading.
        """
        for _ in range(days):
            churning = rng.random(self.size) < _sigmoid(self.hazard_logit(drifted=False))
            self.decline[churning], self.fading[churning] = 0.0, False
            self.step(rng)

    def engagement(self) -> np.ndarray:
        return self.base + self.wander - self.decline

    def step(self, rng: np.random.Generator) -> None:
        """Move every customer's hidden state on by one day."""
        self.wander = 0.9 * self.wander + rng.normal(0.0, 0.13, self.size)
        fades, recovers, troubled, sorted_out = rng.random((4, self.size))
        self.fading = (self.fading | (fades < _FADE_START[self.segment])) & (
            recovers >= _FADE_RECOVER
        )
        self.decline = np.where(self.fading, self.decline + _FADE_STEP, self.decline * 0.85)
        troubled_today = troubled < np.where(self.plan == 0, 0.003, 0.0012)
        self.trouble = (self.trouble | troubled_today) & (sorted_out >= 0.1)

    def hazard_logit(self, drifted: bool) -> np.ndarray:
        """Today's churn log-odds: fading and payment trouble drive it, the price rise shifts it."""
        logit = (
            _HAZARD_BASE[self.segment]
            - 0.8 * self.base
            - 0.5 * self.wander
            + 5.0 * self.decline
            + 4.0 * self.trouble
        )
        if drifted:
            logit += 3.0 * (self.trouble & (self.plan == 0)) - 3.0 * (self.segment == 2)
        return logit

    def daily_rates(self, weekday: float) -> np.ndarray:
        """Expected events of each type today, shape (event types, customers), before scaling."""
        z = self.engagement()
        sessions = _SESSIONS_PER_DAY[self.segment] * np.exp(z) * weekday
        upgrade_bias = np.where(self.plan == 0, 0.5, -0.5)  # engaged upgrade, fading downgrade
        rates = np.stack(
            [
                sessions,
                0.06 * sessions * (1.0 + 0.5 * self.plan),
                0.04 * np.exp(-0.5 * z) * (1.0 + 3.0 * self.trouble) * weekday,
                0.004 * np.exp(upgrade_bias * z),
                0.004 + 0.35 * self.trouble,  # billing runs every day, weekends too
            ]
        )
        return np.where(self.active, rates, 0.0)


@dataclass
class _Day:
    """One day's activity events as columns, in time order."""

    ts: np.ndarray
    customer: np.ndarray
    kind: np.ndarray
    amount: np.ndarray
    duration: np.ndarray
    plan: np.ndarray

    def messages(self, customers: _Customers, ids: list[str]) -> list[Message]:
        keys = customers.ids[self.customer].tolist()
        timestamps = self.ts.tolist()
        columns = (
            ids,
            keys,
            timestamps,
            [EVENT_TYPES[k] for k in self.kind.tolist()],
            self.amount.tolist(),
            self.duration.tolist(),
            [PLANS[p] for p in self.plan.tolist()],
            [SEGMENTS[s] for s in customers.segment[self.customer].tolist()],
        )
        values = [dict(zip(_EVENT_FIELDS, row)) for row in zip(*columns)]
        return [("events", *message) for message in zip(keys, values, timestamps)]


def _draw_day(
    rng: np.random.Generator, customers: _Customers, rates: np.ndarray, day_start: int
) -> _Day:
    """Draw a day's events from the expected counts, dropping those after a customer churned."""
    counts = rng.poisson(rates).ravel()
    kind, who = np.divmod(np.repeat(np.arange(counts.size), counts), customers.size)
    size = len(who)
    hour = np.where(
        kind == PAYMENT_FAILURE, rng.integers(1, 5, size), rng.choice(24, size, p=_HOUR_SHARE)
    )
    ts = np.floor(day_start + (hour + rng.random(size)) * 3_600_000).astype(np.int64)
    z = customers.engagement()[who]
    duration = _SESSION_S[customers.segment[who]] * np.exp(0.15 * z + rng.normal(0.0, 0.8, size))
    amount = np.where(customers.plan[who] == 1, 45.0, 20.0) * rng.lognormal(0.0, 0.7, size)
    keep = np.flatnonzero(ts < customers.churn_ts[who])
    order = keep[np.lexsort((who[keep], ts[keep]))]
    kind, who = kind[order], who[order]
    return _Day(
        ts=ts[order],
        customer=who,
        kind=kind,
        amount=np.where(kind == PURCHASE, np.round(amount[order], 2), 0.0),
        duration=np.where(kind == SESSION, np.round(duration[order], 1), 0.0),
        plan=_apply_plan_changes(customers, who, kind),
    )


def _apply_plan_changes(customers: _Customers, who: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Each event's plan: a plan change switches it for that event and the customer's later ones."""
    plan = customers.plan[who]
    for i in np.flatnonzero(kind == PLAN_CHANGE):  # a few a day: a loop is clear and fast enough
        plan[i:][who[i:] == who[i]] ^= 1
        customers.plan[who[i]] ^= 1
    return plan


def _merge(
    events: list[Message], labels: tuple[list[Message], np.ndarray], event_ts: np.ndarray
) -> list[Message]:
    """Interleave labels into the day's events: each after the events up to its time."""
    label_messages, known = labels
    merged: list[Message] = []
    done = 0
    for at, label in zip(np.searchsorted(event_ts, known, side="right").tolist(), label_messages):
        merged += events[done:at]
        done = at
        merged.append(label)
    merged += events[done:]
    return merged


def _expected_events(
    population: _Customers, rng: np.random.Generator, days: float, start_ms: int
) -> float:
    """Expected activity events over ``days`` at unit scale, from a pilot run of the population.

    The pilot follows a sample of at most ``_PILOT_CUSTOMERS`` copies of the customers.
    """
    rows = np.arange(population.size)
    if population.size > _PILOT_CUSTOMERS:
        rows = np.sort(rng.choice(population.size, _PILOT_CUSTOMERS, replace=False))
    customers = population.subset(rows)
    total = 0.0
    for day in range(int(np.ceil(days))):
        share = min(1.0, days - day)  # the last day may count in part
        churning = customers.active & (
            rng.random(customers.size) < _sigmoid(customers.hazard_logit(drifted=False))
        )
        weekday = _WEEKDAY[(start_ms // DAY_MS + day + _EPOCH_WEEKDAY) % 7]
        rates = customers.daily_rates(weekday).sum(axis=0)
        total += share * float((rates * np.where(churning, 0.5, 1.0)).sum())
        customers.active &= ~churning
        customers.step(rng)
    return max(total * population.size / customers.size, 1e-9)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))
