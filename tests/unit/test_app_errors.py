"""When several pipelines fail, each one's error is reported, not only the first."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from streamlearn.app import App, PipelinesFailed
from streamlearn.config import parse_config
from streamlearn.errors import ServiceUnavailable


def config(*names: str) -> Any:
    pipeline = {
        "source": {"topic": "t"},
        "schema": {"target": "y", "features": {"x": "float"}},
        "model": {"estimator": "river.linear_model.LogisticRegression"},
    }
    return parse_config(
        {"metrics": {"port": 0}, "pipelines": [{"name": n, **pipeline} for n in names]}, env={}
    )


def failing(name: str, message: str) -> Any:
    def run(stop: Any, max_events: Any) -> None:
        raise ServiceUnavailable(message)

    return SimpleNamespace(pipeline=SimpleNamespace(name=name), run=run)


def test_every_failing_pipeline_is_named() -> None:
    app = App(config("fraud", "churn"))
    app.runners = [failing("fraud", "redis down"), failing("churn", "broker gone")]
    with pytest.raises(PipelinesFailed) as caught:
        app._run_all(None)
    assert "fraud: redis down" in str(caught.value)
    assert "churn: broker gone" in str(caught.value)


def test_one_failing_pipeline_raises_its_own_error() -> None:
    app = App(config("fraud"))
    app.runners = [failing("fraud", "redis down")]
    with pytest.raises(ServiceUnavailable, match="redis down"):
        app._run_all(None)
