"""Adapts river and scikit-learn models to one batch interface: score a batch, learn a batch.

river models score and learn event by event (their ``*_one`` methods, so a batch of one is
exactly river's own progressive evaluation); scikit-learn models with ``partial_fit`` score and
learn whole matrices, behind an online standard scaler so their inputs are comparable.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol

import numpy as np

from streamlearn import sgd_fast
from streamlearn.config import ModelConfig
from streamlearn.errors import ModelError
from streamlearn.features import FeatureBatch
from streamlearn.reasons import affine_reasons, matrix_reasons
from streamlearn.scaling import OnlineStandardScaler

# Batches of at most this many rows skip scikit-learn's per-call checks (streamlearn.sgd_fast).
FAST_ROWS = 64


class BatchModel(Protocol):
    """What the pipeline needs from a model."""

    version: int

    def predict_proba(self, features: FeatureBatch) -> np.ndarray:
        """Probability of the positive class for each event."""
        ...

    def learn(self, features: FeatureBatch, y: np.ndarray) -> int:
        """Learn from the events whose label is not NaN; return how many."""
        ...


class RiverModel:
    """A river classifier, driven one event at a time.

    Examples
    --------
    >>> from river import linear_model
    >>> from streamlearn.config import SchemaConfig
    >>> from streamlearn.decoding import EventDecoder
    >>> from streamlearn.features import Featurizer
    >>> schema = SchemaConfig(features={"x": "float"})
    >>> decoded = EventDecoder(schema).decode(
    ...     [b'{"event_id": "a", "entity_id": "e", "ts": 0, "x": 1.0}'])
    >>> batch = Featurizer(schema).transform(decoded)
    >>> model = RiverModel(linear_model.LogisticRegression())
    >>> model.predict_proba(batch).tolist()
    [0.5]
    >>> model.learn(batch, np.array([1.0])), model.version
    (1, 1)
    >>> bool(model.predict_proba(batch)[0] > 0.5)
    True
    """

    def __init__(self, estimator: Any, prior: float = 0.5) -> None:
        self.estimator = estimator
        self.prior = prior
        self.version = 0

    def predict_proba(self, features: FeatureBatch) -> np.ndarray:
        """Score every event with the model as it is now."""
        predict = self.estimator.predict_proba_one
        prior = self.prior
        return np.fromiter(
            (predict(x).get(True, prior) for x in features.rows),
            dtype=np.float64,
            count=len(features),
        )

    def learn(self, features: FeatureBatch, y: np.ndarray) -> int:
        """Learn from each labelled event in order."""
        learn = self.estimator.learn_one
        labelled = np.flatnonzero(~np.isnan(y))
        rows = features.rows
        for i in labelled.tolist():
            learn(rows[i], bool(y[i]))
        if len(labelled):
            self.version += 1
        return len(labelled)


class SklearnModel:
    """A scikit-learn classifier with ``partial_fit``, driven a whole batch at a time.

    Scores come from ``predict_proba`` or, failing that, a logistic squash of
    ``decision_function``. Until the first labelled batch it scores ``prior``.

    Examples
    --------
    >>> from sklearn.linear_model import SGDClassifier
    >>> from streamlearn.config import SchemaConfig
    >>> from streamlearn.decoding import EventDecoder
    >>> from streamlearn.features import Featurizer
    >>> schema = SchemaConfig(features={"x": "float"})
    >>> raw = [b'{"event_id": "a", "entity_id": "e", "ts": 0, "x": %d}' % i for i in range(6)]
    >>> batch = Featurizer(schema).transform(EventDecoder(schema).decode(raw))
    >>> model = SklearnModel(SGDClassifier(loss="log_loss", random_state=0), n_numeric=1)
    >>> model.predict_proba(batch).tolist()[:2]
    [0.5, 0.5]
    >>> model.learn(batch, np.array([0, 0, 0, 1, 1, 1.0]))
    6
    >>> p = model.predict_proba(batch)
    >>> bool(p[0] < 0.5 < p[-1])
    True
    """

    def __init__(
        self, estimator: Any, n_numeric: int, scale: bool = True, prior: float = 0.5
    ) -> None:
        if not hasattr(estimator, "partial_fit"):
            raise ModelError(
                f"{type(estimator).__name__} has no partial_fit; streamlearn needs a "
                "scikit-learn estimator that learns incrementally (SGDClassifier, "
                "Perceptron, PassiveAggressiveClassifier, MultinomialNB, ...)"
            )
        self.estimator = estimator
        self.scaler = OnlineStandardScaler(n_numeric) if scale and n_numeric else None
        self.prior = prior
        self.version = 0
        self._fitted = False

    def predict_proba(self, features: FeatureBatch) -> np.ndarray:
        """Score the whole batch with one vectorised call."""
        if not self._fitted or len(features) == 0:
            return np.full(len(features), self.prior)
        x = self._inputs(features.matrix)
        if len(x) <= FAST_ROWS and self._fast():
            return sgd_fast.predict_positive(self.estimator, x)
        if hasattr(self.estimator, "predict_proba"):
            proba = self.estimator.predict_proba(x)
            return np.asarray(proba[:, list(self.estimator.classes_).index(1)], dtype=np.float64)
        margin = np.asarray(self.estimator.decision_function(x), dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(margin, -500, 500)))

    def learn(self, features: FeatureBatch, y: np.ndarray) -> int:
        """Update the scaler, then ``partial_fit`` on the labelled rows."""
        labelled = ~np.isnan(y)
        n = int(labelled.sum())
        if n == 0:
            return 0
        matrix = features.matrix if labelled.all() else features.matrix[labelled]
        # Each row scaled as it would be alone, after the rows before it (not by the batch's
        # statistics as a whole): a batch then learns what batches of one would.
        x = self.scaler.learn_and_scale(matrix) if self.scaler is not None else matrix
        target = y[labelled].astype(np.int64)
        if n <= FAST_ROWS and self._fast():
            sgd_fast.partial_fit(self.estimator, x, target)  # same step, without the checks
        else:
            self.estimator.partial_fit(x, target, classes=[0, 1])
        self._fitted = True
        self.version += 1
        return n

    def _inputs(self, matrix: np.ndarray) -> np.ndarray:
        return self.scaler.transform(matrix) if self.scaler is not None else matrix

    def _fast(self) -> bool:
        # Once the estimator can take the fast path it keeps it (its settings do not change).
        if not getattr(self, "_fast_ok", False):
            self._fast_ok = sgd_fast.supported(self.estimator)
        return self._fast_ok


class LinearRiverModel(RiverModel):
    """A river ``LogisticRegression``, alone or behind river's scalers, that gives reason codes.

    Examples
    --------
    >>> from river import linear_model
    >>> from streamlearn.config import SchemaConfig
    >>> from streamlearn.decoding import EventDecoder
    >>> from streamlearn.features import Featurizer
    >>> schema = SchemaConfig(features={"x": "float", "z": "float"})
    >>> decoded = EventDecoder(schema).decode(
    ...     [b'{"event_id": "a", "entity_id": "e", "ts": 0, "x": 1.0, "z": 2.0}'])
    >>> batch = Featurizer(schema).transform(decoded)
    >>> model = LinearRiverModel(linear_model.LogisticRegression())
    >>> model.learn(batch, np.array([1.0]))
    1
    >>> model.explain(batch, 3)
    ['[["z",0.02],["x",0.005]]']
    """

    def __init__(self, estimator: Any, prior: float = 0.5) -> None:
        _scaled_linear(estimator)  # refuse at once what explain could not handle
        super().__init__(estimator, prior)

    def explain(self, features: FeatureBatch, top: int) -> list[str]:
        """Per event, the ``top`` largest positive ``w_j·x_j`` on the inputs the model sees."""
        scalers, linear = _scaled_linear(self.estimator)

        def transform(x: dict[str, float]) -> dict[str, float]:
            for scaler in scalers:
                x = scaler.transform_one(x)
            return x

        return affine_reasons(features.decoded, linear.weights, transform, top)


class LinearSklearnModel(SklearnModel):
    """A linear scikit-learn classifier (``SGDClassifier``, ``Perceptron``, ...) with reason codes.

    Examples
    --------
    >>> from sklearn.linear_model import SGDClassifier
    >>> from streamlearn.config import SchemaConfig
    >>> from streamlearn.decoding import EventDecoder
    >>> from streamlearn.features import Featurizer
    >>> schema = SchemaConfig(features={"x": "float", "k": {"type": "category", "buckets": 4}})
    >>> raw = [b'{"event_id": "a", "entity_id": "e", "ts": 0, "x": %d, "k": "%s"}' % (i, k)
    ...        for i, k in [(0, b"p"), (1, b"p"), (2, b"q"), (3, b"q")]]
    >>> batch = Featurizer(schema).transform(EventDecoder(schema).decode(raw))
    >>> model = LinearSklearnModel(SGDClassifier(loss="log_loss", random_state=0), n_numeric=1)
    >>> model.explain(batch, 3)  # nothing learned yet: the prior, pushed by nothing
    ['[]', '[]', '[]', '[]']
    >>> model.learn(batch, np.array([0, 0, 1, 1.0]))
    4
    >>> import json
    >>> sorted(name for name, contribution in json.loads(model.explain(batch, 3)[-1]))
    ['k=q', 'x']
    """

    def explain(self, features: FeatureBatch, top: int) -> list[str]:
        """Per event, the ``top`` largest positive ``w_j·x_j``, one matrix product per batch."""
        if not self._fitted or len(features) == 0:
            return ["[]"] * len(features)
        inputs, weights = self.explanation_terms(features)
        return reasons_of(features, inputs, weights[0], top)

    def explanation_terms(self, features: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`explain` multiplies, as the model is now: its inputs and weights.

        The weights come as a ``(1, width)`` row, zeros before the model learned anything (no
        reasons then). Taken row by row while a batch is learned event by event, and given
        together to :func:`reasons_of`, they give each row's reasons in one pass.
        """
        inputs = self._inputs(features.matrix)
        if not self._fitted:
            return inputs, np.zeros((1, inputs.shape[1]))
        return inputs, np.array(self.estimator.coef_, dtype=np.float64).reshape(1, -1)


def reasons_of(
    features: FeatureBatch, inputs: np.ndarray, weights: np.ndarray, top: int
) -> list[str]:
    """Reason codes of ``features`` from the terms of :meth:`LinearSklearnModel.explanation_terms`.

    ``weights`` is one vector, or one row of weights per event.
    """
    # The column layout (numeric fields, then each category's buckets) is the featurizer's.
    layout = features._featurizer
    return matrix_reasons(
        inputs, weights, top, layout.numeric, layout.categories, features.decoded.categorical
    )


def _scaled_linear(estimator: Any) -> tuple[list[Any], Any]:
    """The scalers and the logistic regression of a river model that gives reason codes."""
    from river import compose, linear_model, preprocessing

    steps = (
        list(estimator.steps.values()) if isinstance(estimator, compose.Pipeline) else [estimator]
    )
    *scalers, linear = steps
    # These scale each feature alone and affinely, which is what affine_reasons relies on.
    affine = (preprocessing.StandardScaler, preprocessing.MinMaxScaler, preprocessing.MaxAbsScaler)
    if not isinstance(linear, linear_model.LogisticRegression) or not all(
        isinstance(s, affine) for s in scalers
    ):
        raise ModelError(
            f"reason codes need a river LogisticRegression, alone or behind StandardScaler, "
            f"MinMaxScaler or MaxAbsScaler; got {estimator}"
        )
    return scalers, linear


def build_model(config: ModelConfig, n_numeric: int) -> BatchModel:
    """Build the configured estimator and wrap it in the adapter for its library.

    Examples
    --------
    >>> m = build_model(ModelConfig(estimator="river.linear_model.LogisticRegression"), 3)
    >>> type(m).__name__, type(m.estimator).__name__
    ('LinearRiverModel', 'Pipeline')
    >>> hasattr(build_model(ModelConfig(estimator="river.tree.HoeffdingTreeClassifier"), 3),
    ...         "explain")  # no linear contribution, so no reason codes
    False
    >>> build_model(ModelConfig(estimator="sklearn.svm.SVC"), 3)
    Traceback (most recent call last):
    ...
    streamlearn.errors.ModelError: SVC has no partial_fit; ...
    """
    estimator = build_object(config.estimator, config.params)
    if type(estimator).__module__.startswith("river."):
        return _river_model(estimator, config)
    return _sklearn_model(estimator, config, n_numeric)


def _river_model(estimator: Any, config: ModelConfig) -> RiverModel:
    from river import base, linear_model, preprocessing

    if not isinstance(estimator, base.Classifier):
        raise ModelError(f"{config.estimator} is not a river classifier")
    # Reason codes are w·x, defined for a logistic regression (Perceptron is one too).
    adapter = (
        LinearRiverModel if isinstance(estimator, linear_model.LogisticRegression) else RiverModel
    )
    if config.scale:
        estimator = preprocessing.StandardScaler() | estimator
    return adapter(estimator)


def _sklearn_model(estimator: Any, config: ModelConfig, n_numeric: int) -> SklearnModel:
    from sklearn.base import clone, is_classifier

    if not is_classifier(estimator):
        raise ModelError(f"{config.estimator} is not a scikit-learn classifier")
    # Reason codes are w·x, defined for the linear classifiers (coef_ on the inputs they see).
    linear = type(estimator).__module__.startswith("sklearn.linear_model")
    adapter = LinearSklearnModel if linear else SklearnModel
    model = adapter(estimator, n_numeric=n_numeric, scale=config.scale)
    tags = getattr(estimator, "__sklearn_tags__", None)
    if config.scale and tags is not None and tags().input_tags.positive_only:
        raise ModelError(
            f"{config.estimator} takes only non-negative inputs; set model.scale: false"
        )
    # partial_fit shuffles each batch by default, which makes a mini-batch learn unlike the
    # same events one by one; keep arrival order unless the configuration asks otherwise.
    if "shuffle" in estimator.get_params() and "shuffle" not in config.params:
        estimator.set_params(shuffle=False)
    try:  # parameters are only checked at the first fit: find bad ones at start-up
        clone(estimator).partial_fit(np.zeros((2, 1)), [0, 1], classes=[0, 1])
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{config.estimator} with {config.params}: {exc}") from None
    return model


def build_object(dotted: str, params: dict[str, Any] | None = None) -> Any:
    """Import ``package.module.Name`` and call it with ``params``.

    A parameter value ``{"class": "dotted.Name", "params": {...}}`` is built the same way, so
    nested objects (a river optimizer, say) can be configured.

    Examples
    --------
    >>> build_object("river.optim.SGD", {"lr": 0.05}).learning_rate
    0.05
    >>> build_object("river.nope.Model")
    Traceback (most recent call last):
    ...
    streamlearn.errors.ModelError: cannot import 'river.nope.Model': No module named 'river.nope'
    """
    module_name, _, attr = dotted.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(f"cannot import {dotted!r}: {exc}") from None
    kwargs = {k: _build_value(v) for k, v in (params or {}).items()}
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ModelError(f"cannot build {dotted} with {kwargs}: {exc}") from None


def _build_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) <= {"class", "params"} and "class" in value:
        return build_object(value["class"], value.get("params"))
    if isinstance(value, float) and math.isnan(value):
        raise ModelError("model parameters must not be NaN")
    return value
