"""Everything a served recommendation batch writes before its offsets are committed.

Malformed interactions go to the dead-letter topic; with ``outputs.predictions_topic`` set, each
event's served list goes there as JSON (``event_id``, ``user_id``, ``items`` best first, the
model version); then every touched user's next list replaces the one in Redis. ``write``
returns only when all of it is durable, or raises; called again, it resumes.
"""

from __future__ import annotations

import orjson

from connectors.dead_letters import DeadLetters, MessageSink
from connectors.redis_recs import RecommendationStore
from streamlearn.tasks.recommendation import ServedBatch


class RecommendationOutputs:
    """Writes one recommendation pipeline's served batches: dead letters, topic, Redis lists."""

    def __init__(
        self,
        pipeline: str,
        store: RecommendationStore,
        producer: MessageSink,
        dead_letter_topic: str,
        predictions_topic: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.producer = producer
        self.predictions_topic = predictions_topic
        self.dead_letters = DeadLetters(producer, dead_letter_topic, pipeline)
        self.states = None  # no per-entity aggregate state in this task

    def write(self, scored: ServedBatch) -> None:
        """Write all outputs of ``scored`` durably, resuming after a failure."""
        done = scored.written
        if "queued" not in done:
            self.dead_letters.send(scored.raw, scored.rejected)
            if self.predictions_topic and len(scored.decoded):
                self._send_served(scored)
            done.add("queued")
        if "kafka" not in done:
            self.producer.flush()
            done.add("kafka")
        if "redis" not in done:
            if scored.served.final:
                self.store.write(scored.served.final)
            done.add("redis")

    def close(self) -> None:
        """Deliver what is queued and disconnect the producer."""
        self.producer.close()

    def _send_served(self, scored: ServedBatch) -> None:
        decoded, served = scored.decoded, scored.served
        ts = decoded.timestamps_ms.tolist()
        topic = self.predictions_topic or ""
        for i, (event, user) in enumerate(zip(decoded.event_ids, decoded.entity_ids)):
            record = {
                "pipeline": self.pipeline,
                "event_id": event,
                "user_id": user,
                "items": served.items[i],
                "model_version": scored.model_version,
                "ts": ts[i],
                "scored_at": scored.scored_at_ms,
            }
            self.producer.send(topic, orjson.dumps(record), user.encode())
