import time
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from streamlearn.evaluation import PrequentialEvaluator
from streamlearn.generators import FraudGenerator, fraud_events
from streamlearn.generators.fraud import CHANNELS, FIELD_TYPES, MCC_CODES

START = 1_700_000_000_000
DRIFT_AT = 60_000
NUMERIC = [name for name, kind in FIELD_TYPES.items() if kind != "category"]


def _columns(events: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numeric features, one-hot categoricals and labels, the way a linear model sees them."""
    numeric = np.array([[e[name] for name in NUMERIC] for e in events], dtype=np.float64)
    one_hot = np.array(
        [
            [e["channel"] == c for c in CHANNELS] + [e["mcc"] == m for m in MCC_CODES]
            for e in events
        ],
        dtype=np.float64,
    )
    return numeric, one_hot, np.array([e["is_fraud"] for e in events])


@pytest.fixture(scope="module")
def drifting() -> list[dict[str, Any]]:
    return list(fraud_events(100_000, seed=3, drift_at=DRIFT_AT, start_ms=START))


def test_same_seed_same_stream_however_it_is_sliced() -> None:
    whole = list(fraud_events(5_000, seed=11, start_ms=START))
    gen = FraudGenerator(seed=11, start_ms=START)
    pieces = [*gen.events(10), *gen.events(4_000), *gen.events(990)]
    assert pieces == whole
    other = list(fraud_events(100, seed=12, start_ms=START))
    assert [e["entity_id"] for e in other] != [e["entity_id"] for e in whole[:100]]


def test_events_follow_the_schema(drifting: list[dict[str, Any]]) -> None:
    events = drifting[:20_000]
    expected_types = {"float": float, "int": int, "category": str}
    for e in events:
        assert list(e) == ["event_id", "entity_id", "ts", *FIELD_TYPES, "is_fraud"]
        assert type(e["event_id"]) is str and type(e["entity_id"]) is str
        assert type(e["ts"]) is int and type(e["is_fraud"]) is int
        for name, kind in FIELD_TYPES.items():
            assert type(e[name]) is expected_types[kind], name
    assert orjson.loads(orjson.dumps(events)) == events


def test_values_lie_in_their_ranges(drifting: list[dict[str, Any]]) -> None:
    assert len({e["event_id"] for e in drifting}) == len(drifting)
    ts = np.array([e["ts"] for e in drifting])
    assert ts[0] == START and (np.diff(ts) >= 0).all()
    # The default rate is 1000 events a second of event time.
    assert (ts[-1] - ts[0]) / len(ts) == pytest.approx(1.0, rel=0.05)
    numeric, _, labels = _columns(drifting)
    col = {name: numeric[:, i] for i, name in enumerate(NUMERIC)}
    assert (col["amount"] > 0).all()
    assert ((col["merchant_risk"] >= 0) & (col["merchant_risk"] <= 1)).all()
    assert (col["velocity_1h"] >= 0).all() and (col["distance_km"] >= 0).all()
    assert set(col["hour"]) == set(range(24))
    assert set(col["is_foreign"]) == {0, 1} and set(labels) == {0, 1}
    assert {e["channel"] for e in drifting} == set(CHANNELS)
    assert {e["mcc"] for e in drifting} == set(MCC_CODES)


def test_a_few_cards_are_busy_and_most_are_quiet(drifting: list[dict[str, Any]]) -> None:
    per_card = sorted(Counter(e["entity_id"] for e in drifting).values(), reverse=True)
    assert 3_000 < len(per_card) <= 5_000
    top_tenth = sum(per_card[: len(per_card) // 10])
    assert 0.35 < top_tenth / len(drifting) < 0.8
    assert per_card[0] / len(drifting) < 0.05


def test_fraud_rate_is_close_to_the_configured_one(drifting: list[dict[str, Any]]) -> None:
    rate = np.mean([e["is_fraud"] for e in drifting])
    assert 0.0125 < rate < 0.0175  # 1.5 %, ± ~6 standard deviations
    higher = np.mean([e["is_fraud"] for e in fraud_events(20_000, seed=5, fraud_rate=0.05)])
    assert 0.043 < higher < 0.057


def test_fraud_pattern_before_and_after_the_drift(drifting: list[dict[str, Any]]) -> None:
    def profile(events: list[dict[str, Any]], fraud: int) -> tuple[float, float, float]:
        chosen = [e for e in events if e["is_fraud"] == fraud]
        return (
            float(np.median([e["amount"] for e in chosen])),
            float(np.mean([e["is_foreign"] for e in chosen])),
            float(np.mean([e["channel"] == "app" for e in chosen])),
        )

    before, after = drifting[:DRIFT_AT], drifting[DRIFT_AT:]
    (fraud_amount, fraud_foreign, _), (legit_amount, legit_foreign, _) = (
        profile(before, 1),
        profile(before, 0),
    )
    assert fraud_amount > 1.5 * legit_amount and fraud_foreign > 3 * legit_foreign
    (fraud_amount, fraud_foreign, fraud_app), (legit_amount, legit_foreign, legit_app) = (
        profile(after, 1),
        profile(after, 0),
    )
    assert fraud_amount < 0.8 * legit_amount and fraud_foreign < legit_foreign
    assert fraud_app > 2 * legit_app


def test_a_model_trained_before_the_drift_degrades_after_it(
    drifting: list[dict[str, Any]],
) -> None:
    numeric, one_hot, labels = _columns(drifting)
    train, held_out, after = slice(0, 40_000), slice(40_000, DRIFT_AT), slice(DRIFT_AT, None)
    scaler = StandardScaler().fit(numeric[train])
    features = np.hstack([scaler.transform(numeric), one_hot])
    model = LogisticRegression(max_iter=1_000).fit(features[train], labels[train])

    def auc(part: slice, fitted: LogisticRegression) -> float:
        return float(roc_auc_score(labels[part], fitted.predict_proba(features[part])[:, 1]))

    assert 0.85 <= auc(held_out, model) <= 0.97  # learnable, not trivially
    assert auc(after, model) < auc(held_out, model) - 0.2
    relearned = LogisticRegression(max_iter=1_000).fit(
        features[DRIFT_AT:85_000], labels[DRIFT_AT:85_000]
    )
    assert auc(slice(85_000, None), relearned) >= 0.8


def test_an_online_model_learns_to_a_sane_prequential_auc() -> None:
    events = list(fraud_events(60_000, seed=8, start_ms=START))
    numeric, one_hot, labels = _columns(events)
    scaler, model = StandardScaler(), SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0)
    evaluator = PrequentialEvaluator(window=10_000)  # the last sixth of the stream
    for start in range(0, len(events), 500):
        batch = slice(start, start + 500)
        scaler.partial_fit(numeric[batch])
        features = np.hstack([scaler.transform(numeric[batch]), one_hot[batch]])
        if start:  # test, then train
            evaluator.update(model.predict_proba(features)[:, 1], labels[batch])
        model.partial_fit(features, labels[batch], classes=[0, 1])
    final_auc = evaluator.auc()
    assert final_auc is not None and 0.85 <= final_auc <= 0.97


@pytest.mark.parametrize(
    "options", [{"fraud_rate": 0.0}, {"fraud_rate": 1.0}, {"n_cards": 0}, {"rate": 0.0}]
)
def test_impossible_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FraudGenerator(**options)


def test_without_a_start_time_events_start_now() -> None:
    before = int(time.time() * 1000)
    first = next(fraud_events(1))
    assert before <= first["ts"] <= int(time.time() * 1000)
