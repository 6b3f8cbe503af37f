import numpy as np
import pytest
from river import metrics
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from streamlearn.evaluation import PrequentialEvaluator


def _stream(seed: int, n: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~30 % positives and scores that separate them moderately."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = 1 / (1 + np.exp(-rng.normal(labels - 0.5, 1.0)))
    if decimals is not None:  # coarse scores make many ties, also across the classes
        scores = np.round(scores, decimals)
    return scores, labels


def _feed(ev: PrequentialEvaluator, scores: np.ndarray, labels: np.ndarray, seed: int) -> None:
    """Feed in batches of random sizes, some larger than the window."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(scores):
        size = int(rng.integers(1, 2 * ev.window))
        ev.update(scores[i : i + size], labels[i : i + size])
        i += size


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_auc_matches_sklearn_over_the_last_window(seed: int, decimals: int | None) -> None:
    scores, labels = _stream(seed, 5_000, decimals)
    ev = PrequentialEvaluator(window=700)
    _feed(ev, scores, labels, seed)
    assert ev.count == 5_000
    assert ev.auc() == pytest.approx(roc_auc_score(labels[-700:], scores[-700:]), abs=1e-12)


def test_auc_before_the_window_fills_uses_what_was_seen() -> None:
    scores, labels = _stream(0, 300, decimals=1)
    ev = PrequentialEvaluator(window=1_000)
    ev.update(scores[:120], labels[:120])
    ev.update(scores[120:], labels[120:])
    assert ev.auc() == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_old_items_leave_the_window() -> None:
    ev = PrequentialEvaluator(window=4)
    ev.update(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0]))
    assert ev.auc() == 1.0
    ev.update(np.array([0.95, 0.9, 0.1, 0.2]), np.array([0, 0, 1, 1]))
    assert ev.auc() == 0.0
    assert ev.count == 8


def test_one_class_or_nothing_gives_undefined_scores() -> None:
    ev = PrequentialEvaluator(window=10)
    assert (ev.auc(), ev.accuracy(), ev.logloss(), ev.scores()) == (None, None, None, {})
    ev.update(np.array([0.2, 0.7]), np.array([1, 1]))
    assert ev.auc() is None
    assert ev.scores() == {"accuracy": 0.5, "logloss": pytest.approx(-np.log([0.2, 0.7]).mean())}
    ev.update(np.array([], dtype=float), np.array([], dtype=int))
    assert ev.count == 2


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_accuracy_and_logloss_match_sklearn(threshold: float) -> None:
    scores, labels = _stream(3, 4_000, decimals=2)
    ev = PrequentialEvaluator(window=1_500, threshold=threshold)
    _feed(ev, scores, labels, 3)
    s, y = scores[-1_500:], labels[-1_500:]
    assert ev.accuracy() == pytest.approx(accuracy_score(y, s > threshold), abs=1e-12)
    assert ev.logloss() == pytest.approx(log_loss(y, s, labels=[0, 1]), rel=1e-9)
    assert set(ev.scores()) == {"auc", "accuracy", "logloss"}


def test_logloss_of_a_certain_mistake_is_large_but_finite() -> None:
    ev = PrequentialEvaluator(window=2)
    ev.update(np.array([0.0, 1.0]), np.array([1, 0]))
    loss = ev.logloss()
    assert loss is not None and 30 < loss < 40  # -log(1e-15) ≈ 34.5


def test_a_score_at_the_threshold_is_a_negative_prediction() -> None:
    # As the served label is set, and as river's predict_one breaks the tie.
    ev = PrequentialEvaluator(window=10, threshold=0.6)
    ev.update(np.array([0.6, 0.6]), np.array([0, 1]))
    assert ev.accuracy() == 0.5


def test_boolean_labels_are_accepted() -> None:
    ev = PrequentialEvaluator(window=10)
    ev.update(np.array([0.8, 0.3]), np.array([True, False]))
    assert ev.auc() == 1.0


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1], "pair up"),
        ([0.1, 0.2], [0, 2], "0/1"),
    ],
)
def test_bad_input_is_refused(scores: list[float], labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrequentialEvaluator().update(np.array(scores), np.array(labels))


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        PrequentialEvaluator(window=0)


def test_equals_river_rolling_auc_when_scores_are_distinct() -> None:
    scores, labels = _stream(7, 3_000)
    assert len(np.unique(scores)) == len(scores)
    river_auc = metrics.RollingROCAUC(window_size=400)
    ev = PrequentialEvaluator(window=400)
    for start in range(0, 3_000, 50):
        batch = slice(start, start + 50)
        for y, s in zip(labels[batch], scores[batch], strict=True):
            river_auc.update(int(y), float(s))
        ev.update(scores[batch], labels[batch])
        assert ev.auc() == pytest.approx(river_auc.get(), abs=1e-12)


def test_differs_from_river_only_in_how_ties_count() -> None:
    # river's RollingROCAUC counts a positive and a negative with the same score as a miss (0);
    # Mann-Whitney, sklearn and this evaluator count it as half a hit.
    river_auc = metrics.RollingROCAUC(window_size=10)
    pairs = [(1, 0.5), (0, 0.5), (1, 0.9), (0, 0.1)]
    for y, s in pairs:
        river_auc.update(y, s)
    ev = PrequentialEvaluator(window=10)
    ev.update(np.array([s for _, s in pairs]), np.array([y for y, _ in pairs]))
    assert river_auc.get() == pytest.approx(3 / 4)
    assert ev.auc() == pytest.approx(3.5 / 4)


@pytest.mark.parametrize("labels", [[0, 2], [0.5, 1.0], [-1, 1]])
def test_labels_other_than_0_and_1_are_refused(labels: list[float]) -> None:
    with pytest.raises(ValueError, match="0/1"):
        PrequentialEvaluator().update(np.array([0.1, 0.9]), np.array(labels))


def test_booleans_and_integer_labels_are_taken() -> None:
    ev = PrequentialEvaluator()
    ev.update(np.array([0.1, 0.9]), np.array([False, True]))
    ev.update(np.array([0.2, 0.8]), np.array([0, 1]))
    assert ev.auc() == 1.0
