"""Everything a scored batch writes before its offsets are committed.

Predictions go to Redis (and optionally a predictions topic); rejected messages go, with their
original bytes and the reason in headers, to the dead-letter topic. ``write`` returns only when
all of it is durable, or raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from connectors.dead_letters import DeadLetters, MessageSink
from connectors.redis_store import PredictionColumns, PredictionStore
from streamlearn.batch import RawBatch
from streamlearn.labels import ArrivedLabels, Exchange, LabelStore
from streamlearn.rejections import Rejection
from streamlearn.roles.tasks import LearnBatch
from streamlearn.tasks.classification import ScoredBatch
from streamlearn.tasks.entity_features import StateStore


class BatchOutputs:
    """Writes one pipeline's scored batches: dead letters, predictions topic, Redis."""

    def __init__(
        self,
        pipeline: str,
        store: PredictionStore,
        producer: MessageSink,
        dead_letter_topic: str,
        predictions_topic: str | None = None,
        labels: LabelStore | None = None,
        states: StateStore | None = None,
        learn_topic: str | None = None,
        examples: Callable[[ScoredBatch], list[bytes]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.predictions_topic = predictions_topic
        self.labels = labels
        self.states = states
        # Scorer role: what each batch teaches goes to the learner with the batch's outputs.
        self.learn_topic = learn_topic
        self.examples = examples
        self.dead_letters = DeadLetters(producer, dead_letter_topic, pipeline)
        self._forgotten_before: int | None = None  # the label store's last forget bound
        self._forgot_at = 0.0  # when (monotonic) the label store last forgot or pruned
        self.clock = time.monotonic

    def write(self, scored: ScoredBatch) -> None:
        """Write all outputs of ``scored`` durably.

        Called again after a failure, it resumes: messages already queued to Kafka are not
        queued twice, and a Redis write that landed is not repeated.
        """
        self.begin(scored)()

    def begin(self, scored: ScoredBatch) -> Callable[[], None]:
        """Write all outputs but wait only for what learning needs; return the wait for the rest.

        Labels, states and Kafka messages are durable when this returns; the predictions are
        sent to Redis, which writes them while the batch is learned. The call returned waits for
        Redis's reply; after a failure of either, :meth:`write` resumes the batch.
        """
        self._before_predictions(scored)
        if "redis" in scored.written or not len(scored.decoded):
            scored.written.add("redis")
            return lambda: None
        replies = self.store.send(columns(scored))

        def confirmed() -> None:
            replies()
            scored.written.add("redis")

        return confirmed

    def _before_predictions(self, scored: ScoredBatch) -> None:
        done = scored.written
        if self.states is not None and scored.entity_states and "states" not in done:
            self.states.save(scored.entity_states)  # replays skip what these states applied
            done.add("states")
        if self.labels is not None and "labels" not in done and scored.pending is not None:
            # First, so labels that match nothing are dead-lettered with this batch.
            scored.exchange = self.labels.exchange(
                scored.pending,
                scored.arrived or ArrivedLabels(),
                scored.watermark_ms,
                floor_ms=scored.floor_ms,
            )
            done.add("labels")
        if "queued" not in done:
            self.dead_letters.send(scored.raw, scored.rejected)
            if scored.exchange is not None:
                self._send_unmatched(scored.raw, scored.exchange)
            if self.predictions_topic and len(scored.decoded):
                self._send_predictions(scored)
            if self.examples is not None and self.learn_topic:
                key = self.pipeline.encode()
                for message in self.examples(scored):
                    self.producer.send(self.learn_topic, message, key)
            done.add("queued")
        if "kafka" not in done:
            self.producer.flush()
            done.add("kafka")
        if self.labels is not None and "settled" not in done:
            self._settle_labels(scored)
            done.add("settled")

    def close(self) -> None:
        """Deliver what is queued and disconnect the producer."""
        self.producer.close()

    def _settle_labels(self, scored: ScoredBatch) -> None:
        # The expired labels' dead letters are durable now: the store may delete them. And
        # pending events no kept checkpoint can read again are deleted when the bound moves
        # (at a checkpoint); at least once a second the store drops what the TTL removed.
        assert self.labels is not None
        if scored.exchange is not None and scored.exchange.expired:
            self.labels.dead_lettered(scored.exchange.expired)
        before, last = scored.forget_before_ms, self._forgotten_before
        moved = before is not None and (last is None or before > last)
        if moved or self.clock() - self._forgot_at >= 1.0:
            self.labels.forget(before if moved else None)
            if moved:
                self._forgotten_before = before
            self._forgot_at = self.clock()

    def _send_unmatched(self, raw: RawBatch, exchange: Exchange) -> None:
        # Label messages of this batch that matched nothing, and earlier ones that expired.
        self.dead_letters.send(raw, exchange.unmatched)
        for label in exchange.expired:
            if label.reason == "past_horizon":
                detail = f"event {label.event_id!r} came more than labels.horizon_s before it"
            else:
                detail = f"no event {label.event_id!r} arrived within labels.horizon_s of its label"
            rejection = Rejection(-1, label.reason, detail)
            self.dead_letters.send_one(
                label.value, label.event_id.encode(), rejection, label.source
            )

    def _send_predictions(self, scored: ScoredBatch) -> None:
        d = scored.decoded
        scores, labels, ts = scored.scores.tolist(), scored.labels.tolist(), d.timestamps_ms
        reasons = scored.reasons
        versions = (
            [scored.model_version] * len(d)
            if scored.model_versions is None
            else scored.model_versions.tolist()
        )
        for i, (event, entity) in enumerate(zip(d.event_ids, d.entity_ids)):
            record: dict[str, object] = {
                "pipeline": self.pipeline,
                "event_id": event,
                "entity_id": entity,
                "score": scores[i],
                "label": int(labels[i]),
                "model_version": versions[i],
                "ts": int(ts[i]),
                "scored_at": scored.scored_at_ms,
            }
            if reasons is not None:  # already JSON: embedded as the array it is, not re-parsed
                record["reasons"] = orjson.Fragment(reasons[i])
            self.producer.send(self.predictions_topic or "", orjson.dumps(record), entity.encode())


class LearnerOutputs:
    """The learner's outputs: no predictions, only dead letters.

    A learn-topic message it cannot read is dead-lettered with its reason, then skipped, as a
    malformed event is.
    """

    def __init__(self, pipeline: str, producer: MessageSink, dead_letter_topic: str) -> None:
        self.producer = producer
        self.dead_letters = DeadLetters(producer, dead_letter_topic, pipeline)

    def write(self, batch: LearnBatch) -> None:
        """Dead-letter the batch's unreadable messages, durably."""
        if batch.rejected and "kafka" not in batch.written:
            if "queued" not in batch.written:
                self.dead_letters.send(batch.raw, batch.rejected)
                batch.written.add("queued")
            self.producer.flush()
            batch.written.add("kafka")

    def close(self) -> None:
        """Deliver what is queued and disconnect the producer."""
        self.producer.close()


def columns(scored: ScoredBatch) -> PredictionColumns:
    """The prediction columns of a scored batch."""
    d = scored.decoded
    return PredictionColumns(
        entity_ids=d.entity_ids,
        event_ids=d.event_ids,
        timestamps_ms=d.timestamps_ms,
        scores=scored.scores,
        labels=scored.labels,
        model_version=scored.model_version,
        scored_at_ms=scored.scored_at_ms,
        reasons=scored.reasons,
        model_versions=scored.model_versions,
    )
