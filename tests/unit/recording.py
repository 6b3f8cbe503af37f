"""A hooks observer for tests that remembers every call, in order, with its arguments."""

from __future__ import annotations

import functools
from typing import Any

from streamlearn.hooks import PipelineHooks

HOOKS = [name for name in dir(PipelineHooks) if name.startswith("on_")]


class RecordingHooks(PipelineHooks):
    """Remembers every hook call, in order, with its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in HOOKS:
            setattr(self, name, functools.partial(self._record, name))

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def args(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every call to hook ``name``."""
        return [args for called, args in self.calls if called == name]

    def total(self, name: str) -> int:
        """The sum of the last argument (a count) over every call to hook ``name``."""
        return sum(args[-1] for args in self.args(name))
