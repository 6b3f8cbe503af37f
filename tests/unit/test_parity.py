"""The engine at batch size 1 is river's own progressive evaluation, event for event."""

import itertools

import orjson
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from streamlearn.batch import RawBatch
from streamlearn.config import PipelineConfig
from streamlearn.tasks.classification import ClassificationTask


def phishing_events(dataset):
    for i, (x, y) in enumerate(dataset):
        yield {
            "event_id": f"e{i}",
            "entity_id": f"site-{i % 50}",
            "ts": i,
            **x,
            "is_phishing": int(y),
        }


def engine_accuracy(dataset, batch_size: int) -> float:
    first, _ = next(iter(dataset))
    config = PipelineConfig.model_validate(
        {
            "name": "phishing",
            "source": {"topic": "sites"},
            "schema": {"target": "is_phishing", "features": dict.fromkeys(first, "float")},
            "model": {"estimator": "river.linear_model.LogisticRegression", "scale": True},
            "batching": {"min_size": batch_size, "max_size": batch_size},
            "drift": {"detector": "none"},
        }
    )
    pipeline = ClassificationTask(config)
    accuracy = metrics.Accuracy()
    events = phishing_events(dataset)
    offset = 0
    while chunk := list(itertools.islice(events, batch_size)):
        raw = RawBatch()
        for event in chunk:
            raw.append("sites", 0, offset, None, orjson.dumps(event), 0, 0.0)
            offset += 1
        scored = pipeline.score(raw)
        for truth, label in zip(scored.decoded.targets, scored.labels):
            accuracy.update(bool(truth), bool(label))
        pipeline.learn(scored)
    return accuracy.get()


def river_accuracy(dataset) -> float:
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    return evaluate.progressive_val_score(dataset, model, metrics.Accuracy()).get()


def test_batch_of_one_matches_progressive_val_score_exactly():
    dataset = datasets.Phishing()
    expected = river_accuracy(dataset)
    assert engine_accuracy(dataset, batch_size=1) == expected
    assert 0.85 < expected < 0.95  # the known level for this model on Phishing


@pytest.mark.parametrize("batch_size", [8, 32])
def test_mini_batches_cost_little_accuracy(batch_size):
    dataset = datasets.Phishing()
    expected = river_accuracy(dataset)
    assert engine_accuracy(dataset, batch_size) == pytest.approx(expected, abs=0.02)


# --- delayed labels -------------------------------------------------------------------------


def qa_messages(dataset, delay: int):
    """Events and their labels in the order of river's ``stream.simulate_qa``: the label of
    event j comes just before event j + delay, the rest after the last event."""
    waiting: list[tuple[int, int, int]] = []  # (event index, label, expiry)
    for i, event in enumerate(phishing_events(dataset)):
        while waiting and waiting[0][2] <= i:
            j, y, expiry = waiting.pop(0)
            yield "labels", {"event_id": f"e{j}", "is_phishing": y}, expiry
        label = event.pop("is_phishing")
        waiting.append((i, label, i + delay))
        yield "sites", event, i
    for j, y, expiry in waiting:
        yield "labels", {"event_id": f"e{j}", "is_phishing": y}, expiry


def engine_delayed_accuracy(dataset, delay: int, batch_size: int = 1) -> float:
    from streamlearn.labels import MemoryLabelStore

    first, _ = next(iter(dataset))
    config = PipelineConfig.model_validate(
        {
            "name": "phishing",
            "source": {"topic": "sites"},
            "schema": {"features": dict.fromkeys(first, "float")},
            "model": {"estimator": "river.linear_model.LogisticRegression", "scale": True},
            "drift": {"detector": "none"},
            "labels": {
                "topic": "labels",
                "id": "event_id",
                "target": "is_phishing",
                "horizon_s": 10**6,
            },
        }
    )
    task, store = ClassificationTask(config), MemoryLabelStore(horizon_s=10**6)
    accuracy = metrics.Accuracy()
    messages = qa_messages(dataset, delay)
    offsets = {"sites": 0, "labels": 0}
    while chunk := list(itertools.islice(messages, batch_size)):
        raw = RawBatch()
        for topic, value, ts in chunk:
            raw.append(topic, 0, offsets[topic], None, orjson.dumps(value), ts, 0.0)
            offsets[topic] += 1
        scored = task.score(raw)
        scored.exchange = store.exchange(scored.pending, scored.arrived, scored.watermark_ms)
        for join in scored.exchange.joins:  # the prediction actually served, scored late
            accuracy.update(bool(join.target), orjson.loads(join.payload)["s"] > 0.5)
        task.learn(scored)
    return accuracy.get()


@pytest.mark.parametrize("delay", [1, 25, 200])
def test_batch_of_one_with_delayed_labels_matches_river_exactly(delay: int) -> None:
    dataset = datasets.Phishing()
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    expected = evaluate.progressive_val_score(dataset, model, metrics.Accuracy(), delay=delay)
    assert engine_delayed_accuracy(dataset, delay) == expected.get()


@pytest.mark.parametrize(("delay", "batch_size"), [(25, 8), (25, 32), (200, 32)])
def test_mini_batches_with_delayed_labels_stay_within_a_point_of_river(
    delay: int, batch_size: int
) -> None:
    dataset = datasets.Phishing()
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    expected = evaluate.progressive_val_score(dataset, model, metrics.Accuracy(), delay=delay)
    engine = engine_delayed_accuracy(dataset, delay, batch_size)
    assert engine == pytest.approx(expected.get(), abs=0.01)
