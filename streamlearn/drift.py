"""Watches a model's prequential error for concept drift, one batch of errors at a time.

Wraps a detector from ``river.drift`` chosen by short name. The pipeline feeds
:class:`ClassErrorDrift` the served scores and labels; when it fires, the runner tells the batcher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from river import base, drift

from streamlearn.errors import ConfigError

# KSWIN runs a Kolmogorov-Smirnov test per event (~0.3 ms each): for low-rate streams only.
DETECTORS: dict[str, Callable[..., base.DriftDetector]] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "kswin": drift.KSWIN,
}
# Only a rising error calls for smaller batches (ADWIN's falls are filtered in update); river's
# Page-Hinkley default delta (0.005) raised false alarms on stationary 0/1 error streams of
# 10,000 events.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"page_hinkley": {"delta": 0.01, "mode": "up"}}


class DriftMonitor:
    """A river drift detector fed with per-event error values, batch by batch.

    Parameters
    ----------
    detector
        ``"adwin"`` (default), ``"page_hinkley"`` or ``"kswin"``.
    params
        Keyword arguments of the river detector, e.g. ``{"delta": 0.002}`` for ADWIN. They
        override this module's defaults (Page-Hinkley: ``delta=0.01, mode="up"``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> monitor = DriftMonitor("adwin")
    >>> monitor.update((rng.random(2000) < 0.1).astype(float))
    False
    >>> any(monitor.update((rng.random(100) < 0.5).astype(float)) for _ in range(10))
    True
    >>> monitor.detections
    1
    """

    def __init__(self, detector: str = "adwin", params: dict[str, Any] | None = None) -> None:
        key = detector.lower().replace("-", "_")
        if key not in DETECTORS:
            known = ", ".join(DETECTORS)
            raise ConfigError(f"unknown drift detector {detector!r}; expected one of: {known}")
        self.name = key
        self.params = {**DEFAULT_PARAMS.get(key, {}), **(params or {})}
        # Only a rising error is drift here: a model that gets better needs no smaller batches.
        self.rising_only = key == "adwin"
        self.detections = 0
        self._detector = self._build()

    def _build(self) -> base.DriftDetector:
        try:
            return DETECTORS[self.name](**self.params)
        except TypeError as exc:
            raise ConfigError(f"bad parameters for drift detector {self.name!r}: {exc}") from None

    def update(self, errors: np.ndarray) -> bool:
        """Feed one batch of per-event errors; return whether drift was detected in it.

        ``errors`` holds 0/1 misclassifications or absolute errors ``|y - p|``; NaN marks an
        event without a label and is skipped. ``detections`` counts batches with a drift.
        """
        values = np.asarray(errors, dtype=float).ravel()
        detector, detected = self._detector, False
        if not self.rising_only:
            # river's detectors take one value at a time; tolist() keeps the loop on floats.
            for value in values[~np.isnan(values)].tolist():
                detector.update(value)
                detected = detected or detector.drift_detected
        else:
            # ADWIN flags a change of the mean either way. At a change it drops the older part
            # of its window, so its estimate moves to the recent mean: compared with the mean
            # before the batch (or the last change), that says whether the error rose.
            adwin: Any = detector
            before = adwin.estimation
            for value in values[~np.isnan(values)].tolist():
                detector.update(value)
                if detector.drift_detected:
                    now = adwin.estimation
                    detected = detected or now > before
                    before = now
        self.detections += detected
        return detected

    def reset(self) -> None:
        """Forget everything seen so far (the count of detections is kept)."""
        self._detector = self._build()


class ClassErrorDrift:
    """Drift in a binary classifier's errors, watched per class.

    With rare positives (1-2 % fraud) the overall error rate barely moves when the positive
    pattern changes, so one detector watches the positives' miss error ``1 - p`` and another the
    negatives' false-alarm error ``p``. A detection within ``grace`` labelled events of the start
    or of the previous detection is not reported: that is the model still (re)learning.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> watch = ClassErrorDrift("adwin", grace=500)
    >>> labels = rng.random(20_000) < 0.02
    >>> before = np.where(labels, 0.7, 0.02) + rng.normal(0, 0.05, 20_000)
    >>> any(watch.update(b, l) for b, l in zip(np.split(before, 100), np.split(labels, 100)))
    False
    >>> after = np.where(labels, 0.05, 0.02) + rng.normal(0, 0.05, 20_000)
    >>> any(watch.update(a, l) for a, l in zip(np.split(after, 100), np.split(labels, 100)))
    True
    """

    def __init__(
        self, detector: str = "adwin", params: dict[str, Any] | None = None, grace: int = 1000
    ) -> None:
        self.missed = DriftMonitor(detector, params)
        self.false_alarms = DriftMonitor(detector, params)
        self.grace = grace
        self.seen = 0
        self.detections = 0
        self._quiet_until = grace

    def update(self, scores: np.ndarray, labels: np.ndarray) -> bool:
        """Feed one batch of served scores and their true labels; return whether it drifted."""
        positive = np.asarray(labels, dtype=bool)
        scores = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
        fired = self.missed.update(1.0 - scores[positive])
        fired = self.false_alarms.update(scores[~positive]) or fired
        self.seen += len(positive)
        if not fired or self.seen < self._quiet_until:
            return False
        self.detections += 1
        self._quiet_until = self.seen + self.grace
        return True
