"""The SGD fast path gives bit for bit what scikit-learn's public methods give."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from streamlearn import sgd_fast


def stream(seed: int = 0, n: int = 3000, width: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width))
    w = rng.normal(size=width)
    y = (x @ w + rng.normal(size=n) > 0.5).astype(np.int64)
    return x, y


@pytest.mark.parametrize(
    "params", [{}, {"alpha": 0.001}, {"learning_rate": "adaptive", "eta0": 0.05}]
)
def test_learning_and_scoring_match_partial_fit_and_predict_proba_exactly(
    params: dict[str, object],
) -> None:
    assert sgd_fast._INTERNALS, "the installed scikit-learn's internals changed: update sgd_fast"
    x, y = stream()
    public = SGDClassifier(loss="log_loss", random_state=0, **params)
    public.partial_fit(x[:10], y[:10], classes=[0, 1])
    fast = copy.deepcopy(public)
    assert sgd_fast.supported(fast)
    rng = np.random.default_rng(1)
    start = 10
    while start < len(x):
        size = int(rng.integers(1, 65))
        xb, yb = x[start : start + size], y[start : start + size]
        assert np.array_equal(
            public.predict_proba(xb)[:, 1], sgd_fast.predict_positive(fast, xb)
        ), f"scores differ at row {start}"
        public.partial_fit(xb, yb, classes=[0, 1])
        sgd_fast.partial_fit(fast, xb, yb)
        start += size
    assert np.array_equal(public.coef_, fast.coef_)
    assert np.array_equal(public.intercept_, fast.intercept_)
    assert public.t_ == fast.t_


@pytest.mark.parametrize(
    "estimator",
    [
        SGDClassifier(loss="hinge"),
        SGDClassifier(loss="log_loss", class_weight={0: 1.0, 1: 5.0}),
        SGDClassifier(loss="log_loss", average=True),
    ],
)
def test_other_settings_take_the_public_path(estimator: SGDClassifier) -> None:
    x, y = stream(n=20)
    estimator.partial_fit(x, y, classes=[0, 1])
    assert not sgd_fast.supported(estimator)


def test_a_matrix_of_another_width_is_refused_as_partial_fit_refuses_it() -> None:
    x, y = stream(n=20)
    sgd = SGDClassifier(loss="log_loss").partial_fit(x, y, classes=[0, 1])
    with pytest.raises(ValueError, match="Number of features 3 does not match previous data 12"):
        sgd_fast.partial_fit(sgd, x[:, :3], y)


@pytest.mark.parametrize("params", [{}, {"alpha": 0.001}, {"alpha": 0.5}, {"penalty": None}])
def test_one_row_steps_match_partial_fit_exactly(params: dict[str, object]) -> None:
    # One row a call takes the step spelled out in Python: bit for bit scikit-learn's.
    x, y = stream(seed=3, n=2000, width=25)
    x[::97] *= 40  # some large inputs: large margins, both branches of the gradient
    public = SGDClassifier(loss="log_loss", random_state=0, **params)
    public.partial_fit(x[:10], y[:10], classes=[0, 1])
    fast = copy.deepcopy(public)
    for i in range(10, len(x)):
        public.partial_fit(x[i : i + 1], y[i : i + 1], classes=[0, 1])
        sgd_fast.partial_fit(fast, x[i : i + 1], y[i : i + 1])
        assert np.array_equal(public.coef_, fast.coef_), f"weights differ after row {i}"
        assert np.array_equal(public.intercept_, fast.intercept_), f"after row {i}"
    assert public.t_ == fast.t_ and public.n_iter_ == fast.n_iter_
