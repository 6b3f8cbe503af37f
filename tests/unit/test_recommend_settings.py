"""RecommenderSettings: defaults, validation messages, event weights."""

from __future__ import annotations

import numpy as np
import pytest

from streamlearn.recommend import InteractionBatch, RecommenderSettings


def test_defaults_and_weights():
    s = RecommenderSettings()
    assert (s.k, s.max_users, s.max_items, s.history_len) == (10, 100_000, 50_000, 50)
    assert s.exclude == ("purchase", "rating")
    weights = s.weights(
        ["view", "cart", "purchase", "rating", "rating"], np.array([1, 2, 1, 3, 1.0])
    )
    assert weights.tolist() == [1.0, 6.0, 5.0, 2.0, 1.0]
    steep = RecommenderSettings(event_weights={"view": 0.5}, rating_slope=1.0)
    assert steep.event_weights["cart"] == 3.0  # unnamed kinds keep their default
    assert steep.weights(["view", "rating"], np.array([1.0, 1.0])).tolist() == [0.5, 0.0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "svd"}, "model must be one of"),
        ({"exclude": ("buy",)}, "unknown event type"),
        ({"k": 0}, "k must be at least 1"),
        ({"max_items": 0}, "max_items must be at least 1"),
        ({"context_decay": 0.0}, "context_decay"),
        ({"event_weights": {"view": -1.0}}, "must not be negative"),
        ({"blend_weights": (1.0, -1.0, 0.0)}, "blend_weights"),
    ],
)
def test_bad_settings_say_what_was_wrong(options, message):
    with pytest.raises(ValueError, match=message):
        RecommenderSettings(**options)


def test_batch_columns_are_checked():
    with pytest.raises(ValueError, match="differ in length"):
        InteractionBatch(["u"], ["a", "b"], ["view"], [1.0], [1])
    with pytest.raises(ValueError, match="unknown event_type"):
        InteractionBatch(["u"], ["a"], ["click"], [1.0], [1])
