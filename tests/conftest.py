"""Test harness: a real broker and a real Redis for the session, and the integration marker.

Set STREAMLEARN_TEST_KAFKA_BOOTSTRAP / STREAMLEARN_TEST_REDIS_URL to test against running
services instead of the embedded ones (e.g. the Apache Kafka of the compose file).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The checkout need not be installed: make its packages importable from tests/.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connectors.embedded import EmbeddedBroker, EmbeddedRedis  # noqa: E402

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap address of a Kafka-protocol broker that lives for the whole session."""
    external = os.environ.get("STREAMLEARN_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server that lives for the whole session."""
    external = os.environ.get("STREAMLEARN_TEST_REDIS_URL")
    if external:
        yield external
        return
    with EmbeddedRedis() as embedded:
        yield embedded.url


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (topics outlive tests on a shared broker)."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"test-{name}-{uuid.uuid4().hex[:8]}"
