"""The adaptive batcher against a simulated queue: arrivals at a rate, batches costing a + b·n."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlearn.batching import AdaptiveBatcher, BatcherState, Trigger
from streamlearn.config import BatchingConfig
from streamlearn.cost_model import CostModel

# ---------------------------------------------------------------------------------------------
# Simulator: a broker queue, a source that polls it like a Kafka consumer, a synchronous runner.


class SimClock:
    """Time in the simulation, in seconds; the batcher reads it, the simulator moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def arrivals(phases: Sequence[tuple[float, float]], seed: int | None = None) -> np.ndarray:
    """Arrival times for consecutive ``(duration_s, rate)`` phases; evenly spaced or Poisson."""
    rng = np.random.default_rng(seed)
    times, start = [], 0.0
    for duration, rate in phases:
        n = int(duration * rate)
        if seed is None:
            times.append(start + np.arange(n) / rate)
        else:
            times.append(np.sort(start + rng.uniform(0.0, duration, n)))
        start += duration
    return np.concatenate(times)


def linear_cost(
    overhead_s: float, per_event_s: float, noise: float = 0.0, seed: int = 0
) -> Callable[[int, float], float]:
    """Batch processing time ``a + b·n``, optionally with multiplicative noise."""
    rng = np.random.default_rng(seed)

    def cost(n: int, now: float) -> float:
        jitter = 1.0 + noise * rng.uniform(-1.0, 1.0) if noise else 1.0
        return (overhead_s + per_event_s * n) * jitter

    return cost


@dataclass
class BatchRecord:
    closed_at: float
    taken: int
    trigger: Trigger
    seconds: float
    next_size: int
    max_latency: float  # broker arrival -> processed, for the oldest event of the batch


@dataclass
class Simulation:
    """Drives an :class:`AdaptiveBatcher` the way the runner does, in simulated time.

    The source polls the broker for at most ``room`` messages; a poll returns as soon as the first
    message arrives into an empty buffer, else when ``room`` is filled or ``wait_s`` runs out.
    Messages are stamped ``received`` when the poll returns them, as a Kafka consumer would.
    """

    batcher: AdaptiveBatcher
    clock: SimClock
    arrived: np.ndarray
    cost: Callable[[int, float], float]
    report_lag: bool = False
    on_batch: Callable[[AdaptiveBatcher, int, BatchRecord], None] | None = None
    records: list[BatchRecord] = field(default_factory=list)
    polls: int = 0

    def __post_init__(self) -> None:
        self.received = np.zeros_like(self.arrived)
        self.fetched = 0
        self.taken = 0

    def run(self, until: float) -> list[BatchRecord]:
        while self.clock.now < until and self.taken < len(self.arrived):
            self._fetch()
            buffered = self.fetched - self.taken
            oldest = float(self.received[self.taken]) if buffered else None
            trigger = self.batcher.close_trigger(buffered, oldest)
            if trigger is not None:
                self._process(min(buffered, self.batcher.size), trigger)
            else:
                self._wait(self.batcher.wait_s(buffered, oldest), buffered)
        return self.records

    def _available(self) -> int:
        return int(np.searchsorted(self.arrived, self.clock.now, side="right"))

    def _fetch(self) -> None:
        n = min(self._available() - self.fetched, self.batcher.room(self.fetched - self.taken))
        if n > 0:
            self.received[self.fetched : self.fetched + n] = self.clock.now
            self.fetched += n

    def _wait(self, wait_s: float, buffered: int) -> None:
        assert wait_s > 0, "the batcher asked to wait 0 s without closing: a busy loop"
        self.polls += 1
        # An empty buffer wakes on the first arrival, a partial one when `room` more are in.
        wanted = self.fetched + (1 if buffered == 0 else self.batcher.room(buffered))
        wake = self.arrived[wanted - 1] if 0 < wanted <= len(self.arrived) else np.inf
        self.clock.now = min(self.clock.now + wait_s, max(float(wake), self.clock.now))

    def _process(self, k: int, trigger: Trigger) -> None:
        closed_at = self.clock.now
        seconds = self.cost(k, closed_at)
        self.clock.now += seconds
        oldest = float(self.arrived[self.taken])
        self.taken += k
        lag = self._available() - self.fetched
        self.batcher.observe(k, seconds, trigger, lag=lag if self.report_lag else None)
        record = BatchRecord(
            closed_at, k, trigger, seconds, self.batcher.size, self.clock.now - oldest
        )
        self.records.append(record)
        if self.on_batch is not None:
            self.on_batch(self.batcher, len(self.records) - 1, record)


def simulate(
    config: BatchingConfig,
    phases: Sequence[tuple[float, float]],
    cost: Callable[[int, float], float],
    seed: int | None = None,
    **kwargs: object,
) -> tuple[Simulation, list[BatchRecord]]:
    clock = SimClock()
    sim = Simulation(AdaptiveBatcher(config, clock=clock), clock, arrivals(phases, seed), cost)
    for name, value in kwargs.items():
        setattr(sim, name, value)
    records = sim.run(until=sum(d for d, _ in phases))
    return sim, records


def between(records: list[BatchRecord], start: float, end: float) -> list[BatchRecord]:
    return [r for r in records if start <= r.closed_at < end]


def sizes(records: list[BatchRecord]) -> np.ndarray:
    return np.array([r.next_size for r in records], dtype=float)


def latencies(records: list[BatchRecord]) -> np.ndarray:
    return np.array([r.max_latency for r in records])


def best_size(rate: float, config: BatchingConfig, a: float, b: float) -> float:
    """The largest size whose fill time plus processing time meets the target minus 10 %."""
    budget = 0.9 * config.latency_target_ms / 1e3
    return min(rate * config.max_wait_ms / 1e3, rate * (budget - a) / (1 + rate * b))


TARGET_S = 0.1
A, B = 0.002, 20e-6  # 2 ms per batch + 20 µs per event: at most 50,000 events/s


# ---------------------------------------------------------------------------------------------
# Steady load, load steps, cost steps.


@pytest.mark.parametrize("max_wait_ms", [50.0, 100.0])
def test_converges_to_the_largest_size_that_meets_the_target(max_wait_ms: float) -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048, max_wait_ms=max_wait_ms)
    sim, records = simulate(config, [(4, 10_000)], linear_cost(A, B))
    settled = between(records, 1, 4)
    expected = best_size(10_000, config, A, B)  # 500 (wait-bound), 733 (latency-bound)
    assert sizes(settled) == pytest.approx(expected, rel=0.01)
    assert sizes(settled).std() < 0.01 * expected
    assert latencies(settled).max() <= TARGET_S
    state = sim.batcher.state()
    assert not state.overloaded and state.target_missed == 0
    assert state.cost_overhead_s == pytest.approx(A, rel=0.05)
    assert state.cost_per_event_s == pytest.approx(B, rel=0.05)


def test_settles_without_oscillating_under_noisy_arrivals_and_costs() -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048)
    _, records = simulate(config, [(6, 20_000)], linear_cost(A, B, noise=0.2, seed=1), seed=5)
    settled = sizes(between(records, 2, 6))
    assert settled.mean() == pytest.approx(best_size(20_000, config, A, B), rel=0.05)
    assert settled.std() < 0.03 * settled.mean()
    assert np.mean(latencies(between(records, 2, 6)) <= TARGET_S) >= 0.99


def test_size_follows_a_load_step_up_and_back_down() -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048)
    phases = [(3, 2_000), (3, 20_000), (3, 2_000)]
    _, records = simulate(config, phases, linear_cost(A, B))
    low, high, low_again = (sizes(between(records, s, s + 2)) for s in (1, 4, 7))
    assert low.mean() == pytest.approx(best_size(2_000, config, A, B), rel=0.02)
    assert high.mean() == pytest.approx(best_size(20_000, config, A, B), rel=0.02)
    assert low_again.mean() == pytest.approx(low.mean(), rel=0.02)
    # Each step costs at most one second of transition; after it every batch is on time.
    assert latencies(between(records, 1, 3) + between(records, 4, 6)).max() <= TARGET_S
    assert latencies(between(records, 7, 9)).max() <= TARGET_S


@pytest.mark.parametrize(("before", "after"), [(20e-6, 60e-6), (60e-6, 20e-6)])
def test_size_follows_a_change_of_processing_cost(before: float, after: float) -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048, max_wait_ms=100)

    def cost(n: int, now: float) -> float:
        return A + (before if now < 4 else after) * n

    sim, records = simulate(config, [(8, 10_000)], cost)
    assert sizes(between(records, 2, 4)).mean() == pytest.approx(
        best_size(10_000, config, A, before), rel=0.02
    )
    assert sizes(between(records, 6, 8)).mean() == pytest.approx(
        best_size(10_000, config, A, after), rel=0.02
    )
    assert latencies(between(records, 5, 8)).max() <= TARGET_S
    assert sim.batcher.state().target_missed <= 3


def test_a_batch_that_misses_the_target_shrinks_the_next_one() -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048, max_wait_ms=100)

    def cost(n: int, now: float) -> float:
        return A + (B if now < 3 else 2.5 * B) * n

    _, records = simulate(config, [(5, 10_000)], cost)
    first_late = next(i for i, r in enumerate(records) if r.closed_at >= 3)
    seen = [r.next_size for r in records[first_late - 1 : first_late + 1]]
    assert records[first_late].max_latency > TARGET_S
    assert seen[1] <= 0.75 * seen[0]
    assert latencies(between(records, 4, 5)).max() <= TARGET_S


# ---------------------------------------------------------------------------------------------
# Overload, idle streams, drift.


@pytest.mark.parametrize("report_lag", [False, True])
def test_overload_pegs_the_size_at_max_and_counts_misses(report_lag: bool) -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048)
    overloads: list[bool] = []
    sim, records = simulate(
        config,
        [(2, 80_000), (6, 10_000)],  # 2 s at 1.7x capacity leave a backlog of ~65,000 events
        linear_cost(A, B),
        report_lag=report_lag,
        on_batch=lambda batcher, i, record: overloads.append(batcher.state().overloaded),
    )
    overloaded = between(records, 0.5, 2)
    assert set(sizes(overloaded)) == {2048}
    assert all(r.taken == 2048 for r in overloaded)  # full batches: the most throughput
    assert sim.batcher.state().target_missed >= len(overloaded)
    # It enters overload once and leaves it once: no flapping at the edge of capacity.
    assert sum(a != b for a, b in itertools.pairwise(overloads)) == 2
    # Once the backlog is gone the size comes back down and stays put.
    recovered = sizes(between(records, 6, 8))
    assert recovered.mean() == pytest.approx(best_size(10_000, config, A, B), rel=0.02)
    assert not sim.batcher.state().overloaded


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_flapping_in_and_out_of_overload_at_the_edge_of_capacity(seed: int) -> None:
    # 42,000 events/s with ±20 % cost noise: just beyond what the target allows at 0.9 utilisation.
    config = BatchingConfig(latency_target_ms=100, max_size=2048)
    overloads: list[bool] = []
    _, records = simulate(
        config,
        [(10, 42_000)],
        linear_cost(A, B, noise=0.2, seed=seed),
        seed=seed,
        on_batch=lambda batcher, i, record: overloads.append(batcher.state().overloaded),
    )
    assert sum(a != b for a, b in itertools.pairwise(overloads)) <= 1
    assert set(sizes(between(records, 2, 10))) == {2048}


def test_idle_stream_flushes_single_events_on_the_deadline_without_spinning() -> None:
    config = BatchingConfig(latency_target_ms=100, min_size=8, max_size=2048, max_wait_ms=50)
    sim, records = simulate(config, [(20, 1)], linear_cost(A, B))
    assert len(records) == 20
    assert all(r.trigger is Trigger.DEADLINE and r.taken == 1 for r in records)
    assert latencies(records).max() <= 0.05 + A + B + 1e-9
    assert sim.polls <= 11 * len(records)  # a handful of wake-ups per event, not a busy loop
    assert sim.batcher.wait_s(0, None) > 0


def test_deadline_leaves_room_for_the_expected_processing_time() -> None:
    clock = SimClock()
    batcher = AdaptiveBatcher(
        BatchingConfig(latency_target_ms=100, max_size=1000, max_wait_ms=100), clock=clock
    )
    for n in (100, 400, 100, 400):
        clock.now += 0.01 + 0.0001 * n
        batcher.observe(n, 0.01 + 0.0001 * n, Trigger.SIZE)
    expected_cost = 0.01 + 0.0001 * batcher.size
    assert batcher.deadline(5.0) == pytest.approx(5.0 + 0.09 - expected_cost)
    clock.now = 5.0
    assert batcher.wait_s(1, 5.0) == pytest.approx(0.09 - expected_cost)


def test_drift_closes_the_batch_drops_to_the_floor_then_regrows() -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048)
    clock = SimClock()
    batcher = AdaptiveBatcher(config, clock=clock)

    def drift_at_batch_40(batcher: AdaptiveBatcher, i: int, record: BatchRecord) -> None:
        if i == 40:
            batcher.signal_drift()
            assert batcher.size == 8 and batcher.room(0) == 8

    sim = Simulation(
        batcher, clock, arrivals([(6, 10_000)]), linear_cost(A, B), on_batch=drift_at_batch_40
    )
    records = sim.run(until=6)
    assert records[41].trigger is Trigger.DRIFT
    assert records[41].next_size == 8
    before = records[40].next_size
    regrowth = [r.next_size for r in records[41:]]
    back = next(i for i, s in enumerate(regrowth) if s >= 0.9 * before)
    steps = np.diff(regrowth[: back + 1])
    assert (steps > 0).all() and (
        np.array(regrowth[1 : back + 1]) <= 1.5 * np.array(regrowth[:back]) + 1
    ).all()
    assert 8 <= back <= 16
    assert sizes(between(records, 5, 6)).mean() == pytest.approx(before, rel=0.02)
    assert batcher.state().drift_cap is None


def test_drift_waits_for_an_event_and_a_second_drift_restarts_the_regrowth() -> None:
    clock = SimClock()
    batcher = AdaptiveBatcher(BatchingConfig(initial_size=512, max_size=2048), clock=clock)
    batcher.signal_drift()
    assert batcher.close_trigger(0, None) is None
    assert batcher.wait_s(0, None) > 0
    assert batcher.close_trigger(3, 0.0) is Trigger.DRIFT
    assert batcher.wait_s(3, 0.0) == 0.0
    batcher.observe(3, 0.01, Trigger.DRIFT)
    assert batcher.close_trigger(3, 0.0) is None
    clock.now = 0.2
    batcher.observe(8, 0.01, Trigger.SIZE)
    assert batcher.state().drift_cap == 12
    batcher.signal_drift()
    assert batcher.state().drift_cap == 8 and batcher.size <= 8


def test_drift_signalled_before_the_batch_that_revealed_it_is_observed() -> None:
    # The runner learns from a batch, signals drift, then reports that batch's processing time.
    clock = SimClock()
    batcher = AdaptiveBatcher(BatchingConfig(initial_size=512, max_size=2048), clock=clock)
    assert batcher.close_trigger(512, 0.0) is Trigger.SIZE
    clock.now = 0.05
    batcher.signal_drift()
    batcher.observe(512, 0.05, Trigger.SIZE)
    assert batcher.size <= 8 and batcher.state().drift_cap == 8
    assert batcher.close_trigger(100, 0.05) is Trigger.DRIFT
    clock.now = 0.06
    batcher.observe(8, 0.01, Trigger.DRIFT)
    assert batcher.state().drift_cap == 8
    assert batcher.close_trigger(100, 0.05) is Trigger.SIZE
    clock.now = 0.07
    batcher.observe(8, 0.01, Trigger.SIZE)
    assert batcher.state().drift_cap == 12


def test_drift_floor_and_regrowth_come_from_the_settings() -> None:
    class Tuned(BatchingConfig):
        drift_floor: int = 32
        drift_regrowth: float = 2.0

    clock = SimClock()
    batcher = AdaptiveBatcher(Tuned(initial_size=1024, max_size=2048), clock=clock)
    batcher.signal_drift()
    assert batcher.size == 32
    clock.now = 0.01
    batcher.observe(30, 0.001, Trigger.DRIFT)
    clock.now = 0.02
    batcher.observe(32, 0.001, Trigger.SIZE)
    assert batcher.state().drift_cap == 64


# ---------------------------------------------------------------------------------------------
# Bounds, fixed sizes, reporting.


def test_fixed_size_when_min_equals_max() -> None:
    config = BatchingConfig(latency_target_ms=100, min_size=64, max_size=64)
    sim, records = simulate(config, [(1, 10_000), (1, 80_000), (2, 100)], linear_cost(A, B))
    sim.batcher.signal_drift()
    assert set(sizes(records)) == {64}
    assert max(r.taken for r in records) == 64
    assert sim.batcher.size == 64


@settings(max_examples=40, deadline=None)
@given(
    min_size=st.integers(1, 64),
    extra=st.integers(0, 2000),
    target_ms=st.floats(5, 500),
    max_wait_ms=st.floats(0, 200),
    overhead_ms=st.floats(0, 50),
    per_event_us=st.floats(0, 200),
    rates=st.lists(st.floats(1, 30_000), min_size=1, max_size=3),
    drift_at=st.integers(0, 30),
    noise=st.floats(0, 0.5),
)
def test_size_stays_within_bounds_and_the_loop_never_spins(
    min_size: int,
    extra: int,
    target_ms: float,
    max_wait_ms: float,
    overhead_ms: float,
    per_event_us: float,
    rates: list[float],
    drift_at: int,
    noise: float,
) -> None:
    config = BatchingConfig(
        latency_target_ms=target_ms,
        min_size=min_size,
        max_size=min_size + extra,
        max_wait_ms=max_wait_ms,
    )
    clock = SimClock()
    batcher = AdaptiveBatcher(config, clock=clock)

    def drift(batcher: AdaptiveBatcher, i: int, record: BatchRecord) -> None:
        if i == drift_at:
            batcher.signal_drift()
        assert config.min_size <= batcher.size <= config.max_size
        assert record.taken <= config.max_size

    cost = linear_cost(overhead_ms / 1e3, per_event_us / 1e6, noise=noise)
    phases = [(0.5, r) for r in rates]
    sim = Simulation(batcher, clock, arrivals(phases, seed=1), cost, on_batch=drift)
    records = sim.run(until=1.5)  # the simulator asserts wait_s > 0 whenever nothing closes
    assert all(config.min_size <= r.next_size <= config.max_size for r in records)


def test_reasons_are_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    config = BatchingConfig(latency_target_ms=100, max_size=2048)
    with caplog.at_level("DEBUG", logger="streamlearn.batching"):
        sim, _ = simulate(config, [(1, 10_000)], linear_cost(A, B))
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("batch size ") and "plan for" in m for m in messages)
    state: BatcherState = sim.batcher.state()
    assert state.reason.startswith("plan for")


def test_observe_uses_the_age_the_caller_measured() -> None:
    batcher = AdaptiveBatcher(BatchingConfig(latency_target_ms=100), clock=SimClock())
    batcher.observe(10, 0.01, Trigger.SIZE, oldest_age_s=0.05)
    assert batcher.state().target_missed == 0
    batcher.observe(10, 0.01, Trigger.SIZE, oldest_age_s=0.2)
    assert batcher.state().target_missed == 1


# ---------------------------------------------------------------------------------------------
# The cost model on its own.


def test_cost_model_fits_overhead_and_per_event_cost() -> None:
    model = CostModel()
    for n in (10, 200, 50, 400, 100):
        model.update(n, 0.003 + 0.00002 * n)
    assert model.overhead_s == pytest.approx(0.003, rel=1e-3)
    assert model.per_event_s == pytest.approx(0.00002, rel=1e-3)


def test_cost_model_forgets_an_old_cost() -> None:
    model = CostModel(forgetting=0.8)
    for n in [10, 100] * 5:
        model.update(n, 0.003 + 0.00002 * n)
    for n in [10, 100] * 20:
        model.update(n, 0.010 + 0.00005 * n)
    assert model.predict(100) == pytest.approx(0.015, rel=0.02)


def test_cost_model_at_a_single_size_calls_the_cost_overhead_until_the_size_varies() -> None:
    model = CostModel()
    for _ in range(5):
        model.update(100, 0.012)
    assert (model.overhead_s, model.per_event_s) == pytest.approx((0.012, 0.0))
    for _ in range(30):
        model.update(100, 0.022)  # 10 ms slower at the same size: tracked all the same
    assert model.predict(100) == pytest.approx(0.022, rel=0.02)


def test_cost_model_never_goes_negative_on_noisy_timings() -> None:
    model = CostModel()
    rng = np.random.default_rng(2)
    for n in rng.integers(1, 50, 200):
        model.update(int(n), float(rng.uniform(0.0, 0.01)))
        assert model.overhead_s >= 0 and model.per_event_s >= 0


def test_known_backlog_jumps_to_the_plan_without_ramping() -> None:
    # Cheap batches and a backlog of 100 000 messages: one batch is enough to go to max_size.
    now = [0.0]
    settings = BatchingConfig(min_size=1, max_size=2048, latency_target_ms=100)
    batcher = AdaptiveBatcher(settings, clock=lambda: now[0])
    sizes = []
    for _ in range(3):
        buffered = batcher.size
        batcher.close_trigger(buffered, now[0])
        now[0] += 0.001 + 1e-6 * buffered
        batcher.observe(buffered, 0.001 + 1e-6 * buffered, Trigger.SIZE, lag=100_000)
        sizes.append(batcher.size)
    assert sizes[-1] == 2048
    ramp = AdaptiveBatcher(settings, clock=lambda: now[0])
    buffered = ramp.size
    ramp.close_trigger(buffered, now[0])
    ramp.observe(buffered, 0.001, Trigger.SIZE)
    assert ramp.size <= 2 * buffered  # without the lag the growth stays capped
