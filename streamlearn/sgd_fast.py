"""Scikit-learn's ``SGDClassifier`` without its per-call input checks, for tiny batches.

``partial_fit`` and ``predict_proba`` validate their inputs on every call: at a batch of one
event that costs several times the arithmetic (about 1 ms against 0.1 ms here), and with an
integer ``random_state`` ``partial_fit`` seeds a new generator each time (:class:`SameDraws`
gives the same draws for a fraction of that). The engine's
inputs are already what those checks ensure (a finite float64 matrix of a fixed width, labels
0/1), so for a binary log-loss ``SGDClassifier`` whose state exists these functions do what the
two methods do after their checks, in the same order with the same arguments, and give
bit-identical results (``tests/unit/test_sgd_fast.py`` holds them to that on a stream). Where
the installed scikit-learn's private methods differ from what this expects, :func:`supported`
says no and the public methods are used.

A step on one row (batch size 1, the common case there) goes further: with the default
``optimal`` learning rate and an L2 penalty or none, the Cython loop's arithmetic for one dense
row is done here in Python, operation for operation (:func:`_learn_one_row`), which skips the
dataset, validation split and label arrays scikit-learn builds around it at every call: about
a third of the time of a batch of one, bit for bit the same weights.
"""

from __future__ import annotations

import inspect
import math
import threading
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


class SameDraws(np.random.RandomState):
    """Gives, call by call, the ``randint`` draws a fresh ``RandomState(seed)`` would give.

    ``partial_fit`` with an integer ``random_state`` seeds a new generator at every call (about
    80 µs, most of a one-row step) only to draw the same two numbers each time. This one is
    seeded once; :meth:`restart` rewinds it to the first draw, and a call sequence never seen
    before is worked out on a fresh generator, so the draws are always the seeded ones.

    >>> draws = SameDraws(7)
    >>> first = [int(draws.randint(1, 2**31 - 1)), int(draws.randint(2**31 - 1))]
    >>> fresh = np.random.RandomState(7)
    >>> first == [int(fresh.randint(1, 2**31 - 1)), int(fresh.randint(2**31 - 1))]
    True
    >>> draws.restart()
    >>> int(draws.randint(1, 2**31 - 1)) == first[0]
    True
    """

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.seeded_with = seed
        self.calls: list[tuple[Any, Any]] = []  # (arguments, draw) from a fresh generator
        self.at = 0

    def restart(self) -> None:
        """The next draw is the first again."""
        self.at = 0

    def randint(self, *args: Any, **kwargs: Any) -> Any:
        """The draw a fresh generator gives at this point of the call sequence."""
        key = (args, tuple(sorted(kwargs.items())))
        if self.at < len(self.calls) and self.calls[self.at][0] == key:
            value = self.calls[self.at][1]
        else:
            del self.calls[self.at :]
            fresh = np.random.RandomState(self.seeded_with)
            for seen, _ in self.calls:
                fresh.randint(*seen[0], **dict(seen[1]))
            value = fresh.randint(*args, **kwargs)
            self.calls.append((key, value))
        self.at += 1
        return value


def partial_fit(estimator: Any, x: np.ndarray, y: np.ndarray) -> None:
    """One ``partial_fit(x, y)`` step past its checks (``supported`` only; x float64 C-order)."""
    if x.shape[1] != estimator.coef_.shape[-1]:
        raise ValueError(
            f"Number of features {x.shape[1]} does not match previous data "
            f"{estimator.coef_.shape[-1]}."
        )
    if len(x) == 1 and _one_row_applies(estimator):
        _learn_one_row(estimator, x[0], float(y[0] == estimator.classes_[1]))
        return
    estimator._loss_function_ = estimator._get_loss_function(estimator.loss)
    seed = estimator.random_state
    draws = _same_draws(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None
    if draws is not None:
        estimator.random_state = draws  # what fit_binary seeds from, just for this step
    try:
        estimator._fit_binary(
            np.ascontiguousarray(x, dtype=np.float64),
            y,
            alpha=estimator.alpha,
            learning_rate=estimator.learning_rate,
            sample_weight=np.ones(len(y), dtype=np.float64),
            max_iter=1,
        )
    finally:
        if draws is not None:
            estimator.random_state = seed


def _one_row_applies(estimator: Any) -> bool:
    # The settings whose step _learn_one_row spells out: the default schedule, L2 or none.
    return bool(estimator.learning_rate == "optimal" and estimator.penalty in ("l2", None))


def _half_binomial_gradient(y: float, raw: float) -> float:
    # scikit-learn's cgradient_half_binomial (sklearn/_loss/_loss.pyx.tp), operation for operation.
    if raw > -37:
        e = math.exp(-raw)
        return ((1 - y) - y * e) / (1 + e)
    return math.exp(raw) - y


def _learn_one_row(estimator: Any, x: np.ndarray, y: float) -> None:
    """``_plain_sgd`` for one dense row (``sklearn/linear_model/_sgd_fast.pyx.tp``), in Python.

    At a batch of one the Cython loop costs little; the Python around it (a dataset, a
    validation split, a seed, label arrays) costs most of a step. Here each operation of the
    loop is done in its order, on doubles, so the result is bit for bit the same: the dot
    product summed in row order and scaled by ``wscale``, the learning rate of the
    ``optimal`` schedule, the clipped gradient, the L2 decay as a scale of the weights, the
    update added as ``x * (update / wscale)``, and the scale folded back at the end.
    """
    w = estimator.coef_.ravel()  # a view: updated in place, as _plain_sgd does
    alpha, t = float(estimator.alpha), float(estimator.t_)
    intercept = float(estimator.intercept_[0])
    p = 0.0
    for wj, xj in zip(w.tolist(), x.tolist()):
        p += wj * xj
    p = p * 1.0 + intercept  # wscale is 1 at the start of a call
    typw = float(np.sqrt(1.0 / np.sqrt(alpha)))
    optimal_init = 1.0 / ((typw / max(1.0, _half_binomial_gradient(1.0, -typw))) * alpha)
    eta = 1.0 / (alpha * (optimal_init + t - 1))
    dloss = min(max(_half_binomial_gradient(y, p), -_MAX_DLOSS), _MAX_DLOSS)
    update = -eta * dloss
    wscale = 1.0
    if estimator.penalty == "l2":
        wscale *= max(0.0, 1.0 - ((1.0 - 0.0) * eta * alpha))
        if wscale < 1e-9:
            w *= wscale
            wscale = 1.0
    if update != 0.0:
        w += x * (update / wscale)
    if estimator.fit_intercept and update != 0:
        intercept += update * 1.0
    w *= wscale
    if not math.isfinite(intercept) or not np.isfinite(w).all():
        raise ValueError(
            "Floating-point under-/overflow occurred at epoch #1. Scaling input data with "
            "StandardScaler or MinMaxScaler might help."
        )
    estimator.t_ += 1
    estimator.n_iter_ = 1
    estimator.coef_ = w.reshape(1, -1)
    estimator.intercept_ = np.atleast_1d(intercept)


_MAX_DLOSS = 1e12
_LOCAL = threading.local()  # each pipeline thread rewinds its own generators


def _same_draws(seed: int) -> SameDraws:
    cache: dict[int, SameDraws] = _LOCAL.__dict__.setdefault("draws", {})
    draws = cache.get(seed)
    if draws is None:
        draws = cache[seed] = SameDraws(seed)
    draws.restart()
    return draws
