"""Turns one run's raw records into the numbers the benchmark reports.

Pure functions of arrays: latency percentiles and the share within the target, prequential AUC
over time, and how long and how much accuracy a model loses after an abrupt drift.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

# Recovered = windowed AUC back within this of the pre-drift level, at two checkpoints running.
RECOVERY_TOLERANCE = 0.02
AUC_STEP = 1000  # events between two points of the AUC curve
AUC_WINDOW = 2000  # events each point of the curve covers (trailing)
PRE_DRIFT_EVENTS = 5000  # the pre-drift level is the AUC over this many events before the drift


def latency_summary(latencies_s: np.ndarray, produced: int, target_ms: float) -> dict[str, float]:
    """p50/p99 of processed events, and the share of *produced* events written within target.

    An event never processed counts as late, so a variant that falls behind cannot look good.

    >>> s = latency_summary(np.array([0.01, 0.02, 0.5]), produced=4, target_ms=100)
    >>> s["p50_ms"], s["within_target"], s["processed_share"]
    (20.0, 0.5, 0.75)
    """
    lat_ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    within = int((lat_ms <= target_ms).sum())
    produced = max(produced, 1)
    return {
        "p50_ms": _pct(lat_ms, 50),
        "p99_ms": _pct(lat_ms, 99),
        "max_ms": float(lat_ms.max()) if lat_ms.size else float("nan"),
        "within_target": within / produced,
        "processed_share": min(1.0, lat_ms.size / produced),
    }


def meets_target(summary: dict[str, float], share: float = 0.99) -> bool:
    """The latency target is met when its p99 over all produced events is within target.

    >>> meets_target({"within_target": 0.995}), meets_target({"within_target": 0.9})
    (True, False)
    """
    return summary["within_target"] >= share


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values.size else float("nan")


def window_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of one window; None when it holds one class only.

    >>> window_auc(np.array([0.9, 0.1, 0.8]), np.array([1, 0, 0]))
    1.0
    """
    if labels.size == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def auc_curve(
    scores: np.ndarray,
    labels: np.ndarray,
    start: int = 0,
    step: int = AUC_STEP,
    window: int = AUC_WINDOW,
) -> list[tuple[int, float]]:
    """Prequential AUC every ``step`` events: ``(events seen, AUC of the trailing window)``.

    The window never reaches back before ``start`` (the drift point, for a post-drift curve).

    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(4000) < 0.2).astype(int)
    >>> curve = auc_curve(y + rng.normal(0, 0.5, 4000), y)
    >>> [e for e, _ in curve], all(a > 0.8 for _, a in curve)
    ([1000, 2000, 3000, 4000], True)
    """
    points = []
    for end in range(start + step, len(scores) + 1, step):
        begin = max(start, end - window)
        auc = window_auc(scores[begin:end], labels[begin:end])
        if auc is not None:
            points.append((end, round(auc, 4)))
    return points


@dataclass(frozen=True, slots=True)
class DriftRecovery:
    """How a model fared after an abrupt drift at event ``drift_at``.

    ``loss`` is the area between the pre-drift level and the AUC curve where the curve is below
    it, over the post-drift horizon (AUC x events); ``recovered_after`` is the number of events
    after the drift until the curve is back within :data:`RECOVERY_TOLERANCE` of the pre-drift
    level at two checkpoints running (None if it never is within the horizon).
    """

    pre_drift_auc: float
    recovered_after: int | None
    loss: float
    horizon: int
    curve: list[tuple[int, float]]


def drift_recovery(
    scores: np.ndarray, labels: np.ndarray, drift_at: int, horizon: int
) -> DriftRecovery:
    """Measure recovery over ``horizon`` events after ``drift_at``.

    >>> rng = np.random.default_rng(1)
    >>> y = (rng.random(12000) < 0.2).astype(int)
    >>> noise = np.r_[np.full(6000, 0.3), np.full(2000, 3.0), np.full(4000, 0.3)]
    >>> r = drift_recovery(y + rng.normal(0, 1, 12000) * noise, y, drift_at=6000, horizon=6000)
    >>> r.recovered_after, r.loss > 0
    (4000, True)
    """
    begin = max(0, drift_at - PRE_DRIFT_EVENTS)
    pre = window_auc(scores[begin:drift_at], labels[begin:drift_at]) or float("nan")
    end = min(len(scores), drift_at + horizon)
    curve = auc_curve(scores[:end], labels[:end], start=drift_at)
    loss = sum(max(0.0, pre - auc) * AUC_STEP for _, auc in curve)
    recovered = None
    for (first, a), (_, b) in itertools.pairwise(curve):
        if min(a, b) >= pre - RECOVERY_TOLERANCE:
            recovered = first - drift_at
            break
    return DriftRecovery(round(pre, 4), recovered, round(loss, 1), end - drift_at, curve)
