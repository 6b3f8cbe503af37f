"""A classification batch with labels on their own topic: split it, keep what waits, learn joins.

The events of a batch are scored as usual; each is kept (its message and the score served)
until its label comes. The label messages of the batch are decoded. After the label store has
joined what it can, :meth:`DelayedLabels.learnable` rebuilds the joined events' features from
their messages exactly as they were scored, with the served scores for the prequential metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from streamlearn.batch import RawBatch
from streamlearn.config_labels import LabelsConfig
from streamlearn.decoding import DecodedBatch, EventDecoder
from streamlearn.labels import ArrivedLabels, Join, LabelDecoder, PendingEvents, pending_payload
from streamlearn.rejections import Rejection


def source_of(raw: RawBatch, i: int) -> str:
    """Where message ``i`` of a batch came from: ``topic/partition/offset``."""
    return f"{raw.topics[i]}/{raw.partitions[i]}/{raw.offsets[i]}"


class DelayedLabels:
    """The delayed-label half of a classification task.

    Examples
    --------
    >>> from streamlearn.config import SchemaConfig
    >>> from streamlearn.config_labels import LabelsConfig
    >>> schema = SchemaConfig(features={"x": "float"})
    >>> split = DelayedLabels(LabelsConfig(topic="labels", id="event_id", target="y",
    ...                                    horizon_s=60), EventDecoder(schema))
    >>> raw = RawBatch()
    >>> raw.append("labels", 0, 7, None, b'{"event_id": "a", "y": 1}', 9, received=0.0)
    >>> raw.append("events", 0, 3, None, b'{"event_id": "a", "entity_id": "e", "ts": 5, "x": 1}',
    ...            5, received=0.0)
    >>> decoded, labels, rejected = split.decode(raw)
    >>> decoded.index.tolist(), labels.event_ids, labels.sources, rejected
    ([1], ['a'], ['labels/0/7'], [])
    """

    def __init__(self, config: LabelsConfig, decoder: EventDecoder) -> None:
        self.topic = config.topic
        self.labels = LabelDecoder(config)
        self.events = decoder

    def decode(self, raw: RawBatch) -> tuple[DecodedBatch, ArrivedLabels, list[Rejection]]:
        """Decode the batch's events and its label messages; indices refer to ``raw``."""
        is_label = np.fromiter((t == self.topic for t in raw.topics), bool, count=len(raw))
        event_rows = np.flatnonzero(~is_label)
        label_rows = np.flatnonzero(is_label).tolist()
        decoded = self.events.decode([raw.values[i] for i in event_rows.tolist()])
        decoded.index = event_rows[decoded.index]
        decoded.rejected = [
            Rejection(int(event_rows[r.index]), r.reason, r.detail) for r in decoded.rejected
        ]
        labels, bad_labels = self.labels.decode(
            [raw.values[i] for i in label_rows],
            rows=label_rows,
            ts_ms=[raw.timestamps_ms[i] for i in label_rows],
            sources=[source_of(raw, i) for i in label_rows],
        )
        return decoded, labels, bad_labels

    @staticmethod
    def pending(
        raw: RawBatch, decoded: DecodedBatch, scores: np.ndarray, computed: list[str]
    ) -> PendingEvents:
        """What to keep of each scored event until its label comes.

        ``computed`` names columns of ``decoded.numeric`` computed from state (aggregates):
        their values at scoring time are kept too, since they cannot be recomputed later.
        """
        rows = decoded.index.tolist()
        ts = decoded.timestamps_ms.tolist()
        served = scores.tolist()
        columns = {name: decoded.numeric[name].tolist() for name in computed}
        extra: list[dict[str, object]] = [
            {"a": {name: col[j] for name, col in columns.items()}} if columns else {}
            for j in range(len(rows))
        ]
        return PendingEvents(
            event_ids=list(decoded.event_ids),
            sources=[source_of(raw, i) for i in rows],
            ts_ms=ts,
            payloads=[
                pending_payload(raw.values[i] or b"", s, t, e)
                for i, s, t, e in zip(rows, served, ts, extra)
            ],
        )

    def learnable(
        self, joins: list[Join], allowed: set[str] | None
    ) -> tuple[DecodedBatch, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """The joined events as scored, their labels, the scores served, and what was kept.

        Each kept payload names its event (``e``) and the source of its joiner (``j``).

        ``allowed`` (sources of messages that may be learned now) leaves out joins whose joiner
        is not to be learned in this batch; ``None`` allows all.
        """
        kept = [j for j in joins if allowed is None or j.joiner in allowed]
        kept_payloads = [{**orjson.loads(j.payload), "e": j.event_id, "j": j.joiner} for j in kept]
        decoded = self.events.decode([p["v"].encode() for p in kept_payloads])
        good = decoded.index.tolist()  # a stored message always decodes; keep the guard
        targets = np.array([kept[i].target for i in good], dtype=np.float64)
        served = np.array([kept_payloads[i]["s"] for i in good], dtype=np.float64)
        decoded.targets = targets
        return decoded, targets, served, [kept_payloads[i] for i in good]
