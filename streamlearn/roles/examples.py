"""What a scorer sends its learner: the examples of one batch, as one compact message.

An :class:`Examples` holds the rows to learn as they were scored (their decoded columns,
aggregates included), their labels, the scores served and the model version that served
them, and for each row the message it came from (``topic/partition/offset`` of the event, or
of the label that completed a delayed-label join). The learner learns a row only if its
source lies past what it has learned from that partition (:class:`SeenOffsets`, kept in its
checkpoint), so a scorer that replays a batch after a crash or a rebalance, and sends its
examples again, teaches nothing twice.

Messages are JSON (orjson), not pickle: the learn topic is data, never code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from streamlearn.decoding import DecodedBatch
from streamlearn.errors import StreamlearnError
from streamlearn.features import FeatureBatch

FORMAT = 1
MAX_ROWS = 1000  # rows per message: a few hundred kB, well under the broker's 1 MB default


class BadExamples(StreamlearnError):
    """A learn-topic message that is not a streamlearn examples message."""


@dataclass(slots=True)
class Examples:
    """Rows to learn, as scored, with where each came from.

    Examples
    --------
    >>> ex = Examples.of_rows(
    ...     event_ids=["a", "b"], entity_ids=["e1", "e2"], timestamps_ms=[5, 6],
    ...     numeric={"x": [1.0, 2.0]}, categorical={"c": ["u", "v"]},
    ...     targets=[0.0, 1.0], served=[0.2, 0.9],
    ...     topics=["tx", "tx"], partitions=[0, 1], offsets=[10, 11], model_version=3)
    >>> back = decode(encode(ex)[0])
    >>> back.decoded.event_ids, back.targets.tolist(), back.offsets.tolist(), back.model_version
    (['a', 'b'], [0.0, 1.0], [10, 11], 3)
    """

    decoded: DecodedBatch
    targets: np.ndarray
    served: np.ndarray
    topics: list[str]
    partitions: np.ndarray
    offsets: np.ndarray
    model_version: int = 0
    unmatched: dict[str, int] = field(default_factory=dict)
    label_delays_s: np.ndarray | None = None
    features: FeatureBatch | None = None  # computed when scored (one process); never sent

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def of_rows(
        cls,
        *,
        event_ids: list[str],
        entity_ids: list[str],
        timestamps_ms: list[int],
        numeric: dict[str, list[float]],
        categorical: dict[str, list[str]],
        targets: list[float],
        served: list[float],
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
        model_version: int = 0,
    ) -> Examples:
        """Examples from plain lists (what a decoded message holds)."""
        n = len(event_ids)
        decoded = DecodedBatch(
            index=np.arange(n),
            event_ids=list(event_ids),
            entity_ids=list(entity_ids),
            timestamps_ms=np.asarray(timestamps_ms, dtype=np.int64),
            numeric={k: np.asarray(v, dtype=np.float64) for k, v in numeric.items()},
            categorical={k: list(v) for k, v in categorical.items()},
            targets=np.asarray(targets, dtype=np.float64),
            rejected=[],
        )
        return cls(
            decoded=decoded,
            targets=decoded.targets,
            served=np.asarray(served, dtype=np.float64),
            topics=list(topics),
            partitions=np.asarray(partitions, dtype=np.int64),
            offsets=np.asarray(offsets, dtype=np.int64),
            model_version=model_version,
        )

    def take(self, rows: np.ndarray) -> Examples:
        """Only ``rows`` (a boolean mask or positions); counts and delays stay with the whole."""
        picked = np.arange(len(self))[rows].tolist()
        decoded = self.decoded.take(picked)
        decoded.index = np.arange(len(picked))
        decoded.targets, decoded.rejected = self.targets[picked], []
        return Examples(
            decoded=decoded,
            targets=decoded.targets,
            served=self.served[picked],
            topics=[self.topics[i] for i in picked],
            partitions=self.partitions[picked],
            offsets=self.offsets[picked],
            model_version=self.model_version,
            unmatched=dict(self.unmatched),
            label_delays_s=self.label_delays_s,
        )


def encode(examples: Examples, max_rows: int = MAX_ROWS) -> list[bytes]:
    """The examples as learn-topic messages of at most ``max_rows`` rows each.

    Counts of unmatched labels and label delays travel with the first message only, so the
    learner reports each once. An empty batch with counts still yields one message.
    """
    out: list[bytes] = []
    n = len(examples)
    if n == 0 and not examples.unmatched and examples.label_delays_s is None:
        return out
    for start in range(0, max(n, 1), max_rows):
        part = examples.take(np.arange(start, min(n, start + max_rows)))
        d = part.decoded
        message: dict[str, Any] = {
            "format": FORMAT,
            "model_version": part.model_version,
            "event_ids": d.event_ids,
            "entity_ids": d.entity_ids,
            "ts": d.timestamps_ms,
            "numeric": d.numeric,
            "categorical": d.categorical,
            "targets": part.targets,
            "served": part.served,
            "topics": part.topics,
            "partitions": part.partitions,
            "offsets": part.offsets,
        }
        if start == 0:
            message["unmatched"] = examples.unmatched
            if examples.label_delays_s is not None:
                message["label_delays_s"] = examples.label_delays_s
        out.append(orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY))
    return out


def decode(value: bytes | None) -> Examples:
    """Parse one learn-topic message; raise :class:`BadExamples` if it is not one."""
    try:
        m = orjson.loads(value or b"")
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BadExamples(f"not an examples message of format {FORMAT}")
        examples = Examples.of_rows(
            event_ids=m["event_ids"],
            entity_ids=m["entity_ids"],
            timestamps_ms=m["ts"],
            numeric=m["numeric"],
            categorical=m["categorical"],
            targets=m["targets"],
            served=m["served"],
            topics=m["topics"],
            partitions=m["partitions"],
            offsets=m["offsets"],
            model_version=int(m["model_version"]),
        )
        examples.unmatched = {str(k): int(v) for k, v in m.get("unmatched", {}).items()}
        delays = m.get("label_delays_s")
        examples.label_delays_s = None if delays is None else np.asarray(delays, dtype=float)
    except BadExamples:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BadExamples(f"malformed examples message ({type(exc).__name__}: {exc})") from None
    d = examples.decoded
    columns = [examples.served, examples.partitions, examples.offsets, d.timestamps_ms]
    columns += [*d.numeric.values(), *(np.empty(len(v)) for v in d.categorical.values())]
    lengths = {len(c) for c in columns} | {len(examples), len(examples.topics), len(d.entity_ids)}
    if len(lengths) > 1 or len(d) != len(examples):
        raise BadExamples("its columns have different lengths")
    return examples


def concat(parts: list[Examples]) -> Examples:
    """One :class:`Examples` of several, in order; counts are summed, delays joined."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0].decoded
    decoded = DecodedBatch(
        index=np.arange(sum(len(p) for p in parts)),
        event_ids=[e for p in parts for e in p.decoded.event_ids],
        entity_ids=[e for p in parts for e in p.decoded.entity_ids],
        timestamps_ms=np.concatenate([p.decoded.timestamps_ms for p in parts]),
        numeric={k: np.concatenate([p.decoded.numeric[k] for p in parts]) for k in first.numeric},
        categorical={
            k: [v for p in parts for v in p.decoded.categorical[k]] for k in first.categorical
        },
        targets=np.concatenate([p.targets for p in parts]),
        rejected=[],
    )
    unmatched: dict[str, int] = {}
    for p in parts:
        for reason, count in p.unmatched.items():
            unmatched[reason] = unmatched.get(reason, 0) + count
    delays = [p.label_delays_s for p in parts if p.label_delays_s is not None]
    return Examples(
        decoded=decoded,
        targets=decoded.targets,
        served=np.concatenate([p.served for p in parts]),
        topics=[t for p in parts for t in p.topics],
        partitions=np.concatenate([p.partitions for p in parts]),
        offsets=np.concatenate([p.offsets for p in parts]),
        model_version=max(p.model_version for p in parts),
        unmatched=unmatched,
        label_delays_s=np.concatenate(delays) if delays else None,
    )


class SeenOffsets:
    """Per source partition, the next offset not yet learned: what makes learning exactly once.

    Examples
    --------
    >>> seen = SeenOffsets()
    >>> ex = Examples.of_rows(event_ids=["a", "b"], entity_ids=["e", "e"], timestamps_ms=[1, 2],
    ...     numeric={}, categorical={}, targets=[0, 1], served=[.1, .9],
    ...     topics=["tx", "tx"], partitions=[0, 0], offsets=[4, 5])
    >>> seen.new(ex).tolist()
    [True, True]
    >>> seen.learned(ex.take(seen.new(ex)))
    >>> seen.new(ex).tolist(), seen.next
    ([False, False], {'tx/0': 6})
    """

    def __init__(self, next_offsets: dict[str, int] | None = None) -> None:
        self.next: dict[str, int] = dict(next_offsets or {})

    def new(self, examples: Examples) -> np.ndarray:
        """Which rows lie past what was learned from their partition."""
        keys = [f"{t}/{p}" for t, p in zip(examples.topics, examples.partitions.tolist())]
        floor = np.fromiter((self.next.get(k, 0) for k in keys), np.int64, count=len(keys))
        return np.asarray(examples.offsets >= floor, dtype=bool)

    def learned(self, examples: Examples) -> None:
        """These rows were learned: move each partition's mark past them."""
        offsets = examples.offsets.tolist()
        for t, p, o in zip(examples.topics, examples.partitions.tolist(), offsets):
            key = f"{t}/{p}"
            if o + 1 > self.next.get(key, 0):
                self.next[key] = o + 1
