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

from streamlearn.config import ModelConfig
from streamlearn.errors import ModelError
from streamlearn.features import FeatureBatch
from streamlearn.scaling import OnlineStandardScaler


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
        if self.scaler is not None:
            self.scaler.learn(matrix)
        self.estimator.partial_fit(
            self._inputs(matrix), y[labelled].astype(np.int64), classes=[0, 1]
        )
        self._fitted = True
        self.version += 1
        return n

    def _inputs(self, matrix: np.ndarray) -> np.ndarray:
        return self.scaler.transform(matrix) if self.scaler is not None else matrix


def build_model(config: ModelConfig, n_numeric: int) -> BatchModel:
    """Build the configured estimator and wrap it in the adapter for its library.

    Examples
    --------
    >>> m = build_model(ModelConfig(estimator="river.linear_model.LogisticRegression"), 3)
    >>> type(m).__name__, type(m.estimator).__name__
    ('RiverModel', 'Pipeline')
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
    from river import base, preprocessing

    if not isinstance(estimator, base.Classifier):
        raise ModelError(f"{config.estimator} is not a river classifier")
    if config.scale:
        estimator = preprocessing.StandardScaler() | estimator
    return RiverModel(estimator)


def _sklearn_model(estimator: Any, config: ModelConfig, n_numeric: int) -> SklearnModel:
    from sklearn.base import clone, is_classifier

    if not is_classifier(estimator):
        raise ModelError(f"{config.estimator} is not a scikit-learn classifier")
    model = SklearnModel(estimator, n_numeric=n_numeric, scale=config.scale)
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
