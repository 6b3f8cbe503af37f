"""The scenarios of a benchmark run, full or quick, sized for a 2-core machine.

Steady rates are chosen after fixed size 1's maximum throughput is known, so one of them is
always beyond what size 1 can serve and one (when possible) within it.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.scenarios import Scenario


@dataclass(frozen=True, slots=True)
class Plan:
    """Event counts and durations of one run."""

    max_throughput_events: int
    slow_cap_s: float  # how long a variant may take to drain the max-throughput backlog
    steady_s: float
    steady_rates: tuple[float, ...]
    spike: tuple[tuple[float, float], ...]
    drift_rate: float
    drift_before: int
    drift_after: int


# Fixed size 1 serves a few hundred events/s here, so it bounds the drift run's length.
FULL = Plan(
    60_000, 15.0, 6.0, (1000, 5000, 15000), ((2000, 4), (20000, 3), (2000, 5)), 3000, 12_000, 12_000
)
QUICK = Plan(10_000, 4.0, 2.0, (5000,), ((2000, 1.5), (20000, 1), (2000, 1.5)), 3000, 3_000, 3_000)


def max_throughput(plan: Plan) -> Scenario:
    """Pre-produce the events, then process them as fast as possible."""
    return Scenario(
        "max-throughput",
        "max_throughput",
        ((None, 0),),
        unpaced_events=plan.max_throughput_events,
        prefill=True,
        drain_s=plan.slow_cap_s,
    )


def steady_rates(plan: Plan, size1_throughput: float) -> list[float]:
    """The plan's rates, plus half of size 1's capacity, plus one above it if none is.

    >>> steady_rates(FULL, 800.0)
    [400.0, 1000, 5000, 15000]
    >>> steady_rates(QUICK, 6000.0)
    [3000.0, 5000, 12000.0]
    """
    rates: list[float] = [round(size1_throughput / 2, -2) or 100.0, *plan.steady_rates]
    if max(rates) <= size1_throughput:
        rates.append(round(size1_throughput * 2, -2))
    return rates


def steady(plan: Plan, rate: float) -> Scenario:
    """A constant rate for the plan's steady duration."""
    return Scenario(f"steady-{rate:.0f}", "steady", ((rate, plan.steady_s),), rate=rate)


def spike(plan: Plan) -> Scenario:
    """A base rate with a 10x burst in the middle."""
    return Scenario("spike", "spike", plan.spike, drain_s=5.0)


def drift(plan: Plan) -> Scenario:
    """A steady rate with an abrupt change of the fraud pattern; every event is processed."""
    total = plan.drift_before + plan.drift_after
    seconds = total / plan.drift_rate
    # Slow variants work through their backlog: recovery is counted in events, not seconds.
    return Scenario(
        "drift",
        "drift",
        ((plan.drift_rate, seconds),),
        drift_at=plan.drift_before,
        drift_horizon=plan.drift_after,
        drain_s=120.0,
        rate=plan.drift_rate,
    )
