"""The label store contract on the in-memory store."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streamlearn.labels import MemoryLabelStore
from tests.label_store_contract import CHECKS, HORIZON_S


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_memory_store(check: Callable[..., None]) -> None:
    check(lambda: MemoryLabelStore(HORIZON_S))
