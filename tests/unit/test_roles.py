"""Scorer and learner halves in memory: what crosses the learn topic, exactly once, versions."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml

from streamlearn.app import App
from streamlearn.batch import RawBatch
from streamlearn.config import PipelineConfig, load_config, parse_config
from streamlearn.errors import ConfigError, ServiceUnavailable
from streamlearn.roles.examples import MAX_ROWS, BadExamples, SeenOffsets, decode, encode
from streamlearn.roles.publication import MemoryBoard, ModelFollower, ModelPublisher, ModelRefused
from streamlearn.roles.tasks import LearnerTask, ScorerTask
from streamlearn.tasks import build_task
from streamlearn.tasks.classification import ClassificationTask
from streamlearn.workloads import task_events

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "transactions"


@functools.cache
def fraud_config() -> PipelineConfig:
    return load_config(ROOT / "examples/fraud/config.yaml", env={}).pipelines[0]


def batches(n: int, size: int, partitions: int = 2, seed: int = 1) -> list[RawBatch]:
    """The fraud stream (label inline) as raw batches, offsets per partition."""
    events = list(task_events("fraud", seed=seed, drift_at=n // 2)(n))
    next_offset = [0] * partitions
    out = []
    for start in range(0, n, size):
        raw = RawBatch()
        for i, e in enumerate(events[start : start + size]):
            p = (start + i) % partitions
            raw.append(TOPIC, p, next_offset[p], None, orjson.dumps(e), int(e["ts"]), 0.0)
            next_offset[p] += 1
        out.append(raw)
    return out


def learn_topic(messages: list[bytes], offset: int = 0) -> RawBatch:
    raw = RawBatch()
    for i, m in enumerate(messages):
        raw.append("learn", 0, offset + i, None, m, 0, 0.0)
    return raw


class Split:
    """One scorer and one learner meeting through an in-memory board, publishing every batch."""

    def __init__(self, key: bytes | None = None) -> None:
        self.board = MemoryBoard()
        self.now = [1000.0]
        clock = lambda: self.now[0]  # noqa: E731
        self.learner = LearnerTask(
            ClassificationTask(fraud_config()), ModelPublisher(self.board, 0.0, key, clock=clock)
        )
        self.follower = ModelFollower(self.board, 0.0, key, clock=clock)
        self.staleness: list[float] = []
        self.scorer = ScorerTask(
            ClassificationTask(fraud_config()), self.follower, self.staleness.append
        )
        self.sent = 0

    def step(self, raw: RawBatch) -> tuple[np.ndarray, list[bytes]]:
        scored = self.scorer.score(raw)
        messages = self.scorer.examples_messages(scored)
        self.feed(messages)
        return scored.scores, messages

    def feed(self, messages: list[bytes]) -> int:
        batch = self.learner.score(learn_topic(messages, self.sent))
        self.sent += len(messages)
        self.now[0] += 0.01
        return self.learner.learn(batch).learned


def test_the_split_serves_exactly_what_one_process_serves_when_it_publishes_every_batch() -> None:
    single = ClassificationTask(fraud_config())
    split = Split()
    split.learner.publish(force=True)
    single_scores, split_scores = [], []
    for raw in batches(3000, 200):
        scored = single.score(raw)
        single_scores.append(scored.scores)
        single.learn(scored)
        split_scores.append(split.step(raw)[0])
    assert np.array_equal(np.concatenate(single_scores), np.concatenate(split_scores))
    assert split.learner.scores() == pytest.approx(single.scores())
    assert split.learner.model_version == single.model_version


def test_examples_sent_again_are_not_learned_again() -> None:
    split = Split()
    split.learner.publish(force=True)
    raws = batches(1200, 300)
    sent = [split.step(raw)[1] for raw in raws[:2]]
    learned_before = split.learner.task.model_version
    # A scorer crashed before committing: it reads both batches again and sends them again.
    assert split.feed(sent[0] + sent[1]) == 0
    assert split.learner.skipped == 600
    assert split.learner.task.model_version == learned_before
    # The rest of the stream is learned, once.
    assert (
        sum(split.feed(split.scorer.examples_messages(split.scorer.score(r))) for r in raws[2:])
        == 600
    )


def test_a_learner_restored_from_its_checkpoint_skips_what_it_covers() -> None:
    split = Split()
    split.learner.publish(force=True)
    raws = batches(900, 300)
    sent = [split.step(raw)[1] for raw in raws]
    state = pickle.loads(pickle.dumps(split.learner.snapshot()))
    standby = LearnerTask(ClassificationTask(fraud_config()), ModelPublisher(MemoryBoard(), 0.0))
    standby.load_snapshot(state)
    # The learn topic is read again from an older offset: what the checkpoint covers is skipped.
    batch = standby.score(learn_topic([m for part in sent for m in part]))
    assert standby.learn(batch).learned == 0
    assert standby.seen.next == split.learner.seen.next


def test_the_scorer_adopts_a_new_version_between_batches_and_stamps_it() -> None:
    split = Split()
    split.learner.publish(force=True)
    raws = batches(600, 200)
    first = split.scorer.score(raws[0])
    assert first.model_version == 0
    split.feed(split.scorer.examples_messages(first))  # the learner learns and publishes
    published = split.board.latest()
    assert published is not None and published.version > 0
    second = split.scorer.score(raws[1])
    assert second.model_version == published.version
    assert split.staleness and all(s >= 0 for s in split.staleness)


def test_a_scorer_serves_nothing_before_the_learner_publishes() -> None:
    split = Split()
    with pytest.raises(ServiceUnavailable, match="no model published yet"):
        split.scorer.score(batches(10, 10)[0])


def test_with_a_key_an_unsigned_or_altered_model_is_refused() -> None:
    board = MemoryBoard()
    ModelPublisher(board, 0.0, key=None).publish({"w": 1}, version=1)
    with pytest.raises(ModelRefused, match="not signed"):
        ModelFollower(board, 0.0, key=b"k").newer(serving=0)
    ModelPublisher(board, 0.0, key=b"other").publish({"w": 2}, version=2)
    with pytest.raises(ModelRefused, match="signature does not match"):
        ModelFollower(board, 0.0, key=b"k").newer(serving=0)
    ModelPublisher(board, 0.0, key=b"k").publish({"w": 3}, version=3)
    assert ModelFollower(board, 0.0, key=b"k").newer(serving=0) == {"w": 3}


def test_publication_keeps_the_last_versions_and_confirms_an_unchanged_model() -> None:
    board, now = MemoryBoard(), [0.0]
    publisher = ModelPublisher(board, 1.0, keep=2, clock=lambda: now[0])
    for version in range(5):
        now[0] += 1.0
        assert publisher.publish({"v": version}, version)
    assert sorted(board.models) == [3, 4]
    now[0] += 0.5
    assert not publisher.publish({"v": 4}, 4)  # within the interval
    now[0] += 0.5
    assert publisher.publish({"v": 4}, 4)
    latest = board.latest()
    assert latest is not None and latest.version == 4 and latest.fresh_at == now[0]
    assert latest.published_at == now[0] - 1.0


def test_large_batches_travel_in_several_messages_with_counts_once() -> None:
    split = Split()
    split.learner.publish(force=True)
    scored = split.scorer.score(batches(2 * MAX_ROWS + 10, 2 * MAX_ROWS + 10)[0])
    examples = split.scorer.task.examples(scored)
    examples.unmatched = {"duplicate": 2}
    messages = encode(examples)
    assert len(messages) == 3
    decoded = [decode(m) for m in messages]
    assert sum(len(d) for d in decoded) == len(examples)
    assert [d.unmatched for d in decoded] == [{"duplicate": 2}, {}, {}]
    assert decoded[0].decoded.numeric.keys() == examples.decoded.numeric.keys()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"{not json", "malformed"),
        (b'{"format": 99}', "not an examples message"),
        (b'{"format": 1, "event_ids": ["a"]}', "malformed"),
        (
            b'{"format": 1, "model_version": 0, "event_ids": ["a", "b"], "entity_ids": ["e"],'
            b' "ts": [1], "numeric": {}, "categorical": {}, "targets": [1], "served": [0.5],'
            b' "topics": ["t"], "partitions": [0], "offsets": [0]}',
            "different lengths",
        ),
    ],
)
def test_a_message_that_is_not_examples_is_rejected_with_a_reason(value: bytes, why: str) -> None:
    with pytest.raises(BadExamples, match=why):
        decode(value)
    split = Split()
    batch = split.learner.score(learn_topic([value]))
    assert [r.reason for r in batch.rejected] == ["bad_examples"]
    assert split.learner.learn(batch).learned == 0


def test_seen_offsets_are_per_partition() -> None:
    split = Split()
    split.learner.publish(force=True)
    scored = split.scorer.score(batches(100, 100, partitions=2)[0])
    examples = split.scorer.task.examples(scored)
    seen = SeenOffsets({f"{TOPIC}/0": 25})
    new = seen.new(examples)
    partitions, offsets = examples.partitions, examples.offsets
    assert new.tolist() == ((partitions == 1) | (offsets >= 25)).tolist()


def test_only_classification_pipelines_can_be_split() -> None:
    config = yaml.safe_load((ROOT / "examples/recommendation/config.yaml").read_text())
    app = App(parse_config(config, env={}), role="scorer")
    pipeline = app.config.pipelines[0]
    with pytest.raises(ConfigError, match="--role scorer is built for classification"):
        app._role_runner(pipeline, build_task(pipeline), None, None)  # type: ignore[arg-type]


def test_delayed_label_joins_made_by_scorers_are_learned_by_the_learner_as_one_process_would() -> (
    None
):
    from streamlearn.labels import MemoryLabelStore
    from tests.unit.test_watermark import delayed_task, event

    def stream() -> list[RawBatch]:
        # Ten events and their labels, half the labels before their event, half after.
        out = []
        for b in range(4):
            raw = RawBatch()
            for i in range(10):
                n = b * 10 + i
                ts = n * 1000
                label = orjson.dumps({"event_id": f"e{n}", "churned": n % 3 == 0})
                if n % 2:
                    raw.append("labels", 0, 2 * n, None, label, ts, 0.0)
                    raw.append("activity", n % 2, n, None, event(f"e{n}", ts), ts, 0.0)
                else:
                    raw.append("activity", n % 2, n, None, event(f"e{n}", ts), ts, 0.0)
                    if n >= 10:  # labels of the first batch's even events come a batch later
                        prior = orjson.dumps({"event_id": f"e{n - 10}", "churned": n % 3 == 1})
                        raw.append("labels", 0, 2 * n + 1, None, prior, ts, 0.0)
            out.append(raw)
        return out

    single, single_store = delayed_task(), MemoryLabelStore(horizon_s=3600)
    learned_single = 0
    for raw in stream():
        scored = single.score(raw)
        scored.exchange = single_store.exchange(scored.pending, scored.arrived, scored.watermark_ms)
        learned_single += single.learn(scored).learned

    board = MemoryBoard()
    learner = LearnerTask(delayed_task(), ModelPublisher(board, 0.0))
    learner.publish(force=True)
    scorer = ScorerTask(delayed_task(), ModelFollower(board, 0.0))
    store, learned_split, sent = MemoryLabelStore(horizon_s=3600), 0, 0
    for raw in stream():
        scored = scorer.score(raw)
        scored.exchange = store.exchange(scored.pending, scored.arrived, scored.watermark_ms)
        messages = scorer.examples_messages(scored)
        learned_split += learner.learn(learner.score(learn_topic(messages, sent))).learned
        sent += len(messages)
    assert learned_single > 20
    assert learned_split == learned_single
    assert learner.scores() == pytest.approx(single.scores())
