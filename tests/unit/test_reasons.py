"""Reason codes: top positive w_j·x_j per event, checked against a brute-force computation."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from river import linear_model, preprocessing

from connectors.outputs import BatchOutputs, columns
from streamlearn.batch import RawBatch
from streamlearn.config import ModelConfig, PipelineConfig, SchemaConfig
from streamlearn.decoding import EventDecoder
from streamlearn.errors import ModelError
from streamlearn.features import FeatureBatch, Featurizer
from streamlearn.models import LinearRiverModel, LinearSklearnModel, build_model
from streamlearn.reasons import encode, matrix_reasons, top_columns
from streamlearn.tasks.classification import ClassificationTask

SCHEMA = SchemaConfig.model_validate(
    {
        "features": {
            "amount": "float",
            "velocity": "float",
            "hour": "int",
            "channel": {"type": "category", "buckets": 4},
            "mcc": {"type": "category", "buckets": 16},
        }
    }
)
FEATURIZER = Featurizer(SCHEMA)
N_NUMERIC = 3


def events(n: int, seed: int) -> FeatureBatch:
    rng = np.random.default_rng(seed)
    raw = [
        orjson.dumps(
            {"event_id": f"e{i}", "entity_id": f"c{i % 7}", "ts": i,
             "amount": float(rng.lognormal(3, 1)), "velocity": float(rng.normal(0, 2)),
             "hour": int(rng.integers(0, 24)), "channel": str(rng.choice(["web", "pos", "app"])),
             "mcc": f"{rng.integers(5000, 5030)}"}
        )
        for i in range(n)
    ]  # fmt: skip
    decoded = EventDecoder(SCHEMA).decode(raw)
    assert decoded.rejected == []
    return FEATURIZER.transform(decoded)


def brute_force(pairs: list[tuple[str, float]], top: int) -> list[list[Any]]:
    """The definition, spelled out: largest first, the first ``top``, rounded, those above 0."""
    ranked = sorted(pairs, key=lambda p: -p[1])[:top]  # stable: ties keep column order
    rounded = [[name, float(np.round(v, 4))] for name, v in ranked]  # numpy's rounding
    return [pair for pair in rounded if pair[1] > 0]


def column_name(features: FeatureBatch, row: int, column: int) -> str:
    """The name of a matrix column for one row, from the featurizer's column list."""
    name = FEATURIZER.columns[column]
    if column < N_NUMERIC:
        return name
    field = name.split("#")[0]
    return f"{field}={features.decoded.categorical[field][row]}"


def fitted_sklearn(seed: int, scale: bool = True) -> LinearSklearnModel:
    from sklearn.linear_model import SGDClassifier

    model = LinearSklearnModel(
        SGDClassifier(loss="log_loss", random_state=0), n_numeric=N_NUMERIC, scale=scale
    )
    train = events(300, seed=seed)
    model.learn(train, np.random.default_rng(seed).integers(0, 2, 300).astype(float))
    # Random weights of both signs, so some rows have fewer than three positive terms.
    width = FEATURIZER.width
    model.estimator.coef_ = np.random.default_rng(seed + 1).normal(0, 1, (1, width))
    return model


# --- the top-k kernel ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.floats(-1e6, 1e6),
    ),
    st.integers(0, 6),
)
def test_top_columns_are_the_largest_values_in_order(matrix: np.ndarray, top: int) -> None:
    cols, vals = top_columns(matrix, top)
    k = min(top, matrix.shape[1])
    assert cols.shape == vals.shape == (matrix.shape[0], k)
    expected = -np.sort(-matrix, axis=1)[:, :k]
    np.testing.assert_array_equal(vals, expected)
    np.testing.assert_array_equal(np.take_along_axis(matrix, cols, axis=1), vals)
    for row in cols.tolist():  # each column at most once
        assert len(set(row)) == len(row)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scale", [True, False])
def test_sklearn_reasons_match_brute_force(seed: int, scale: bool) -> None:
    model = fitted_sklearn(seed, scale=scale)
    features = events(257, seed=100 + seed)
    got = [orjson.loads(r) for r in model.explain(features, 3)]
    seen = model._inputs(features.matrix)
    weights = model.estimator.coef_[0]
    counts = set()
    for i in range(len(features)):
        pairs = [
            (column_name(features, i, j), float(weights[j] * seen[i, j]))
            for j in range(FEATURIZER.width)
        ]
        expected = brute_force(pairs, 3)
        assert got[i] == expected, i
        counts.add(len(expected))
    assert len(counts) > 1  # rows with fewer than three positive terms occur, and are respected


def test_only_positive_contributions_are_reasons() -> None:
    model = fitted_sklearn(0)
    features = events(64, seed=9)
    model.estimator.coef_ = -np.abs(model.estimator.coef_)
    seen = model._inputs(features.matrix)
    expected = [brute_force([("x", float(v)) for v in row * model.estimator.coef_[0]], 3)
                for row in seen]  # fmt: skip
    got = [orjson.loads(r) for r in model.explain(features, 3)]
    assert all(len(g) == len(e) for g, e in zip(got, expected))
    assert all(c > 0 for reasons in got for _, c in reasons)


def test_category_reasons_name_the_rows_own_value() -> None:
    model = fitted_sklearn(0)
    model.estimator.coef_ = np.zeros((1, FEATURIZER.width))
    model.estimator.coef_[0, N_NUMERIC:] = 1.0  # every category bucket pushes up by its 1.0
    features = events(50, seed=3)
    for i, reasons in enumerate(model.explain(features, 3)):
        d = features.decoded.categorical
        expected = sorted([[f"channel={d['channel'][i]}", 1.0], [f"mcc={d['mcc'][i]}", 1.0]])
        assert sorted(orjson.loads(reasons)) == expected


def test_format_is_a_json_array_of_name_and_rounded_contribution() -> None:
    # Columns: amount, hour, channel's 4 buckets, k's 1 bucket; the row is on channel bucket 2.
    inputs = np.array([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]])
    weights = np.array([1.234567, -3.0, 9.0, 9.0, 0.5, 9.0, 0.00004])
    got = matrix_reasons(inputs, weights, 3, ["amount", "hour"], {"channel": 4, "k": 1},
                         {"channel": ['we"b'], "k": ["z"]})  # fmt: skip
    assert got == ['[["amount",1.2346],["channel=we\\"b",0.5]]']
    assert orjson.loads(got[0]) == [["amount", 1.2346], ['channel=we"b', 0.5]]


def test_a_diverged_model_gives_no_reasons_rather_than_bad_json() -> None:
    contributions = np.array([[np.inf, 1.0, np.nan, -np.inf]])
    assert encode(contributions, np.array([[0, 1, 2, 3]]), list("abcd"), 3) == ['[["b",1.0]]']


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.text(max_size=8), st.floats(-5, 5)), min_size=4, max_size=4),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, 5),
)
def test_any_names_and_values_encode_to_the_brute_force_json(
    rows: list[list[tuple[str, float]]], top: int
) -> None:
    # Names with quotes, brackets, newlines, any unicode: each row stays one valid array.
    ids = np.arange(4 * len(rows)).reshape(len(rows), 4)
    vocabulary = [name for row in rows for name, _ in row]
    contributions = np.array([[v for _, v in row] for row in rows])
    got = encode(contributions, ids, vocabulary, top)
    assert [orjson.loads(g) for g in got] == [brute_force(row, top) for row in rows]


def test_no_features_no_reasons() -> None:
    assert matrix_reasons(np.zeros((2, 0)), np.zeros(0), 3, [], {}, {}) == ["[]", "[]"]
    assert matrix_reasons(np.zeros((0, 3)), np.ones(3), 3, ["a", "b", "c"], {}, {}) == []


def test_an_unfitted_sklearn_model_has_no_reasons_yet() -> None:
    model = build_model(ModelConfig(estimator="sklearn.linear_model.SGDClassifier"), N_NUMERIC)
    assert isinstance(model, LinearSklearnModel)
    assert model.explain(events(4, seed=0), 3) == ["[]"] * 4


# --- river -----------------------------------------------------------------------------------


RIVER_MODELS = {
    "bare": lambda: linear_model.LogisticRegression(),
    "standard": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
    "minmax": lambda: preprocessing.MinMaxScaler() | linear_model.LogisticRegression(),
    "maxabs": lambda: preprocessing.MaxAbsScaler() | linear_model.LogisticRegression(),
    "chained": lambda: (
        preprocessing.StandardScaler()
        | preprocessing.MaxAbsScaler()
        | linear_model.LogisticRegression()
    ),
}


@pytest.mark.parametrize("kind", list(RIVER_MODELS))
def test_river_reasons_match_brute_force(kind: str) -> None:
    model = LinearRiverModel(RIVER_MODELS[kind]())
    train = events(200, seed=1)
    model.learn(train, np.random.default_rng(1).integers(0, 2, 200).astype(float))
    features = events(100, seed=2)
    steps = list(model.estimator.steps.values()) if kind != "bare" else [model.estimator]
    *scalers, lr = steps
    # Random weights of both signs on every feature, categories included (even unseen ones).
    rng = np.random.default_rng(3)
    for key in {k for row in features.rows for k in row}:
        lr._weights[key] = float(rng.normal())
    got = [orjson.loads(r) for r in model.explain(features, 3)]
    weights = lr.weights
    for i, row in enumerate(features.rows):
        x = row
        for scaler in scalers:  # river's own transform, one event at a time
            x = scaler.transform_one(x)
        expected = brute_force([(k, weights.get(k, 0.0) * v) for k, v in x.items()], 3)
        assert got[i] == expected, i
    assert any(got)


def test_river_models_from_configuration() -> None:
    for estimator in ("LogisticRegression", "Perceptron"):
        for scale in (True, False):
            config = ModelConfig(estimator=f"river.linear_model.{estimator}", scale=scale)
            assert isinstance(build_model(config, N_NUMERIC), LinearRiverModel)


def test_river_unscaled_categories_are_named_by_value() -> None:
    lr = linear_model.LogisticRegression()
    model = LinearRiverModel(lr)
    features = events(20, seed=5)
    for c in ("web", "pos", "app"):
        lr._weights[f"channel={c}"] = 1.0
    for row, reasons in zip(features.rows, model.explain(features, 3)):
        names = [name for name, _ in orjson.loads(reasons)]
        assert names == [n for n in row if n.startswith("channel=")]


def test_river_scaled_categories_add_nothing() -> None:
    # River's StandardScaler sees a category only as 1.0, so its variance is 0 and it scales
    # it to 0: behind it, categories never appear among the reasons.
    model = build_model(ModelConfig(estimator="river.linear_model.LogisticRegression"), 3)
    assert isinstance(model, LinearRiverModel)
    train = events(300, seed=1)
    model.learn(train, (np.array(train.decoded.categorical["channel"]) == "web").astype(float))
    reasons = [orjson.loads(r) for r in model.explain(events(100, seed=2), 3)]
    assert not [name for row in reasons for name, _ in row if "=" in name]


def test_other_river_pipelines_are_refused_at_once() -> None:
    from river import feature_extraction

    with pytest.raises(ModelError, match="reason codes need a river LogisticRegression"):
        LinearRiverModel(
            feature_extraction.PolynomialExtender() | linear_model.LogisticRegression()
        )


# --- models without a linear contribution, and the task --------------------------------------


@pytest.mark.parametrize(
    "estimator",
    [
        "river.tree.HoeffdingTreeClassifier",
        "river.naive_bayes.GaussianNB",
        "sklearn.naive_bayes.GaussianNB",
        "sklearn.neural_network.MLPClassifier",
    ],
)
def test_models_without_a_linear_contribution_have_no_explain(estimator: str) -> None:
    assert not hasattr(build_model(ModelConfig(estimator=estimator), N_NUMERIC), "explain")


def pipeline_config(estimator: str, reasons: bool = True) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "fraud",
            "source": {"topic": "t"},
            "schema": {"target": "y", "features": {"amount": "float", "channel": "category"}},
            "model": {"estimator": estimator},
            "outputs": {"reasons": reasons},
        }
    )


def raw_batch(n: int) -> RawBatch:
    raw = RawBatch()
    for i in range(n):
        value = orjson.dumps(
            {"event_id": f"e{i}", "entity_id": f"c{i}", "ts": i, "amount": float(i % 5),
             "channel": ["web", "pos"][i % 2], "y": int(i % 5 > 2)}
        )  # fmt: skip
        raw.append("t", 0, i, None, value, i, received=0.0)
    return raw


def test_the_task_carries_reasons_of_linear_models_only() -> None:
    linear = ClassificationTask(pipeline_config("sklearn.linear_model.SGDClassifier"))
    linear.learn(linear.score(raw_batch(40)))
    scored = linear.score(raw_batch(40))
    assert scored.reasons is not None and len(scored.reasons) == 40
    assert {name for r in scored.reasons for name, _ in orjson.loads(r)} <= {
        "amount", "channel=web", "channel=pos"
    }  # fmt: skip
    tree = ClassificationTask(pipeline_config("river.tree.HoeffdingTreeClassifier"))
    assert tree.score(raw_batch(4)).reasons is None
    off = ClassificationTask(pipeline_config("sklearn.linear_model.SGDClassifier", False))
    assert off.score(raw_batch(4)).reasons is None


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> None:
        self.sent.append((topic, value))

    def flush(self, timeout_s: float = 30.0) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("with_reasons", [True, False])
def test_outputs_pass_reasons_to_redis_columns_and_the_predictions_topic(
    with_reasons: bool,
) -> None:
    task = ClassificationTask(pipeline_config("sklearn.linear_model.SGDClassifier", with_reasons))
    task.learn(task.score(raw_batch(20)))
    scored = task.score(raw_batch(20))
    assert columns(scored).reasons == scored.reasons
    producer = Producer()
    outputs = BatchOutputs("fraud", store=None, producer=producer,  # type: ignore[arg-type]
                           dead_letter_topic="dlq", predictions_topic="preds")  # fmt: skip
    outputs._send_predictions(scored)
    records = [orjson.loads(v) for topic, v in producer.sent if topic == "preds"]
    assert len(records) == 20
    if with_reasons:
        assert scored.reasons is not None
        assert [r["reasons"] for r in records] == [orjson.loads(s) for s in scored.reasons]
    else:
        assert all("reasons" not in r for r in records)
