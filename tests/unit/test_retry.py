"""Backoff, deadlines and the give-up message of connectors.retry, with a fake clock."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from connectors.retry import backoff_delay, retry
from streamlearn.errors import ServiceUnavailable


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, error: Exception | None = None) -> tuple[Callable[[], str], dict[str, int]]:
    state = {"calls": 0}

    def call() -> str:
        state["calls"] += 1
        if state["calls"] <= times:
            raise error or ConnectionError("connection refused")
        return "ok"

    return call, state


def test_returns_first_success_without_sleeping() -> None:
    clock = FakeClock()
    call, state = failing(0)
    assert retry(call, what="broker", sleep=clock.sleep, clock=clock) == "ok"
    assert state["calls"] == 1
    assert clock.sleeps == []


def test_retries_until_success_with_growing_pauses() -> None:
    clock = FakeClock()
    call, state = failing(4)
    result = retry(call, what="broker", sleep=clock.sleep, clock=clock, rng=random.Random(1))
    assert result == "ok"
    assert state["calls"] == 5
    assert len(clock.sleeps) == 4
    # Each pause lies in the upper half of a doubling ceiling: 0.2, 0.4, 0.8, 1.6.
    for n, pause in enumerate(clock.sleeps, start=1):
        ceiling = 0.2 * 2 ** (n - 1)
        assert ceiling / 2 <= pause <= ceiling


def test_pause_never_exceeds_max() -> None:
    rng = random.Random(7)
    assert all(backoff_delay(n, 0.2, 5.0, rng) <= 5.0 for n in range(1, 60))
    assert all(backoff_delay(n, 0.2, 5.0, rng) >= 2.5 for n in range(6, 60))


def test_gives_up_after_attempts_with_clear_message() -> None:
    clock = FakeClock()
    call, state = failing(100)
    with pytest.raises(ServiceUnavailable) as info:
        retry(
            call,
            what="Kafka at 127.0.0.1:9",
            attempts=3,
            sleep=clock.sleep,
            clock=clock,
            hint="Set STREAMLEARN_KAFKA_BOOTSTRAP.",
        )
    assert state["calls"] == 3
    message = str(info.value)
    assert message.startswith("Kafka at 127.0.0.1:9 unreachable after 3 attempts over ")
    assert "ConnectionError: connection refused." in message
    assert message.endswith("Set STREAMLEARN_KAFKA_BOOTSTRAP.")
    assert isinstance(info.value.__cause__, ConnectionError)


def test_gives_up_at_the_deadline_and_tries_once_on_it() -> None:
    clock = FakeClock()
    call, state = failing(10_000)
    with pytest.raises(ServiceUnavailable, match=r"over 10\.0 s"):
        retry(call, what="Redis", timeout_s=10, sleep=clock.sleep, clock=clock)
    assert clock.now == pytest.approx(10.0)
    assert state["calls"] == len(clock.sleeps) + 1


def test_errors_outside_retry_on_propagate_at_once() -> None:
    clock = FakeClock()
    call, state = failing(1, ValueError("bad config"))
    with pytest.raises(ValueError, match="bad config"):
        retry(call, what="Redis", retry_on=(ConnectionError,), sleep=clock.sleep, clock=clock)
    assert state["calls"] == 1


def test_on_retry_sees_each_attempt_and_pause() -> None:
    clock = FakeClock()
    seen: list[tuple[int, float, str]] = []
    call, _ = failing(2)
    retry(
        call,
        what="Redis",
        sleep=clock.sleep,
        clock=clock,
        on_retry=lambda n, delay, error: seen.append((n, delay, str(error))),
    )
    assert [n for n, _, _ in seen] == [1, 2]
    assert [delay for _, delay, _ in seen] == clock.sleeps
    assert all(text == "connection refused" for _, _, text in seen)


def test_single_attempt_message_is_singular() -> None:
    call, _ = failing(1)
    with pytest.raises(ServiceUnavailable, match="after 1 attempt over"):
        retry(call, what="Redis", attempts=1, sleep=lambda s: None)
