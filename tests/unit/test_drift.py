"""The drift monitor on synthetic error streams with a known change point."""

from __future__ import annotations

import numpy as np
import pytest
from river.drift import ADWIN

from streamlearn.drift import DriftMonitor
from streamlearn.errors import ConfigError

EVENTS, CHANGE_AT, BATCH = 10_000, 5_000, 100


def error_stream(rates: tuple[float, float], seed: int) -> np.ndarray:
    """0/1 misclassifications at ``rates[0]`` before the change point and ``rates[1]`` after."""
    rng = np.random.default_rng(seed)
    rate = np.where(np.arange(EVENTS) < CHANGE_AT, rates[0], rates[1])
    return (rng.random(EVENTS) < rate).astype(float)


def detections(monitor: DriftMonitor, errors: np.ndarray) -> list[int]:
    """Index of the first event of every batch in which the monitor reported drift."""
    return [i for i in range(0, len(errors), BATCH) if monitor.update(errors[i : i + BATCH])]


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detects_an_abrupt_change_soon_after_it_happens(detector: str, seed: int) -> None:
    monitor = DriftMonitor(detector)
    found = detections(monitor, error_stream((0.1, 0.5), seed))
    assert found, "the change from 10 % to 50 % errors went unnoticed"
    assert CHANGE_AT <= found[0] < CHANGE_AT + 500
    assert monitor.detections == len(found)


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stays_quiet_on_a_stationary_stream(detector: str, seed: int) -> None:
    monitor = DriftMonitor(detector)
    assert detections(monitor, error_stream((0.1, 0.1), seed)) == []
    assert monitor.detections == 0


def test_kswin_detects_a_shift_of_absolute_errors() -> None:
    # KSWIN compares distributions, so it suits continuous |y - p| errors; it is slow per event.
    rng = np.random.default_rng(0)
    monitor = DriftMonitor("kswin", {"window_size": 100, "stat_size": 30, "seed": 1})
    assert not monitor.update(rng.uniform(0.0, 0.2, 300))
    assert monitor.update(rng.uniform(0.4, 0.6, 100))


def test_events_without_a_label_are_skipped() -> None:
    monitor = DriftMonitor("adwin")
    stream = error_stream((0.1, 0.5), seed=3)
    with_gaps = stream.copy()
    with_gaps[::2] = np.nan
    unlabelled = np.full(1000, np.nan)
    assert not monitor.update(unlabelled)
    assert detections(monitor, with_gaps)  # half the labels still show the change


def test_reset_forgets_the_history_but_keeps_the_count() -> None:
    before, after = error_stream((0.1, 0.1), 4), error_stream((0.5, 0.5), 5)
    remembered = DriftMonitor("adwin")
    remembered.update(before)
    assert remembered.update(after)

    forgetful = DriftMonitor("adwin")
    forgetful.update(before)
    forgetful.detections = 7
    forgetful.reset()
    assert not forgetful.update(after)  # 50 % from the start is no change
    assert forgetful.detections == 7


def test_detector_names_and_parameters_are_checked() -> None:
    assert DriftMonitor("Page-Hinkley").name == "page_hinkley"
    with pytest.raises(ConfigError, match=r"unknown drift detector 'ddm'.*adwin"):
        DriftMonitor("ddm")
    with pytest.raises(ConfigError, match="bad parameters for drift detector 'adwin'"):
        DriftMonitor("adwin", {"window": 3})


def test_parameters_reach_the_detector() -> None:
    slight_rise = error_stream((0.1, 0.12), seed=0)
    assert detections(DriftMonitor("adwin"), slight_rise) == []
    assert detections(DriftMonitor("adwin", {"delta": 0.9}), slight_rise)  # far too sensitive
    assert DriftMonitor("page_hinkley", {"threshold": 80}).params == {
        "delta": 0.01,
        "mode": "up",
        "threshold": 80,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_falling_error_is_not_drift(seed: int) -> None:
    # river's ADWIN flags the change from 50 % to 10 % errors (the model got better); the
    # monitor does not report it, so the batcher keeps its size. The same change upward is.
    falling = error_stream((0.5, 0.1), seed)
    raw = ADWIN()
    assert any(raw.update(x) or raw.drift_detected for x in falling.tolist())
    assert detections(DriftMonitor("adwin"), falling) == []
    assert detections(DriftMonitor("adwin"), error_stream((0.1, 0.5), seed))
