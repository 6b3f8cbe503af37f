"""The classification task: a probability per event (fraud, churn), learned test-then-train.

Pure: no I/O and no clock of its own beyond an injected one. Scoring and learning are separate
calls, so outputs are written between them and, later, scorers and a learner can be split apart.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlearn.aggregates import EntityState
from streamlearn.batch import RawBatch
from streamlearn.challenger import Challenger
from streamlearn.config import PipelineConfig
from streamlearn.decoding import DecodedBatch, EventDecoder, Rejection
from streamlearn.drift import ClassErrorDrift
from streamlearn.evaluation import PrequentialEvaluator
from streamlearn.features import FeatureBatch, Featurizer
from streamlearn.labels import ArrivedLabels, Exchange, PendingEvents
from streamlearn.models import BatchModel, LinearSklearnModel, build_model, reasons_of
from streamlearn.roles.examples import Examples
from streamlearn.tasks.base import LearnOutcome
from streamlearn.tasks.delayed import DelayedLabels, source_of
from streamlearn.tasks.entity_features import EntityFeatures, MemoryStateStore, StateStore
from streamlearn.watermarks import ForgetMarks, Watermark


@dataclass(slots=True)
class ScoredBatch:
    """A batch after scoring: what to write out, and what to learn from next."""

    raw: RawBatch
    decoded: DecodedBatch
    features: FeatureBatch
    scores: np.ndarray
    labels: np.ndarray
    model_version: int
    scored_at_ms: int
    # Which outputs already landed ("queued", "kafka", "redis"), so a retried write resumes.
    written: set[str] = field(default_factory=set)
    # With a labels topic: the batch's label messages, the events to keep until their label,
    # and (set by the writer) what the label store joined, refused and expired.
    arrived: ArrivedLabels | None = None
    pending: PendingEvents | None = None
    label_rejected: list[Rejection] = field(default_factory=list)
    watermark_ms: int = 0
    # What was learned of both topics before this batch (the least of their watermarks):
    # the entries this batch touches are kept until every kept checkpoint is a horizon past
    # it, so a replay of this batch finds them. And that mark once this batch is learned.
    floor_ms: int = 0
    mark_ms: int | None = None
    # Pending entries whose deadline lies before this may be deleted (see ForgetMarks).
    forget_before_ms: int | None = None
    exchange: Exchange | None = None
    # Per event, the top features pushing its score up, as JSON (models that can tell).
    reasons: list[str] | None = None
    # Entities whose aggregate state this batch changed: saved before the commit.
    entity_states: dict[str, EntityState] | None = None
    too_late: int = 0  # events too late for their entity's aggregates (scored all the same)
    # Per event, the version that scored it, when the batch was learned event by event.
    model_versions: np.ndarray | None = None

    @property
    def rejected(self) -> list[Rejection]:
        """Messages that failed validation, by position in :attr:`raw`."""
        if self.label_rejected:
            return self.decoded.rejected + self.label_rejected
        return self.decoded.rejected

    @property
    def rows(self) -> np.ndarray:
        """Positions in :attr:`raw` of the scored events."""
        return self.decoded.index


class ClassificationTask:
    """Scores and learns one pipeline's batches in test-then-train order.

    Examples
    --------
    >>> from streamlearn.config import PipelineConfig
    >>> config = PipelineConfig.model_validate({
    ...     "name": "demo", "source": {"topic": "t"},
    ...     "schema": {"target": "y", "features": {"x": "float"}},
    ...     "model": {"estimator": "river.linear_model.LogisticRegression"}})
    >>> pipeline = ClassificationTask(config, clock_ms=lambda: 1000)
    >>> raw = RawBatch()
    >>> raw.append("t", 0, 0, None, b'{"event_id": "a", "entity_id": "e", "ts": 5, "x": 1,'
    ...                             b' "y": 1}', 5, received=0.0)
    >>> raw.append("t", 0, 1, None, b'{"x": 1}', 6, received=0.0)
    >>> scored = pipeline.score(raw)
    >>> scored.scores.tolist(), [r.reason for r in scored.rejected], scored.model_version
    ([0.5], ['missing_field'], 0)
    >>> pipeline.learn(scored).learned, pipeline.model.version
    (1, 1)
    """

    def __init__(
        self,
        config: PipelineConfig,
        model: BatchModel | None = None,
        evaluator: PrequentialEvaluator | None = None,
        drift: ClassErrorDrift | None = None,
        clock_ms: Callable[[], int] | None = None,
        metrics_interval_ms: int = 1000,
        entity_states: StateStore | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.decoder = EventDecoder(config.schema_)
        self.featurizer = Featurizer(config.schema_)
        self.model = model or self.fresh_model()
        self.evaluator = evaluator or PrequentialEvaluator(threshold=config.model.threshold)
        self.drift = drift if drift is not None else _drift_monitor(config)
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        # Rolling metrics cost a sort of the window; compute them at most this often.
        self.metrics_interval_ms = metrics_interval_ms
        self._metrics_due = 0
        self.challenger: Challenger | None = None
        labels = config.labels
        self.delayed = DelayedLabels(labels, self.decoder) if labels is not None else None
        self.entity_features = (
            EntityFeatures(config.schema_, entity_states or MemoryStateStore())
            if config.schema_.aggregates
            else None
        )
        # Event time each topic's partitions have got to. Early labels expire at the events
        # watermark, so a partition that lags behind the others does not lose its labels;
        # with the labels one, it bounds what the label store may forget after checkpoints.
        self.events_time = Watermark()
        self.labels_time = Watermark()
        self.marks = ForgetMarks()
        # The least of both watermarks over what is learned (not merely scored): a checkpoint
        # saved while a batch is written (a rebalance) must not claim that batch's times.
        self.learned_mark: int | None = None

    def fresh_model(self) -> BatchModel:
        """A new, untrained model as configured."""
        return build_model(self.config.model, n_numeric=len(self.featurizer.numeric))

    def score(self, raw: RawBatch) -> ScoredBatch:
        """Decode, validate and featurize ``raw``, and score it with the current model."""
        arrived: ArrivedLabels | None = None
        bad_labels: list[Rejection] = []
        if self.delayed is None:
            decoded = self.decoder.decode(raw.values)
        else:
            decoded, arrived, bad_labels = self.delayed.decode(raw)
        changed, too_late = None, 0
        if self.entity_features is not None:
            before = self.entity_features.too_late
            changed = self.entity_features.add(raw, decoded)
            too_late = self.entity_features.too_late - before
        features = self.featurizer.transform(decoded)
        # A model that diverged must not put NaN in front of the business: serve the prior.
        scores = np.nan_to_num(self.model.predict_proba(features), nan=0.5).clip(0.0, 1.0)
        scored = ScoredBatch(
            raw=raw,
            decoded=decoded,
            features=features,
            scores=scores,
            labels=scores > self.config.model.threshold,
            model_version=self.model.version,
            scored_at_ms=self.clock_ms(),
            arrived=arrived,
            label_rejected=bad_labels,
            entity_states=changed,
            too_late=too_late,
        )
        if self.config.outputs.reasons:
            scored.reasons = explain(self.model, features)
        if self.delayed is not None:
            names = self.entity_features.names if self.entity_features is not None else []
            scored.pending = self.delayed.pending(raw, decoded, scores, names)
            scored.floor_ms = self.learned_mark or 0
            partitions = np.asarray(raw.partitions, dtype=np.int64)
            rows = decoded.index
            scored.watermark_ms = self.events_time.advance(partitions[rows], decoded.timestamps_ms)
            if arrived is not None and len(arrived):
                self.labels_time.advance(partitions[arrived.rows], np.asarray(arrived.ts_ms))
            if self.events_time.started and self.labels_time.started:
                scored.mark_ms = min(self.events_time.value, self.labels_time.value)
            scored.forget_before_ms = self.marks.before_ms
        return scored

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        """The source now reads ``partitions``: the events topic's ones hold the watermark.

        Called from the Kafka client's thread; the set is swapped whole, never mutated.
        """
        topic = self.config.source.topic
        self.events_time.reading = frozenset(p for t, p in partitions if t == topic)
        if self.config.labels is not None:
            labels = self.config.labels.topic
            self.labels_time.reading = frozenset(p for t, p in partitions if t == labels)

    @property
    def learns_each(self) -> bool:
        """Whether :meth:`score_and_learn_each` can run: labels come inline, not joined later."""
        return self.delayed is None

    def score_and_learn_each(self, raw: RawBatch) -> tuple[ScoredBatch, LearnOutcome]:
        """Test-then-train ``raw`` one event at a time, as batches of one would, in one pass.

        Each event is scored (and its reasons taken) with the model the events before it
        left, then evaluated and learned before the next is scored: the scores, versions and
        model are those of batches of one. What is paid once instead of per event: decoding,
        features, and (by the caller) the write and the commit. Only where labels are inline
        (:attr:`learns_each`); learning cannot be left out afterwards, so the caller records
        every row as learned.
        """
        assert self.delayed is None, "labels joined by the writer cannot be learned here"
        decoded = self.decoder.decode(raw.values)
        changed, too_late = None, 0
        if self.entity_features is not None:
            before = self.entity_features.too_late
            changed = self.entity_features.add(raw, decoded)
            too_late = self.entity_features.too_late - before
        features = self.featurizer.transform(decoded)
        _ = features.matrix  # built once for the batch; each row is a view of it
        n = len(decoded)
        scores, versions = np.empty(n), np.empty(n, dtype=np.int64)
        reasons: list[str] | None = [] if self.config.outputs.reasons else None
        # Linear scikit-learn models: each row's reason terms now, every row's reasons at once.
        terms: list[tuple[np.ndarray, np.ndarray]] | None = None
        if reasons is not None and isinstance(self.model, LinearSklearnModel):
            terms = []
        outcome = LearnOutcome(learned=0)
        for i in range(n):
            row = features.row(i)
            versions[i] = self.model.version
            score = float(self.model.predict_proba(row)[0])
            # As the batch path serves it: NaN as the prior, then clipped to [0, 1].
            scores[i] = 0.5 if score != score else min(max(score, 0.0), 1.0)
            served = scores[i : i + 1]
            if terms is not None and isinstance(self.model, LinearSklearnModel):
                terms.append(self.model.explanation_terms(row))
            elif reasons is not None:
                explained = explain(self.model, row)
                if explained is None:
                    reasons = None  # the model gives none
                else:
                    reasons.extend(explained)
            step = self._learn(row, served, decoded.targets[i : i + 1])
            outcome.learned += step.learned
            outcome.drift |= step.drift
            outcome.metrics = step.metrics or outcome.metrics
        if terms:
            inputs = np.vstack([t[0] for t in terms])
            reasons = reasons_of(features, inputs, np.vstack([t[1] for t in terms]), REASONS)
        scored = ScoredBatch(
            raw=raw,
            decoded=decoded,
            features=features,
            scores=scores,
            labels=scores > self.config.model.threshold,
            model_version=int(versions[0]) if n else self.model.version,
            scored_at_ms=self.clock_ms(),
            entity_states=changed,
            too_late=too_late,
            reasons=reasons,
            model_versions=versions,
        )
        return scored, outcome

    @property
    def model_version(self) -> int:
        """Learning steps of the serving model."""
        return self.model.version

    def describe(self) -> str:
        """One line on what this pipeline does, for ``streamlearn check``."""
        schema = self.config.schema_
        aggregates = f" ({len(schema.aggregates)} of them aggregates)" if schema.aggregates else ""
        labels = f", labels from {self.config.labels.topic}" if self.config.labels else ""
        count = len(schema.features) + len(schema.aggregates)
        return f"{count} features{aggregates}, model {self.config.model.estimator}{labels}"

    def scores(self) -> dict[str, float]:
        """The rolling prequential metrics (``auc``, ``accuracy``, ``logloss``)."""
        return self.evaluator.scores()

    def snapshot(self) -> dict[str, Any]:
        """Everything learned, for a checkpoint: model, evaluator, drift detector, challenger."""
        self.marks.snapshotted(self.learned_mark)
        return {
            "model": self.model,
            "evaluator": self.evaluator,
            "drift": self.drift,
            "challenger": self.challenger,
            "watermark_ms": self.events_time.value,
            "partition_times": dict(self.events_time.times),
            "labels_watermark": self.labels_time.state(),
            "forget_mark": self.learned_mark,
        }

    def checkpointed(self, kept: int) -> None:
        """The state :meth:`snapshot` last returned is saved; ``kept`` versions are kept.

        From then on, the label store may forget pending entries every kept checkpoint has
        read past (:class:`streamlearn.watermarks.ForgetMarks`).
        """
        self.marks.checkpointed(kept)

    def load_snapshot(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` returned (e.g. unpickled from a checkpoint)."""
        self.model = state["model"]
        self.evaluator = state.get("evaluator") or self.evaluator
        self.drift = state.get("drift", self.drift)
        self.challenger = state.get("challenger")
        self.events_time.load(state.get("watermark_ms", 0), state.get("partition_times", {}))
        labels = state.get("labels_watermark", {"value": 0, "times": {}})
        self.labels_time.load(labels["value"], labels["times"])
        self.learned_mark = state.get("forget_mark")

    def learn(self, scored: ScoredBatch, keep: np.ndarray | None = None) -> LearnOutcome:
        """Evaluate the served scores against the labels, then learn from the labelled events.

        ``keep`` (one flag per raw message) leaves out events that must not be learned now,
        e.g. of a partition that moved to another consumer while the batch was written.
        """
        outcome = self.learn_examples(self.examples(scored, keep))
        if scored.mark_ms is not None and (keep is None or keep.all()):
            # A batch learned in part leaves the mark where it was (its rest is read again).
            self.learned_mark = scored.mark_ms
        return outcome

    def examples(self, scored: ScoredBatch, keep: np.ndarray | None = None) -> Examples:
        """What ``scored`` teaches: its labelled events as scored, the scores served, sources.

        With labels inline, the batch's own events (unlabelled ones carry a NaN target); with
        delayed labels, the joins its label exchange made. A scorer sends these to the learner.
        """
        if self.delayed is not None:
            return self._joined_examples(scored, keep)
        d, raw = scored.decoded, scored.raw
        targets = d.targets
        if keep is not None and not keep.all():
            targets = np.where(keep[d.index], targets, np.nan)
        rows = d.index.tolist()
        return Examples(
            decoded=d,
            targets=targets,
            served=scored.scores,
            topics=[raw.topics[i] for i in rows],
            partitions=np.asarray(raw.partitions, dtype=np.int64)[d.index],
            offsets=np.asarray(raw.offsets, dtype=np.int64)[d.index],
            model_version=scored.model_version,
            features=scored.features,
        )

    def _joined_examples(self, scored: ScoredBatch, keep: np.ndarray | None) -> Examples:
        # Joins are learned with their events' features as scored and the scores served then.
        exchange = scored.exchange
        allowed = None
        if keep is not None and not keep.all():
            allowed = {source_of(scored.raw, i) for i in np.flatnonzero(keep).tolist()}
        joins = exchange.joins if exchange is not None and self.delayed is not None else []
        assert self.delayed is not None
        decoded, targets, served, kept = self.delayed.learnable(joins, allowed)
        if self.entity_features is not None:
            self.entity_features.restore(decoded, [p.get("a", {}) for p in kept])
        joiners = [str(p["j"]).rsplit("/", 2) for p in kept]
        examples = Examples(
            decoded=decoded,
            targets=targets,
            served=served,
            topics=[j[0] for j in joiners],
            partitions=np.array([int(j[1]) for j in joiners], dtype=np.int64),
            offsets=np.array([int(j[2]) for j in joiners], dtype=np.int64),
            model_version=scored.model_version,
            label_delays_s=label_delays(scored.arrived, kept),
        )
        if exchange is not None:
            examples.unmatched = dict(Counter(r.reason for r in exchange.unmatched))
            for reason, count in Counter(x.reason for x in exchange.expired).items():
                examples.unmatched[reason] = examples.unmatched.get(reason, 0) + count
        return examples

    def learn_examples(self, examples: Examples) -> LearnOutcome:
        """Evaluate the scores served to ``examples`` against their labels, then learn them."""
        if len(examples) and examples.features is None:
            examples.features = self.featurizer.transform(examples.decoded)
        outcome = LearnOutcome(learned=0)
        if examples.features is not None:
            outcome = self._learn(examples.features, examples.served, examples.targets)
        outcome.label_delays_s = examples.label_delays_s
        outcome.unmatched = dict(examples.unmatched)
        return outcome

    def _learn(
        self, features: FeatureBatch, served: np.ndarray, targets: np.ndarray
    ) -> LearnOutcome:
        labelled = ~np.isnan(targets)
        if not labelled.any():
            return LearnOutcome(learned=0)
        scores, truth = served[labelled], targets[labelled].astype(bool)
        self.evaluator.update(scores, truth)
        drifted = self.drift.update(scores, truth) if self.drift is not None else False
        self._race(features, served, labelled, truth, targets)
        learned = self.model.learn(features, targets)
        if drifted:
            self._after_drift()
        return LearnOutcome(learned=learned, drift=drifted, metrics=self._metrics())

    def _after_drift(self) -> None:
        action = self.config.drift.action
        if action == "reset":
            self._replace_model(self.fresh_model())
        elif action == "challenger" and self.challenger is None:
            settings = self.config.drift
            self.challenger = Challenger(
                self.fresh_model(), settings.challenger_events, warmup=settings.challenger_warmup
            )

    def _race(
        self,
        features: FeatureBatch,
        served: np.ndarray,
        labelled: np.ndarray,
        truth: np.ndarray,
        targets: np.ndarray,
    ) -> None:
        # The challenger scores the same labelled events before learning them, as served.
        race = self.challenger
        if race is None:
            return
        candidate = race.model.predict_proba(features)[labelled]
        race.observe(served[labelled], candidate, truth)
        race.model.learn(features, targets)
        if race.decided:
            self.challenger = None
            if race.wins:
                self._replace_model(race.model)

    def _replace_model(self, model: BatchModel) -> None:
        # Versions keep rising across replacements, so a prediction's version stays unique.
        model.version = self.model.version + 1
        self.model = model

    def _metrics(self) -> dict[str, float]:
        now = self.clock_ms()
        if now < self._metrics_due:
            return {}
        self._metrics_due = now + self.metrics_interval_ms
        return self.evaluator.scores()


def label_delays(arrived: ArrivedLabels | None, kept: list[dict[str, Any]]) -> np.ndarray:
    """Event-time delay (s) of the batch's labels that joined an event scored earlier.

    ``kept`` are the joined events' stored payloads (``e``: event id, ``t``: event time ms).

    >>> arrived = ArrivedLabels(event_ids=["a", "b"], ts_ms=[5_000, 9_000])
    >>> label_delays(arrived, [{"e": "a", "t": 2_000}, {"e": "c", "t": 1_000}]).tolist()
    [3.0]
    """
    if arrived is None or not len(arrived):
        return np.empty(0)
    when = dict(zip(arrived.event_ids, arrived.ts_ms))
    delays = [(when[p["e"]] - p["t"]) / 1000.0 for p in kept if p.get("e") in when and "t" in p]
    return np.maximum(np.asarray(delays, dtype=np.float64), 0.0)


REASONS = 3  # reason codes per prediction


def explain(model: BatchModel, features: FeatureBatch, top: int = REASONS) -> list[str] | None:
    """Reason codes from models that can give them (``explain``), else ``None``."""
    method = getattr(model, "explain", None)
    return None if method is None else list(method(features, top))


def _drift_monitor(config: PipelineConfig) -> ClassErrorDrift | None:
    settings = config.drift
    if settings.detector == "none":
        return None
    return ClassErrorDrift(settings.detector, dict(settings.params), grace=settings.grace_events)
