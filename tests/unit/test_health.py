"""Liveness and readiness from the pipeline hooks, on a clock the tests drive."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from streamlearn.app import App
from streamlearn.config import parse_config
from streamlearn.errors import ConfigError
from streamlearn.health import HealthMonitor, Readiness
from streamlearn.runner import RunStats
from tests.unit.recording import RecordingHooks

STALL_S, TIMEOUT_S = 5.0, 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def monitor(clock: Clock, *pipelines: str) -> HealthMonitor:
    return HealthMonitor(
        pipelines or ("fraud",), stall_s=STALL_S, liveness_timeout_s=TIMEOUT_S, clock=clock
    )


@pytest.fixture
def health(clock: Clock) -> HealthMonitor:
    health = monitor(clock)
    health.on_pipeline_ready("fraud", True)
    return health


# --- readiness -------------------------------------------------------------------------------


def test_not_ready_until_every_pipeline_says_so(clock: Clock) -> None:
    health = monitor(clock, "fraud", "churn")
    assert health.why_not_ready() == [
        "fraud: not consuming yet (waiting for the consumer group to assign partitions)",
        "churn: not consuming yet (waiting for the consumer group to assign partitions)",
    ]
    health.on_pipeline_ready("fraud", True)
    assert [line.split(":")[0] for line in health.why_not_ready()] == ["churn"]
    health.on_pipeline_ready("churn", True)
    assert health.ready()
    assert health.why_not_ready() == []


def test_a_long_batch_makes_it_not_ready_until_the_batch_ends(
    health: HealthMonitor, clock: Clock
) -> None:
    health.on_batch_started("fraud")
    clock.advance(STALL_S)
    assert health.ready()  # exactly at the limit: still ready
    clock.advance(0.5)
    assert not health.ready()
    (reason,) = health.why_not_ready()
    assert reason.startswith("fraud: a batch has been in hand for 5.5 s (health.stall_s is 5 s)")
    assert health.live()  # stalled a few seconds is not dead
    health.on_batch_closed("fraud", 256, "size")
    assert health.ready()


def test_short_batches_one_after_another_stay_ready(health: HealthMonitor, clock: Clock) -> None:
    for _ in range(100):
        health.on_batch_started("fraud")
        clock.advance(1.0)
        health.on_batch_closed("fraud", 10, "deadline")
        assert health.ready()


def test_the_stall_is_judged_when_asked_not_when_reported(
    health: HealthMonitor, clock: Clock
) -> None:
    # The pipeline's thread is blocked in a socket: no hook arrives while the batch hangs.
    health.on_batch_started("fraud")
    clock.advance(60)
    assert not health.ready(now=clock.now)
    assert health.ready(now=clock.now - 58)


def test_outputs_failing_after_being_ready_says_so(health: HealthMonitor) -> None:
    health.on_pipeline_ready("fraud", False)
    assert health.why_not_ready() == [
        "fraud: outputs failing: consumption is paused while the writes are retried"
    ]
    health.on_pipeline_ready("fraud", True)
    assert health.ready()


def test_outputs_failing_during_a_batch_say_for_how_long(
    health: HealthMonitor, clock: Clock
) -> None:
    health.on_batch_started("fraud")
    clock.advance(0.5)
    health.on_pipeline_ready("fraud", False)  # the write raised: retrying with the source paused
    clock.advance(30)
    assert health.why_not_ready() == [
        "fraud: outputs failing: consumption is paused while the writes are retried "
        "(batch in hand for 30.5 s)"
    ]
    assert health.live()


def test_stopped_pipelines_are_not_ready_but_live(health: HealthMonitor, clock: Clock) -> None:
    health.on_lag("fraud", {0: 50})
    health.stopped()
    clock.advance(10 * TIMEOUT_S)
    assert health.why_not_ready() == ["fraud: stopped"]
    assert health.live()


def test_watch_starts_afresh(health: HealthMonitor) -> None:
    health.on_failed("fraud", "boom")
    health.watch(["fraud", "churn"])
    assert health.live()
    assert len(health.why_not_ready()) == 2


# --- liveness --------------------------------------------------------------------------------


def test_a_failed_pipeline_is_neither_live_nor_ready(clock: Clock) -> None:
    health = monitor(clock, "fraud", "churn")
    for name in ("fraud", "churn"):
        health.on_pipeline_ready(name, True)
    health.on_failed("churn", "OutputRejected: WRONGTYPE at sl:churn:pred:7")
    assert health.why_not_live() == ["churn: failed: OutputRejected: WRONGTYPE at sl:churn:pred:7"]
    assert health.why_not_ready() == ["churn: failed: OutputRejected: WRONGTYPE at sl:churn:pred:7"]
    health.stopped()  # the process winds down: the failure stays the reason
    assert not health.live()


def test_idle_without_input_stays_live(health: HealthMonitor, clock: Clock) -> None:
    health.on_batch_started("fraud")
    health.on_batch_closed("fraud", 5, "deadline")
    health.on_lag("fraud", {0: 0, 1: 0})
    clock.advance(24 * 3600)
    assert health.live()
    assert health.ready()


def test_input_waiting_without_progress_is_not_live(health: HealthMonitor, clock: Clock) -> None:
    health.on_lag("fraud", {0: 120, 1: 30})
    clock.advance(TIMEOUT_S)
    assert health.live()
    clock.advance(1)
    assert health.why_not_live() == [
        "fraud: no batch finished for 61 s while input waits (150 messages behind; "
        "health.liveness_timeout_s is 60 s)"
    ]
    health.on_batch_closed("fraud", 150, "size")
    assert health.live()


def test_progress_keeps_it_live_while_behind(health: HealthMonitor, clock: Clock) -> None:
    # A long backlog being worked through: behind all the time, but batches keep finishing.
    for _ in range(30):
        health.on_lag("fraud", {0: 1_000_000})
        health.on_batch_started("fraud")
        clock.advance(4)
        health.on_batch_closed("fraud", 2048, "size")
    assert health.live()
    clock.advance(TIMEOUT_S + 1)  # then the batches stop while the backlog is still there
    assert not health.live()


def test_a_batch_stuck_for_the_liveness_timeout_is_not_live(
    health: HealthMonitor, clock: Clock
) -> None:
    health.on_batch_started("fraud")
    clock.advance(TIMEOUT_S + 5)
    (reason,) = health.why_not_live()
    assert "a batch in hand for 65 s" in reason


def test_buffered_messages_without_progress_are_not_live(
    health: HealthMonitor, clock: Clock
) -> None:
    health.on_consumed("fraud", 300)
    clock.advance(TIMEOUT_S + 1)
    (reason,) = health.why_not_live()
    assert "messages buffered" in reason


def test_waiting_counts_from_when_input_arrived_not_from_the_last_batch(
    health: HealthMonitor, clock: Clock
) -> None:
    health.on_batch_closed("fraud", 10, "deadline")
    clock.advance(3600)  # idle for an hour
    health.on_lag("fraud", {0: 5})
    clock.advance(TIMEOUT_S - 1)
    assert health.live()
    clock.advance(2)
    assert not health.live()


def test_input_drained_upstream_clears_the_wait(health: HealthMonitor, clock: Clock) -> None:
    health.on_lag("fraud", {0: 5})
    clock.advance(30)
    health.on_lag("fraud", {0: 0})
    clock.advance(TIMEOUT_S)
    assert health.live()


def test_a_rebalance_forgets_buffered_messages_it_may_have_dropped(
    health: HealthMonitor, clock: Clock
) -> None:
    health.on_consumed("fraud", 100)
    health.on_pipeline_ready("fraud", True)  # revoked then assigned: the buffer was dropped
    clock.advance(10 * TIMEOUT_S)
    assert health.live()


def test_empty_polls_are_not_input(health: HealthMonitor, clock: Clock) -> None:
    health.on_consumed("fraud", 0)
    clock.advance(10 * TIMEOUT_S)
    assert health.live()


def test_a_pipeline_it_was_not_told_of_is_watched_too(health: HealthMonitor) -> None:
    health.on_failed("other", "boom")
    assert health.why_not_live() == ["other: failed: boom"]


def test_hooks_from_many_threads_while_asked(health: HealthMonitor) -> None:
    stop = threading.Event()

    def report(name: str) -> None:
        while not stop.is_set():
            health.on_batch_started(name)
            health.on_consumed(name, 3)
            health.on_lag(name, {0: 1})
            health.on_batch_closed(name, 3, "size")
            health.on_pipeline_ready(name, True)

    threads = [threading.Thread(target=report, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(2000):
            health.why_not_live()
            health.why_not_ready()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert health.live() and health.ready()


# --- wiring in the App -----------------------------------------------------------------------


def config(**health: Any) -> Any:
    return parse_config(
        {
            "metrics": {"port": 0},
            "health": health,
            "pipelines": [
                {
                    "name": "fraud",
                    "source": {"topic": "transactions"},
                    "schema": {"features": {"amount": "float"}},
                    "model": {"estimator": "sklearn.linear_model.SGDClassifier"},
                }
            ],
        },
        env={},
    )


def test_health_settings_default_and_validate() -> None:
    assert (config().health.stall_s, config().health.liveness_timeout_s) == (5.0, 60.0)
    assert config(stall_s=2, liveness_timeout_s=30).health.stall_s == 2.0
    with pytest.raises(ConfigError, match=r"health\.stall_s: expected greater than 0, got -1"):
        config(stall_s=-1)
    with pytest.raises(ConfigError, match=r"health\.liveness_timeout_s: expected a valid number"):
        config(liveness_timeout_s="soon")
    with pytest.raises(ConfigError, match=r"health\.stall: unknown key"):
        config(stall=3)


def test_the_app_feeds_its_monitor_from_the_hooks() -> None:
    app = App(config(stall_s=2, liveness_timeout_s=30))
    assert (app.health.stall_s, app.health.liveness_timeout_s) == (2.0, 30.0)
    app.hooks.on_pipeline_ready("fraud", True)
    assert app.health.ready()
    app.hooks.on_failed("fraud", "boom")
    assert app.health.why_not_live() == ["fraud: failed: boom"]


def test_readiness_reports_each_pipeline_and_the_process() -> None:
    recorder = RecordingHooks()
    readiness = Readiness(["fraud", "churn"], recorder)
    readiness.set("fraud", True)
    readiness.set("churn", True)
    readiness.set("churn", False)
    assert recorder.args("on_pipeline_ready") == [
        ("fraud", True),
        ("churn", True),
        ("churn", False),
    ]
    assert recorder.args("on_ready") == [(False,), (True,), (False,)]


class _FailingRunner:
    class pipeline:  # noqa: N801 - stands in for runner.pipeline
        name = "fraud"

    def run(self, stop: threading.Event, max_events: int | None) -> RunStats:
        raise RuntimeError("the model exploded")


def test_a_pipeline_thread_that_raises_is_reported_failed() -> None:
    app = App(config())
    app.runners = [_FailingRunner()]  # type: ignore[list-item]
    with pytest.raises(RuntimeError, match="exploded"):
        app._run_all(max_events=None)
    assert app.health.why_not_live() == ["fraud: failed: RuntimeError: the model exploded"]
    assert app.stop.is_set()


def test_io_between_batches_that_hangs_makes_it_not_ready_until_it_returns(
    health: HealthMonitor, clock: Clock
) -> None:
    # Reading model requests or saving an idle checkpoint blocks in a socket, no batch in hand.
    health.on_busy("fraud", "reading model requests from Redis")
    clock.advance(STALL_S)
    assert health.ready()
    clock.advance(1.0)
    assert health.why_not_ready() == [
        "fraud: reading model requests from Redis has taken 6.0 s (health.stall_s is 5 s): "
        "Redis or the broker is not answering"
    ]
    assert health.live()
    health.on_busy("fraud", None)
    assert health.ready()
