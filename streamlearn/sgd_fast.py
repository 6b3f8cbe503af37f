"""Scikit-learn's ``SGDClassifier`` without its per-call input checks, for tiny batches.

``partial_fit`` and ``predict_proba`` validate their inputs on every call: at a batch of one
event that costs several times the arithmetic (about 1 ms against 0.1 ms here). The engine's
inputs are already what those checks ensure (a finite float64 matrix of a fixed width, labels
0/1), so for a binary log-loss ``SGDClassifier`` whose state exists these functions do what the
two methods do after their checks, in the same order with the same arguments, and give
bit-identical results (``tests/unit/test_sgd_fast.py`` holds them to that on a stream). Where
the installed scikit-learn's private methods differ from what this expects, :func:`supported`
says no and the public methods are used.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from scipy.special import expit

_FIT_BINARY = {"self", "X", "y", "alpha", "learning_rate", "sample_weight", "max_iter"}


def _internals_match() -> bool:
    try:
        from sklearn.linear_model import SGDClassifier

        fit_binary = SGDClassifier._fit_binary
        loss = SGDClassifier._get_loss_function
    except (ImportError, AttributeError):
        return False
    return set(inspect.signature(fit_binary).parameters) == _FIT_BINARY and callable(loss)


_INTERNALS = _internals_match()


def supported(estimator: Any) -> bool:
    """Whether ``estimator`` can take the fast path now: a fitted binary log-loss SGD.

    >>> from sklearn.linear_model import SGDClassifier
    >>> sgd = SGDClassifier(loss="log_loss", random_state=0)
    >>> supported(sgd)  # nothing learned yet: its state does not exist
    False
    >>> _ = sgd.partial_fit(np.array([[0.0], [1.0]]), np.array([0, 1]), classes=[0, 1])
    >>> supported(sgd)
    True
    """
    from sklearn.linear_model import SGDClassifier

    return (
        _INTERNALS
        and type(estimator) is SGDClassifier
        and estimator.loss == "log_loss"
        and getattr(estimator, "coef_", None) is not None
        and list(getattr(estimator, "classes_", [])) == [0, 1]
        and estimator.class_weight is None
        and not estimator.early_stopping
        and not estimator.average
    )


def predict_positive(estimator: Any, x: np.ndarray) -> np.ndarray:
    """P(class 1) per row, as ``predict_proba(x)[:, 1]`` computes it (``supported`` only)."""
    margin = (x @ estimator.coef_.T + estimator.intercept_).reshape(-1)
    return np.asarray(expit(margin), dtype=np.float64)


def partial_fit(estimator: Any, x: np.ndarray, y: np.ndarray) -> None:
    """One ``partial_fit(x, y)`` step past its checks (``supported`` only; x float64 C-order)."""
    if x.shape[1] != estimator.coef_.shape[-1]:
        raise ValueError(
            f"Number of features {x.shape[1]} does not match previous data "
            f"{estimator.coef_.shape[-1]}."
        )
    estimator._loss_function_ = estimator._get_loss_function(estimator.loss)
    estimator._fit_binary(
        np.ascontiguousarray(x, dtype=np.float64),
        y,
        alpha=estimator.alpha,
        learning_rate=estimator.learning_rate,
        sample_weight=np.ones(len(y), dtype=np.float64),
        max_iter=1,
    )
