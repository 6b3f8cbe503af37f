"""Metric hooks: the no-op base, fan-out to several observers, and the progress totals."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

from streamlearn.hooks import FanOutHooks, PipelineHooks
from streamlearn.progress import ProgressHooks
from tests.unit.recording import RecordingHooks

HOOKS = sorted(name for name in dir(PipelineHooks) if name.startswith("on_"))

# One plausible argument per parameter name of the hook methods.
SAMPLE_ARGS: dict[str, Any] = {
    "pipeline": "fraud",
    "n": 3,
    "reason": "not_json",
    "latencies_s": np.array([0.01, 0.02]),
    "delays_s": np.array([60.0, 86_400.0]),
    "size": 64,
    "trigger": "size",
    "stage": "score",
    "seconds": 0.004,
    "lag": {0: 5, 1: 0},
    "scores": {"auc": 0.9},
    "version": 7,
    "written_at": 1_700_000_000.0,
    "ready": True,
    "message": "ValueError: broken",
    "activity": "reading model requests from Redis",
}


def sample_args(name: str) -> tuple[Any, ...]:
    parameters = list(inspect.signature(getattr(PipelineHooks, name)).parameters)[1:]
    return tuple(SAMPLE_ARGS[p] for p in parameters)


def test_the_hook_set_is_the_documented_one() -> None:
    # The Prometheus hooks and the progress display implement these; a new one needs both.
    assert HOOKS == [
        "on_batch_closed",
        "on_batch_size",
        "on_batch_started",
        "on_busy",
        "on_checkpoint",
        "on_consumed",
        "on_drift",
        "on_failed",
        "on_invalid",
        "on_label_delays",
        "on_labels_unmatched",
        "on_lag",
        "on_learned",
        "on_model_score",
        "on_model_staleness",
        "on_model_version",
        "on_pipeline_ready",
        "on_predictions",
        "on_ready",
        "on_stage",
        "on_target_missed",
        "on_too_late",
    ]


@pytest.mark.parametrize("name", HOOKS)
def test_base_hooks_do_nothing(name: str) -> None:
    assert getattr(PipelineHooks(), name)(*sample_args(name)) is None


@pytest.mark.parametrize("name", HOOKS)
def test_fan_out_forwards_every_hook_to_every_observer_in_order(name: str) -> None:
    order: list[str] = []

    class Tagged(RecordingHooks):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def _record(self, name: str, *args: Any) -> None:
            super()._record(name, *args)
            order.append(self.tag)

    a, b, c = Tagged("a"), Tagged("b"), Tagged("c")
    args = sample_args(name)
    assert getattr(FanOutHooks(a, b, c), name)(*args) is None
    for observer in (a, b, c):
        assert observer.calls == [(name, args)]
    assert order == ["a", "b", "c"]


def test_fan_out_to_nobody_is_a_no_op() -> None:
    FanOutHooks().on_consumed("fraud", 1)


def test_fan_out_keeps_its_own_attributes() -> None:
    a = PipelineHooks()
    fan = FanOutHooks(a)
    assert fan.observers == (a,)
    assert isinstance(fan, PipelineHooks)


def test_fan_out_reaches_a_progress_display() -> None:
    progress = ProgressHooks(clock=lambda: 0.0)
    recorder = RecordingHooks()
    fan = FanOutHooks(recorder, progress)
    fan.on_consumed("fraud", 10)
    fan.on_invalid("fraud", "empty", 2)
    assert progress.consumed == 10
    assert progress.invalid_by_reason == {"empty": 2}
    assert [name for name, _ in recorder.calls] == ["on_consumed", "on_invalid"]


def test_fan_out_accepts_keyword_arguments() -> None:
    class Stages(PipelineHooks):
        def __init__(self) -> None:
            self.stages: list[tuple[str, str, float]] = []

        def on_stage(self, pipeline: str, stage: str, seconds: float) -> None:
            self.stages.append((pipeline, stage, seconds))

    a = Stages()
    FanOutHooks(a).on_stage("fraud", stage="learn", seconds=0.5)
    assert a.stages == [("fraud", "learn", 0.5)]


# --- progress --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_totals() -> None:
    clock = Clock()
    p = ProgressHooks(clock=clock)
    p.on_consumed("fraud", 60)
    p.on_consumed("churn", 40)
    p.on_invalid("fraud", "not_json", 2)
    p.on_invalid("fraud", "empty", 1)
    p.on_invalid("churn", "not_json", 3)
    p.on_learned("fraud", 50)
    p.on_batch_closed("fraud", 60, "size")
    p.on_batch_closed("fraud", 40, "deadline")
    p.on_batch_size("fraud", 128)
    p.on_drift("fraud")
    p.on_model_score("fraud", {"auc": 0.91, "accuracy": 0.97})
    clock.now = 104.0
    s = p.snapshot()
    assert (s.consumed, s.invalid, s.learned, s.batches, s.batch_size, s.drifts) == (
        100,
        6,
        50,
        2,
        128,
        1,
    )
    assert p.invalid_by_reason == {"not_json": 5, "empty": 1}
    assert s.scores == {"auc": 0.91, "accuracy": 0.97}
    assert s.elapsed_s == 4.0
    assert s.events_per_s == 25.0


def test_throughput_counts_from_the_first_event() -> None:
    clock = Clock()
    p = ProgressHooks(clock=clock)
    clock.now = 160.0  # a minute of start-up (broker, group join) before the first event
    p.on_consumed("fraud", 10)
    clock.now = 162.0
    p.on_consumed("fraud", 10)
    assert p.snapshot().events_per_s == 10.0


def test_no_latencies_no_percentiles() -> None:
    s = ProgressHooks(clock=Clock()).snapshot()
    assert (s.p50_ms, s.p99_ms, s.predicted) == (None, None, 0)
    assert s.events_per_s == 0.0


def test_latency_percentiles_in_milliseconds() -> None:
    p = ProgressHooks(clock=Clock())
    latencies = np.arange(1, 1001) / 1000.0  # 1 ms .. 1000 ms
    p.on_predictions("fraud", latencies[:400])
    p.on_predictions("fraud", latencies[400:])
    s = p.snapshot()
    assert s.predicted == 1000
    assert s.p50_ms == pytest.approx(np.percentile(latencies, 50) * 1000)
    assert s.p99_ms == pytest.approx(np.percentile(latencies, 99) * 1000)


def test_percentiles_cover_the_latest_window_only() -> None:
    p = ProgressHooks(clock=Clock())
    rng = np.random.default_rng(0)
    old = np.full(30_000, 5.0)  # five seconds: must fall out of the window
    recent = rng.uniform(0.001, 0.050, 60_000)
    p.on_predictions("fraud", old)
    for chunk in np.array_split(recent, 7):  # uneven chunks wrap the ring at odd places
        p.on_predictions("fraud", chunk)
    s = p.snapshot()
    window = recent[-50_000:]
    assert s.predicted == 90_000
    assert s.p50_ms == pytest.approx(np.percentile(window, 50) * 1000)
    assert s.p99_ms == pytest.approx(np.percentile(window, 99) * 1000)
    assert s.p99_ms is not None
    assert s.p99_ms < 50.0


def test_one_call_larger_than_the_window() -> None:
    p = ProgressHooks(clock=Clock())
    p.on_predictions("fraud", np.full(10, 9.0))
    values = np.concatenate([np.full(20_000, 9.0), np.linspace(0.001, 0.002, 50_000)])
    p.on_predictions("fraud", values)
    s = p.snapshot()
    assert s.predicted == 70_010
    assert s.p99_ms is not None
    assert s.p99_ms <= 2.0
