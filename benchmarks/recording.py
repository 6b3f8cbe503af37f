"""Records what one processor run did: every latency, batch, stage time and served score.

The runner reports latencies and batches through hooks; the served scores and labels are taken
from the pipeline's prequential evaluator, which sees them in test-then-train order.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from streamlearn.app import App
from streamlearn.config import PipelineCommon, PipelineConfig
from streamlearn.evaluation import PrequentialEvaluator
from streamlearn.health import Readiness
from streamlearn.hooks import PipelineHooks
from streamlearn.runner import PipelineRunner
from streamlearn.tasks.classification import ClassificationTask


class RecordingHooks(PipelineHooks):
    """Keeps every latency and batch of a run, with the monotonic time each was reported.

    Examples
    --------
    >>> hooks = RecordingHooks()
    >>> hooks.on_predictions("fraud", np.array([0.01, 0.2]))
    >>> hooks.on_batch_closed("fraud", 2, "size")
    >>> hooks.latencies_s().tolist(), hooks.batch_sizes, dict(hooks.triggers)
    ([0.01, 0.2], [2], {'size': 1})
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: list[np.ndarray] = []
        self.first_consumed_at: float | None = None
        self.last_written_at: float | None = None
        self.predicted = 0
        self.batch_sizes: list[int] = []
        self.size_trace: list[tuple[float, int]] = []
        self.triggers: dict[str, int] = defaultdict(int)
        self.stage_s: dict[str, float] = defaultdict(float)
        self.drifts: list[int] = []  # events predicted when each drift was detected

    def on_consumed(self, pipeline: str, n: int) -> None:
        if self.first_consumed_at is None:
            self.first_consumed_at = time.monotonic()

    def on_predictions(self, pipeline: str, latencies_s: np.ndarray) -> None:
        with self._lock:
            self._latencies.append(np.asarray(latencies_s, dtype=np.float64).copy())
            self.predicted += len(latencies_s)
            self.last_written_at = time.monotonic()

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:
        self.batch_sizes.append(size)
        self.triggers[trigger] += 1

    def on_batch_size(self, pipeline: str, size: int) -> None:
        if not self.size_trace or self.size_trace[-1][1] != size:
            self.size_trace.append((time.monotonic(), size))

    def on_stage(self, pipeline: str, stage: str, seconds: float) -> None:
        self.stage_s[stage] += seconds

    def on_drift(self, pipeline: str) -> None:
        self.drifts.append(self.predicted)

    def latencies_s(self) -> np.ndarray:
        """Every prediction's latency (record timestamp → written), in seconds, in order."""
        with self._lock:
            return np.concatenate(self._latencies) if self._latencies else np.zeros(0)


class RecordingEvaluator(PrequentialEvaluator):
    """A prequential evaluator that also keeps every (served score, label) pair in order.

    Examples
    --------
    >>> ev = RecordingEvaluator()
    >>> ev.update(np.array([0.9, 0.1]), np.array([1, 0]))
    >>> ev.served()[0].tolist(), ev.served()[1].tolist()
    ([0.9, 0.1], [1, 0])
    """

    def __init__(self, window: int = 10_000, threshold: float = 0.5) -> None:
        super().__init__(window=window, threshold=threshold)
        self._all_scores: list[np.ndarray] = []
        self._all_labels: list[np.ndarray] = []

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self._all_scores.append(np.asarray(scores, dtype=np.float64).ravel().copy())
        self._all_labels.append(np.asarray(labels).ravel().astype(np.int8))
        super().update(scores, labels)

    def served(self) -> tuple[np.ndarray, np.ndarray]:
        """All scores served so far and their labels, in prequential order."""
        if not self._all_scores:
            return np.zeros(0), np.zeros(0, dtype=np.int8)
        return np.concatenate(self._all_scores), np.concatenate(self._all_labels)


class BenchmarkApp(App):
    """The real :class:`App`, with a recording evaluator put into each pipeline it builds."""

    def _runner(self, config: PipelineCommon, readiness: Readiness) -> PipelineRunner:
        runner = super()._runner(config, readiness)
        if not isinstance(config, PipelineConfig) or not isinstance(
            runner.pipeline, ClassificationTask
        ):
            raise TypeError(f"pipeline {config.name!r}: the fraud benchmark records classification")
        evaluator = RecordingEvaluator(threshold=config.model.threshold)
        runner.pipeline.evaluator = evaluator
        self.evaluators = getattr(self, "evaluators", {})
        self.evaluators[config.name] = evaluator
        return runner

    def served(self, pipeline: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels the pipeline served, in order (empty before it ran)."""
        evaluators: Mapping[str, RecordingEvaluator] = getattr(self, "evaluators", {})
        found = evaluators.get(pipeline)
        return found.served() if found else (np.zeros(0), np.zeros(0, dtype=np.int8))
