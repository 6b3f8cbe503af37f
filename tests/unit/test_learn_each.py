"""Batches of one in one pass give exactly what one batch per event gives, for less.

At ``min_size == max_size == 1`` the runner hands the events a poll brought to
``ClassificationTask.score_and_learn_each``: each is scored, then learned, before the next.
Its scores, versions, reasons, drift detections and final model must be those of batches of
one, whatever the grouping.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from streamlearn.batch import RawBatch
from streamlearn.config import PipelineConfig
from streamlearn.tasks.classification import ClassificationTask
from streamlearn.workloads import task_events
from tests.unit.test_runner import fraud_config, fraud_values, rig


def drifting_config(action: str) -> PipelineConfig:
    """The fraud example with a detector that fires often, and ``action`` taken on it."""
    data = fraud_config().model_dump(by_alias=True)
    data["drift"] = {
        "detector": "page_hinkley",
        "params": {"threshold": 0.5, "min_instances": 10},
        "grace_events": 0,
        "action": action,
        "challenger_events": 50,
    }
    return PipelineConfig.model_validate(data)


def raw_batch(values: list[bytes], start: int) -> RawBatch:
    raw = RawBatch()
    for offset, value in enumerate(values, start):
        raw.append("transactions", 0, offset, None, value, 1_000, received=0.0)
    return raw


def one_by_one(config: PipelineConfig, values: list[bytes]) -> dict[str, list]:
    task = ClassificationTask(config, clock_ms=lambda: 0)
    out: dict[str, list] = {"scores": [], "versions": [], "reasons": [], "drifts": []}
    for offset, value in enumerate(values):
        scored = task.score(raw_batch([value], offset))
        outcome = task.learn(scored)
        out["scores"] += scored.scores.tolist()
        out["versions"] += [scored.model_version] * len(scored.scores)
        out["reasons"] += scored.reasons or []
        out["drifts"].append(outcome.drift)
    out["model"] = [task.model.version, task.evaluator.scores()]
    out["coef"] = [np.asarray(task.model.estimator.coef_).tolist()]  # type: ignore[attr-defined]
    return out


def in_groups(config: PipelineConfig, values: list[bytes], seed: int) -> dict[str, list]:
    task = ClassificationTask(config, clock_ms=lambda: 0)
    assert task.learns_each
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"scores": [], "versions": [], "reasons": [], "drifts": []}
    start = 0
    while start < len(values):
        size = int(rng.integers(1, 65))
        group = values[start : start + size]
        scored, outcome = task.score_and_learn_each(raw_batch(group, start))
        out["scores"] += scored.scores.tolist()
        assert scored.model_versions is not None
        out["versions"] += scored.model_versions.tolist()
        out["reasons"] += scored.reasons or []
        out["drifts"].append(outcome.drift)
        start += size
    out["model"] = [task.model.version, task.evaluator.scores()]
    out["coef"] = [np.asarray(task.model.estimator.coef_).tolist()]  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("action", ["reset", "challenger"])
def test_groups_score_and_learn_exactly_as_batches_of_one(action: str) -> None:
    values = [orjson.dumps(e) for e in task_events("fraud", seed=3, drift_at=600)(1_200)]
    config = drifting_config(action)
    single, grouped = one_by_one(config, values), in_groups(config, values, seed=1)
    assert any(single["drifts"]), "the detector never fired: the test would not cover it"
    assert grouped["scores"] == single["scores"]  # bit for bit
    assert grouped["versions"] == single["versions"]
    assert grouped["reasons"] == single["reasons"] and len(single["reasons"]) == len(values)
    assert grouped["model"] == single["model"]
    assert grouped["coef"] == single["coef"]
    assert any(grouped["drifts"])


def test_delayed_labels_are_not_learned_each() -> None:
    data = fraud_config().model_dump(by_alias=True)
    data["schema"].pop("target")
    data["labels"] = {"topic": "labels", "id": "event_id", "target": "is_fraud", "horizon_s": 60}
    assert not ClassificationTask(PipelineConfig.model_validate(data)).learns_each


def test_the_runner_learns_each_event_and_commits_once_per_poll() -> None:
    values = list(fraud_values(200))
    r = rig(list(values), size=1)
    stats = r.run()
    assert (stats.predicted, stats.learned, stats.batches) == (200, 200, 200)
    assert set(r.batch_sizes()) == {1}
    writes = [entry for entry in r.log if entry[0] == "write"]
    assert len(writes) < 200 / 10  # a few polls' worth each, not one write per event
    versions = np.concatenate([s.model_versions for s in r.outputs.written])  # type: ignore[misc]
    assert versions.tolist() == list(range(200))  # each event scored by the model before it
    assert r.source.commits, "nothing was committed"
