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
