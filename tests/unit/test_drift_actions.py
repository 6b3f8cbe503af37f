"""What the model does on drift: keep learning, start afresh, or race a challenger."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest

from streamlearn.batch import RawBatch
from streamlearn.challenger import Challenger
from streamlearn.config import PipelineConfig
from streamlearn.generators.fraud import FIELD_TYPES, FraudGenerator
from streamlearn.tasks.classification import ClassificationTask


class FireAt:
    """A drift detector that fires on the given batch numbers only."""

    def __init__(self, *batches: int) -> None:
        self.batches = set(batches)
        self.calls = 0

    def update(self, scores: np.ndarray, labels: np.ndarray) -> bool:
        self.calls += 1
        return self.calls in self.batches


def pipeline(
    action: str, challenger_events: int = 1000, warmup: int = 0, drift_batch: int = 5
) -> ClassificationTask:
    config = PipelineConfig.model_validate(
        {
            "name": "fraud",
            "source": {"topic": "t"},
            "schema": {"target": "is_fraud", "features": FIELD_TYPES},
            "model": {
                "estimator": "sklearn.linear_model.SGDClassifier",
                "params": {"loss": "log_loss", "alpha": 0.001, "random_state": 0},
            },
            "drift": {
                "action": action,
                "challenger_events": challenger_events,
                "challenger_warmup": warmup,
            },
        }
    )
    return ClassificationTask(config, drift=FireAt(drift_batch), clock_ms=lambda: 0)  # type: ignore[arg-type]


def batches(n_batches: int, size: int = 200, drift_at: int | None = None):
    events = FraudGenerator(seed=9, drift_at=drift_at).events(n_batches * size)
    for b in range(n_batches):
        raw = RawBatch()
        for i in range(size):
            raw.append("t", 0, b * size + i, None, orjson.dumps(next(events)), 0, 0.0)
        yield raw


def run(p: ClassificationTask, n_batches: int, drift_at: int | None = None) -> list[int]:
    versions = []
    for raw in batches(n_batches, drift_at=drift_at):
        scored = p.score(raw)
        versions.append(scored.model_version)
        p.learn(scored)
    return versions


def test_keep_learns_on_with_the_same_model() -> None:
    p = pipeline("keep")
    first = p.model
    run(p, 10)
    assert p.model is first and p.challenger is None and p.model.version == 10


def test_reset_replaces_the_model_with_a_fresh_one_and_versions_keep_rising() -> None:
    p = pipeline("reset")
    first = p.model
    versions = run(p, 10)
    assert p.model is not first
    # Batch 5 (scored by version 4) drifted: after learning it, the model (version 5) is
    # replaced by a fresh one numbered 6, so version 5 never serves; versions never repeat.
    assert versions == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_challenger_that_scores_better_after_drift_replaces_the_model() -> None:
    # A model trained long on the old fraud pattern (its SGD step size has decayed), then an
    # abrupt change right at the detection: the fresh challenger learns the new pattern faster.
    p = pipeline("challenger", challenger_events=3000, warmup=1000, drift_batch=100)
    before = run(p, 100)
    served = p.model
    assert p.challenger is not None
    race = p.challenger
    run_after_drift = batches(40, drift_at=0)
    for raw in run_after_drift:
        p.learn(p.score(raw))
        if p.challenger is None:
            break
    assert race.decided
    assert race.wins == (p.model is race.model)
    assert race.candidate.auc() > race.serving.auc() and p.model is race.model
    assert p.model.version > served.version >= before[-1]


def test_a_challenger_that_ranks_worse_loses() -> None:
    race = Challenger(model=None, events=3)  # type: ignore[arg-type]
    truth = np.array([True, False, False])
    race.observe(np.array([0.9, 0.1, 0.1]), np.array([0.4, 0.6, 0.5]), truth)
    assert race.decided and not race.wins


def test_warm_up_events_are_not_compared() -> None:
    race = Challenger(model=None, events=2, warmup=3)  # type: ignore[arg-type]
    race.observe(np.full(4, 0.5), np.full(4, 0.5), np.array([True, False, True, False]))
    assert race.serving.count == 1 and not race.decided


@pytest.mark.parametrize("action", ["keep", "reset", "challenger"])
def test_the_served_version_never_goes_back(action: str) -> None:
    p = pipeline(action, challenger_events=600)
    versions = run(p, 20)
    assert all(a <= b for a, b in itertools.pairwise(versions))
