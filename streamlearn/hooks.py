"""What the engine reports while it runs, as hooks on a no-op base.

The engine calls these; ``connectors.prometheus.PrometheusHooks`` turns them into metrics. The
engine itself never imports a metrics library, and tests can record calls with a subclass.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np


class PipelineHooks:
    """Observer of one process's pipelines; every method is a no-op here.

    All counts are per call (increments), never totals. ``pipeline`` is the pipeline's name.

    Examples
    --------
    >>> hooks = PipelineHooks()
    >>> hooks.on_consumed("fraud", 10)
    """

    def on_consumed(self, pipeline: str, n: int) -> None:
        """``n`` messages were taken from the source (valid or not)."""

    def on_invalid(self, pipeline: str, reason: str, n: int) -> None:
        """``n`` messages were rejected for ``reason`` and sent to the dead-letter topic."""

    def on_labels_unmatched(self, pipeline: str, reason: str, n: int) -> None:
        """``n`` delayed labels matched no event for ``reason`` and were dead-lettered."""

    def on_too_late(self, pipeline: str, n: int) -> None:
        """``n`` events were too late for their entity's aggregates (scored, not folded in).

        Too late is more than ``schema.allowed_lateness_s`` behind the entity's newest event.
        """

    def on_label_delays(self, pipeline: str, delays_s: np.ndarray) -> None:
        """Delayed labels joined their events; each label's delay after its event, in seconds.

        The delay is in event time: the label message's record timestamp less its event's time,
        for labels that came after their event (one that came first waited for it: no delay).
        """

    def on_predictions(self, pipeline: str, latencies_s: np.ndarray) -> None:
        """Predictions were written; one latency (ingest → written, seconds) per prediction."""

    def on_learned(self, pipeline: str, n: int) -> None:
        """The model learned from ``n`` labelled events."""

    def on_batch_started(self, pipeline: str) -> None:
        """A batch was taken from the buffer and its processing began."""

    def on_batch_closed(self, pipeline: str, size: int, trigger: str) -> None:
        """A batch of ``size`` messages closed because of ``trigger``."""

    def on_busy(self, pipeline: str, activity: str | None) -> None:
        """Between batches, the pipeline began ``activity`` (I/O that may block); None: done.

        Reading model requests, or committing offsets and saving a checkpoint while idle:
        a blocked socket there stalls the pipeline as surely as one inside a batch.
        """

    def on_batch_size(self, pipeline: str, size: int) -> None:
        """The batcher's current target size changed (or was re-reported)."""

    def on_stage(self, pipeline: str, stage: str, seconds: float) -> None:
        """One stage of a batch took ``seconds``: score, write, learn, commit or checkpoint."""

    def on_target_missed(self, pipeline: str, n: int) -> None:
        """``n`` predictions were written later than the latency target."""

    def on_lag(self, pipeline: str, lag: Mapping[int, int]) -> None:
        """Consumer lag per partition number."""

    def on_model_score(self, pipeline: str, scores: Mapping[str, float]) -> None:
        """Rolling prequential metrics, by metric name (``auc``, ``accuracy``, ``logloss``)."""

    def on_drift(self, pipeline: str) -> None:
        """The drift detector fired."""

    def on_model_version(self, pipeline: str, version: int) -> None:
        """The model now has this version."""

    def on_model_staleness(self, pipeline: str, seconds: float) -> None:
        """A scorer served a batch with a model the learner vouched for ``seconds`` ago."""

    def on_checkpoint(self, pipeline: str, written_at: float) -> None:
        """A checkpoint was written at ``written_at`` (epoch seconds)."""

    def on_ready(self, ready: bool) -> None:
        """The process became ready (sources assigned, outputs reachable) or stopped being so."""

    def on_pipeline_ready(self, pipeline: str, ready: bool) -> None:
        """One pipeline holds its partitions and its outputs work, or stopped doing so."""

    def on_failed(self, pipeline: str, message: str) -> None:
        """The pipeline stopped on an error it cannot get past; ``message`` says which."""


class FanOutHooks(PipelineHooks):
    """Forwards every hook to several observers (metrics and a progress display, say).

    Examples
    --------
    >>> class Count(PipelineHooks):
    ...     n = 0
    ...     def on_consumed(self, pipeline, n):
    ...         self.n += n
    >>> a, b = Count(), Count()
    >>> FanOutHooks(a, b).on_consumed("p", 3)
    >>> a.n, b.n
    (3, 3)
    """

    def __init__(self, *observers: PipelineHooks) -> None:
        self.observers = observers
        for name in HOOK_NAMES:
            setattr(self, name, functools.partial(self._forward, name))

    def _forward(self, name: str, *args: object, **kwargs: object) -> None:
        for observer in self.observers:
            getattr(observer, name)(*args, **kwargs)


HOOK_NAMES = tuple(name for name in vars(PipelineHooks) if name.startswith("on_"))
