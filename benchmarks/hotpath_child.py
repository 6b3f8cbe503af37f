"""Runs each hot-path variant in a fresh spawned process that says when it holds its partitions.

The target is called as ``target(ready, *args)``: it calls ``ready()`` once its consumer is
assigned (the steady-rate runs start producing only then) and returns a picklable dict.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.retention_e2e import _spy

_TIMEOUT_S = 900


@dataclass(frozen=True, slots=True)
class Read:
    """What one variant reads and where it writes: a topic from the beginning, in its own group.

    ``events`` is how many it processes before it stops; ``idle_stop_s`` stops it earlier once
    that long passed without a record after the first (steady runs, where a slow variant may
    never see them all); ``time_cap_s`` stops it after that long from the first record.

    >>> Read("b:1", "redis://r", "t", "g", 10).events
    10
    """

    bootstrap: str
    redis_url: str
    topic: str
    group: str
    events: int
    idle_stop_s: float | None = None
    time_cap_s: float | None = None
    timeout_s: float = 600.0


class Child:
    """One spawned process running ``target(ready, *args)``; py-spy samples it into ``profile``."""

    def __init__(
        self, target: Callable[..., dict[str, Any]], *args: Any, profile: Path | None = None
    ):
        context = mp.get_context("spawn")  # never fork a process that holds Kafka threads
        self._conn, child = context.Pipe(duplex=False)
        self.name = getattr(target, "__name__", "child")
        self._process = context.Process(
            target=_serve, args=(child, target, *args), name=self.name, daemon=True
        )
        self._process.start()
        child.close()
        self._spy = _spy(self._process.pid or 0, profile) if profile is not None else None
        self._pending: tuple[str, Any] | None = None

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until the child holds its partitions (or answered early)."""
        if not self._conn.poll(timeout_s):
            self._kill()
            raise TimeoutError(f"{self.name} did not get its partitions within {timeout_s} s")
        message = self._recv()
        if message[0] != "ready":
            self._pending = message

    def result(self, timeout_s: float = _TIMEOUT_S) -> dict[str, Any]:
        """The target's answer (waiting at most ``timeout_s``); its errors are raised here."""
        deadline = time.monotonic() + timeout_s
        message = self._pending
        while message is None or message[0] == "ready":
            if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                self._kill()
                raise TimeoutError(f"{self.name} gave no answer within {timeout_s} s")
            message = self._recv()
        self._process.join(30)
        if self._spy is not None:
            self._spy.wait(60)
        if message[0] == "error":
            raise RuntimeError(f"{self.name} failed: {message[1]}")
        answer: dict[str, Any] = message[1]
        return answer

    def _recv(self) -> tuple[str, Any]:
        try:
            message: tuple[str, Any] = self._conn.recv()
        except EOFError:
            self._process.join(5)
            raise RuntimeError(f"{self.name} died (exit code {self._process.exitcode})") from None
        return message

    def _kill(self) -> None:
        self._process.terminate()
        self._process.join(10)


def run_child(
    target: Callable[..., dict[str, Any]], *args: Any, profile: Path | None = None
) -> dict[str, Any]:
    """Run ``target`` in a fresh process to the end and return its answer."""
    return Child(target, *args, profile=profile).result()


def _serve(conn: Connection, target: Callable[..., dict[str, Any]], *args: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # slow-task warnings on a busy machine
    try:
        conn.send(("ok", target(lambda: conn.send(("ready",)), *args)))
    except BaseException as error:  # the parent reports it
        import traceback

        conn.send(("error", f"{error!r}\n{traceback.format_exc()}"))
