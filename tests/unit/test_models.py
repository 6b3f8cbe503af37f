"""Model adapters (river, scikit-learn), building them from configuration, and online scaling."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from river import compose as river_compose
from river import linear_model, optim, preprocessing
from sklearn.linear_model import Perceptron, SGDClassifier
from sklearn.naive_bayes import MultinomialNB

from streamlearn.config import ModelConfig, SchemaConfig
from streamlearn.decoding import DecodedBatch, EventDecoder
from streamlearn.errors import ModelError
from streamlearn.features import FeatureBatch, Featurizer
from streamlearn.models import RiverModel, SklearnModel, build_model, build_object
from streamlearn.scaling import OnlineStandardScaler


def make_schema(**fields: Any) -> SchemaConfig:
    """A schema from plain data, short-form features included (as in a YAML file)."""
    return SchemaConfig.model_validate(fields)


SCHEMA = make_schema(
    target="y",
    features={
        "a": "float",
        "b": "float",
        "c": "float",
        "k": {"type": "category", "buckets": 8},
    },
)
DECODER = EventDecoder(SCHEMA)
FEATURIZER = Featurizer(SCHEMA)
N_NUMERIC = 3


def synthetic(n: int, seed: int) -> DecodedBatch:
    """Logistic data with features of very different scales, decoded in one go."""
    rng = np.random.default_rng(seed)
    a = rng.normal(100, 20, n)
    b = rng.normal(0, 0.01, n)
    c = rng.uniform(0, 1, n)
    k = rng.choice(list("pqrs"), n)
    logit = 0.08 * (a - 100) - 150 * b + 2 * (c - 0.5) + (k == "p")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    values = [
        orjson.dumps(
            {"event_id": f"e{i}", "entity_id": "x", "ts": i, "a": float(a[i]),
             "b": float(b[i]), "c": float(c[i]), "k": str(k[i]), "y": int(y[i])}
        )
        for i in range(n)
    ]  # fmt: skip
    decoded = DECODER.decode(values)
    assert decoded.rejected == []
    return decoded


def sliced(d: DecodedBatch, start: int, stop: int) -> FeatureBatch:
    """Rows ``start:stop`` of a decoded batch, as the pipeline would have seen them."""
    part = DecodedBatch(
        index=d.index[start:stop],
        event_ids=d.event_ids[start:stop],
        entity_ids=d.entity_ids[start:stop],
        timestamps_ms=d.timestamps_ms[start:stop],
        numeric={k: v[start:stop] for k, v in d.numeric.items()},
        categorical={k: v[start:stop] for k, v in d.categorical.items()},
        targets=d.targets[start:stop],
        rejected=[],
    )
    return FEATURIZER.transform(part)


TRAIN = synthetic(1200, seed=0)
TEST = sliced(synthetic(500, seed=1), 0, 500)
SMALL = sliced(TRAIN, 0, 64)


def sklearn_config(estimator: str, **params: Any) -> ModelConfig:
    return ModelConfig(estimator=f"sklearn.{estimator}", params=params)


# --- building models -------------------------------------------------------------------------


def test_river_estimator_gets_a_scaler_in_front() -> None:
    model = build_model(ModelConfig(estimator="river.linear_model.LogisticRegression"), 3)
    assert isinstance(model, RiverModel)
    assert isinstance(model.estimator, river_compose.Pipeline)
    steps = list(model.estimator.steps.values())
    assert isinstance(steps[0], preprocessing.StandardScaler)
    assert isinstance(steps[1], linear_model.LogisticRegression)


def test_river_estimator_without_scaling() -> None:
    config = ModelConfig(estimator="river.linear_model.LogisticRegression", scale=False)
    model = build_model(config, 3)
    assert isinstance(model, RiverModel)
    assert isinstance(model.estimator, linear_model.LogisticRegression)


@pytest.mark.parametrize(
    ("estimator", "cls"),
    [("linear_model.SGDClassifier", SGDClassifier), ("linear_model.Perceptron", Perceptron)],
)
def test_sklearn_estimator_gets_a_scaler_for_numeric_columns(estimator: str, cls: type) -> None:
    model = build_model(sklearn_config(estimator), n_numeric=3)
    assert isinstance(model, SklearnModel)
    assert isinstance(model.estimator, cls)
    assert model.scaler is not None
    assert model.scaler.n_columns == 3


def test_sklearn_without_scaling_or_numeric_columns_has_no_scaler() -> None:
    unscaled = build_model(
        ModelConfig(estimator="sklearn.linear_model.SGDClassifier", scale=False), 3
    )
    no_numbers = build_model(sklearn_config("linear_model.SGDClassifier"), n_numeric=0)
    assert isinstance(unscaled, SklearnModel)
    assert isinstance(no_numbers, SklearnModel)
    assert unscaled.scaler is None
    assert no_numbers.scaler is None


def test_params_reach_the_estimator() -> None:
    model = build_model(
        sklearn_config("linear_model.SGDClassifier", loss="log_loss", alpha=0.01), 3
    )
    assert isinstance(model, SklearnModel)
    assert (model.estimator.loss, model.estimator.alpha) == ("log_loss", 0.01)


def test_nested_class_params_are_built() -> None:
    params = {
        "optimizer": {
            "class": "river.optim.SGD",
            "params": {
                "lr": {
                    "class": "river.optim.schedulers.InverseScaling",
                    "params": {"learning_rate": 0.3},
                }
            },
        },
        "l2": 0.01,
    }
    model = build_model(
        ModelConfig(estimator="river.linear_model.LogisticRegression", params=params), 1
    )
    assert isinstance(model, RiverModel)
    lr = model.estimator["LogisticRegression"]
    assert isinstance(lr.optimizer, optim.SGD)
    assert isinstance(lr.optimizer.lr, optim.schedulers.InverseScaling)
    assert lr.optimizer.lr.learning_rate == 0.3
    assert lr.l2 == 0.01


def test_nested_class_without_params() -> None:
    built = build_object(
        "river.linear_model.LogisticRegression", {"optimizer": {"class": "river.optim.Adam"}}
    )
    assert isinstance(built.optimizer, optim.Adam)


def test_plain_dict_params_stay_dicts() -> None:
    # A dict that is not a {"class", "params"} spec (class weights, say) is passed as is.
    model = build_model(
        sklearn_config("linear_model.SGDClassifier", class_weight={0: 1.0, 1: 5.0}), 3
    )
    assert isinstance(model, SklearnModel)
    assert model.estimator.class_weight == {0: 1.0, 1: 5.0}


@pytest.mark.parametrize(
    ("estimator", "params", "message"),
    [
        ("river.nope.Model", {}, r"cannot import 'river.nope.Model': No module named 'river.nope'"),
        ("river.linear_model.Nope", {}, r"cannot import 'river.linear_model.Nope'"),
        ("sklearn", {}, r"cannot import 'sklearn'"),
        ("math.pi", {}, r"cannot build math.pi"),
        ("sklearn.svm.SVC", {}, r"SVC has no partial_fit; .*SGDClassifier"),
        ("sklearn.linear_model.SGDClassifier", {"alpah": 0.1}, r"cannot build .*'alpah'"),
        ("river.linear_model.LogisticRegression", {"l2": math.nan}, r"must not be NaN"),
        (
            "river.linear_model.LogisticRegression",
            {"optimizer": {"class": "river.optim.Nope"}},
            r"cannot import 'river.optim.Nope'",
        ),
    ],
)
def test_model_errors_say_what_is_wrong(
    estimator: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        build_model(ModelConfig(estimator=estimator, params=params), 3)


@pytest.mark.parametrize(
    "estimator", ["sklearn.linear_model.SGDRegressor", "river.linear_model.LinearRegression"]
)
def test_a_regressor_is_refused_for_the_binary_task(estimator: str) -> None:
    with pytest.raises(ModelError):
        build_model(ModelConfig(estimator=estimator), 3)


def test_bad_sklearn_parameter_value_is_refused_at_build_time() -> None:
    with pytest.raises(ModelError, match="loss"):
        build_model(sklearn_config("linear_model.SGDClassifier", loss="nope"), 3)


# --- scoring and learning --------------------------------------------------------------------


def test_river_scores_half_before_learning_and_learns() -> None:
    model = build_model(ModelConfig(estimator="river.linear_model.LogisticRegression"), N_NUMERIC)
    assert model.predict_proba(SMALL).tolist() == [0.5] * len(SMALL)
    assert model.learn(SMALL, SMALL.decoded.targets) == len(SMALL)
    assert model.version == 1
    p = model.predict_proba(SMALL)
    assert p.shape == (len(SMALL),)
    assert ((p > 0) & (p < 1)).all()
    assert not np.allclose(p, 0.5)


def test_sklearn_scores_the_prior_before_the_first_fit() -> None:
    model = SklearnModel(SGDClassifier(loss="log_loss"), n_numeric=N_NUMERIC, prior=0.02)
    assert model.predict_proba(SMALL).tolist() == [0.02] * len(SMALL)
    # A batch without labels does not fit anything.
    assert model.learn(SMALL, np.full(len(SMALL), np.nan)) == 0
    assert model.predict_proba(SMALL).tolist() == [0.02] * len(SMALL)
    model.learn(SMALL, SMALL.decoded.targets)
    assert not np.allclose(model.predict_proba(SMALL), 0.02)


@pytest.mark.parametrize(
    "estimator", ["river.linear_model.LogisticRegression", "sklearn.linear_model.SGDClassifier"]
)
def test_empty_batch_scores_nothing(estimator: str) -> None:
    model = build_model(ModelConfig(estimator=estimator), N_NUMERIC)
    model.learn(SMALL, SMALL.decoded.targets)
    empty = sliced(TRAIN, 0, 0)
    assert model.predict_proba(empty).shape == (0,)
    assert model.learn(empty, empty.decoded.targets) == 0


def test_log_loss_sgd_scores_with_predict_proba() -> None:
    model = SklearnModel(SGDClassifier(loss="log_loss", random_state=0), n_numeric=N_NUMERIC)
    model.learn(SMALL, SMALL.decoded.targets)
    expected = model.estimator.predict_proba(model._inputs(TEST.matrix))[:, 1]
    assert model.predict_proba(TEST).tolist() == expected.tolist()


@pytest.mark.parametrize("estimator", [Perceptron(random_state=0), SGDClassifier(random_state=0)])
def test_without_predict_proba_the_margin_is_squashed(estimator: Any) -> None:
    # Perceptron and hinge-loss SGD have no predict_proba: the score is sigmoid(decision).
    assert not hasattr(estimator, "predict_proba")
    model = SklearnModel(estimator, n_numeric=N_NUMERIC)
    model.learn(SMALL, SMALL.decoded.targets)
    margin = estimator.decision_function(model._inputs(TEST.matrix))
    p = model.predict_proba(TEST)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-margin)), rtol=1e-12)
    assert ((p >= 0) & (p <= 1)).all()


def test_squashing_huge_margins_does_not_overflow() -> None:
    model = SklearnModel(Perceptron(random_state=0), n_numeric=0, scale=False)
    model.learn(SMALL, SMALL.decoded.targets)  # unscaled `a` near 100: margins in the hundreds
    huge = sliced(synthetic(50, seed=3), 0, 50)
    huge.matrix[:, 0] *= 1e6
    with np.errstate(over="raise"):
        p = model.predict_proba(huge)
    assert np.isfinite(p).all()


def test_multinomial_nb_learns_non_negative_inputs_without_scaling() -> None:
    # MultinomialNB needs counts-like inputs: scaling (the default) makes them negative, so
    # configure it with `scale: false` and non-negative features.
    model = build_model(ModelConfig(estimator="sklearn.naive_bayes.MultinomialNB", scale=False), 3)
    assert isinstance(model, SklearnModel)
    assert isinstance(model.estimator, MultinomialNB)
    positive = sliced(TRAIN, 0, 200)
    positive.matrix[:, :N_NUMERIC] = np.abs(positive.matrix[:, :N_NUMERIC])
    assert model.learn(positive, positive.decoded.targets) == 200
    p = model.predict_proba(positive)
    assert ((p >= 0) & (p <= 1)).all()


def test_multinomial_nb_with_scaling_is_refused_at_build_time() -> None:
    with pytest.raises(ModelError, match="scale"):
        build_model(ModelConfig(estimator="sklearn.naive_bayes.MultinomialNB"), 3)


@pytest.mark.parametrize(
    "estimator", ["river.linear_model.LogisticRegression", "sklearn.linear_model.SGDClassifier"]
)
def test_learn_ignores_nan_targets(estimator: str) -> None:
    model = build_model(ModelConfig(estimator=estimator), N_NUMERIC)
    y = SMALL.decoded.targets.copy()
    y[::2] = np.nan
    assert model.learn(SMALL, y) == len(SMALL) // 2
    assert model.version == 1


def test_sklearn_learns_from_the_labelled_rows_only() -> None:
    y = SMALL.decoded.targets.copy()
    y[::3] = np.nan
    keep = ~np.isnan(y)
    model = SklearnModel(SGDClassifier(loss="log_loss", random_state=0), n_numeric=N_NUMERIC)
    model.learn(SMALL, y)
    # The same steps by hand, on the labelled rows alone.
    rows = SMALL.matrix[keep]
    scaler = OnlineStandardScaler(N_NUMERIC)
    scaled = scaler.learn_and_scale(rows)  # each row as it would be scaled alone, in turn
    reference = SGDClassifier(loss="log_loss", random_state=0)
    reference.partial_fit(scaled, y[keep].astype(int), classes=[0, 1])
    assert model.scaler is not None
    assert model.scaler.count == int(keep.sum())
    np.testing.assert_array_equal(model.scaler.mean, scaler.mean)
    np.testing.assert_array_equal(model.estimator.coef_, reference.coef_)


@pytest.mark.parametrize(
    "estimator", ["river.linear_model.LogisticRegression", "sklearn.linear_model.SGDClassifier"]
)
def test_version_counts_batches_that_taught_something(estimator: str) -> None:
    model = build_model(ModelConfig(estimator=estimator), N_NUMERIC)
    unlabelled = np.full(len(SMALL), np.nan)
    labels = SMALL.decoded.targets
    versions = []
    for y in (unlabelled, labels, unlabelled, labels, labels):
        model.learn(SMALL, y)
        versions.append(model.version)
    assert versions == [0, 1, 1, 2, 3]


def test_scoring_does_not_change_the_model() -> None:
    model = build_model(ModelConfig(estimator="river.linear_model.LogisticRegression"), N_NUMERIC)
    model.learn(SMALL, SMALL.decoded.targets)
    first = model.predict_proba(TEST)
    assert model.predict_proba(TEST).tolist() == first.tolist()
    assert model.version == 1


# --- mini-batches learn like single events ---------------------------------------------------


def learned_in_batches(config: ModelConfig, batch_size: int) -> np.ndarray:
    model = build_model(config, N_NUMERIC)
    for start in range(0, len(TRAIN), batch_size):
        part = sliced(TRAIN, start, start + batch_size)
        model.learn(part, part.decoded.targets)
    return model.predict_proba(TEST)


def sgd(**params: Any) -> ModelConfig:
    return sklearn_config("linear_model.SGDClassifier", loss="log_loss", alpha=0.001, **params)


@functools.cache
def per_event_scores() -> np.ndarray:
    # A batch of one has a single order, so `shuffle` cannot change this reference.
    return learned_in_batches(sgd(random_state=0, shuffle=False), 1)


# Observed here (sklearn 1.9, 1,200 training events, 500 held out): max |p_batched - p_single|
# is 0.0017, 0.0020 and 0.0027 at batch sizes 8, 64 and 256 with shuffle=False, so the scaler's
# batch-wise statistics barely matter. With sklearn's default shuffle=True, partial_fit reorders
# each batch and the same comparison gives 0.19 (batch 8) to 0.80 (batch 256).
PARITY_TOLERANCE = 0.01


@pytest.mark.parametrize("batch_size", [8, 64, 256])
def test_batched_sgd_matches_per_event_sgd(batch_size: int) -> None:
    single = per_event_scores()
    batched = learned_in_batches(sgd(random_state=0, shuffle=False), batch_size)
    assert np.abs(batched - single).max() < PARITY_TOLERANCE
    assert ((batched > 0.5) == (single > 0.5)).mean() > 0.99


def test_fraud_example_params_learn_batched_like_per_event() -> None:
    batched = learned_in_batches(sgd(random_state=0), 64)
    assert np.abs(batched - per_event_scores()).max() < PARITY_TOLERANCE


# --- online standard scaling -----------------------------------------------------------------

blocks = st.lists(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 20), st.just(3)),
        elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(blocks)
def test_batch_merges_equal_statistics_of_the_concatenation(batches: list[np.ndarray]) -> None:
    scaler = OnlineStandardScaler(2)
    for block in batches:
        scaler.learn(block)
    everything = np.concatenate(batches)
    assert scaler.count == len(everything)
    if len(everything) == 0:
        assert scaler.mean.tolist() == [0.0, 0.0]
        assert scaler.var.tolist() == [0.0, 0.0]
        return
    np.testing.assert_allclose(scaler.mean, everything[:, :2].mean(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scaler.var, everything[:, :2].var(axis=0), rtol=1e-7, atol=1e-6)


def test_one_event_at_a_time_equals_one_batch() -> None:
    rng = np.random.default_rng(5)
    data = rng.normal(50, 7, (300, 2))
    one_by_one, at_once = OnlineStandardScaler(2), OnlineStandardScaler(2)
    for row in data:
        one_by_one.learn(row[None, :])
    at_once.learn(data)
    np.testing.assert_allclose(one_by_one.mean, at_once.mean, rtol=1e-12)
    np.testing.assert_allclose(one_by_one.var, at_once.var, rtol=1e-9)


def test_transform_scales_numeric_columns_and_passes_the_rest() -> None:
    scaler = OnlineStandardScaler(1)
    scaler.learn(np.array([[1.0, 1.0], [3.0, 0.0], [5.0, 0.0]]))
    x = np.array([[3.0, 1.0], [5.0, 0.0]])
    out = scaler.transform(x)
    std = math.sqrt(8 / 3)
    assert out[:, 0].tolist() == pytest.approx([0.0, 2 / std])
    assert out[:, 1].tolist() == [1.0, 0.0]
    assert x.tolist() == [[3.0, 1.0], [5.0, 0.0]]  # a copy: the input is untouched


def test_constant_column_is_only_centred() -> None:
    scaler = OnlineStandardScaler(2)
    scaler.learn(np.array([[4.0, 1.0], [4.0, 3.0]]))
    assert scaler.transform(np.array([[6.0, 2.0]])).tolist() == [[2.0, 0.0]]


def test_before_learning_transform_is_identity() -> None:
    scaler = OnlineStandardScaler(2)
    x = np.array([[6.0, -2.0, 1.0]])
    assert scaler.transform(x).tolist() == x.tolist()
    assert scaler.var.tolist() == [0.0, 0.0]


def test_empty_batch_changes_nothing() -> None:
    scaler = OnlineStandardScaler(1)
    scaler.learn(np.array([[2.0], [4.0]]))
    scaler.learn(np.empty((0, 1)))
    assert (scaler.count, scaler.mean.tolist(), scaler.var.tolist()) == (2, [3.0], [1.0])
